"""Lava processes written for spikeport with their process models: floating point, and fixed point where
quantized graphs use them (all but Pool2d).

Kept in their own package because Lava's compiler executes every module in a process's directory
while it searches for process models.
"""
from backends.lava.procs.neuron import NeuronLayer
from backends.lava.procs.probe import EventCounter, SpikeRecorder
from backends.lava.procs.relay import Delay, DelayLine, Pool2d, Scale, Shift

__all__ = ["Delay", "DelayLine", "EventCounter", "NeuronLayer", "Pool2d", "Scale", "Shift", "SpikeRecorder"]
