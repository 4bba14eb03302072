"""The direct SNN training methods of the papers (snn2ann, joint-asnn) and their baseline (stbp).

Each module calls `pipeline.spiking.registry.register(TrainingMethod(...))` at import.
"""
from pipeline.spiking.methods import joint_asnn, snn2ann, stbp  # noqa: F401
