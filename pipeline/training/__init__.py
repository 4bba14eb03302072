"""Training: the ANN (`ann`), spiking networks trained directly (`spiking`, `hybrid`, `surrogate`, `methods/`),
resumable state (`resume`) and data-parallel runs under torchrun (`distributed`).
"""
