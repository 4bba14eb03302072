"""The direct SNN training methods of the papers (snn2ann, joint-asnn) and their baseline (stbp).

Each module calls `pipeline.training.registry.register(TrainingMethod(...))` at import.
"""
from pipeline.training.methods import joint_asnn, snn2ann, stbp  # noqa: F401
