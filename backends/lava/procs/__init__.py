"""Lava processes written for spikeport, each with its floating-point process model in the same module.

Kept in their own package because Lava's compiler executes every module in a process's directory
while it searches for process models.
"""
from backends.lava.procs.neuron import NeuronLayer
from backends.lava.procs.probe import EventCounter
from backends.lava.procs.relay import Delay, Pool2d, Scale

__all__ = ["Delay", "EventCounter", "NeuronLayer", "Pool2d", "Scale"]
