"""ANN training: the training loop and evaluation (`ann`), checkpoints read back as models (`checkpoints`),
resumable training state (`resume`) and data-parallel runs under torchrun (`distributed`).
"""
