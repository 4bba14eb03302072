"""ANN training: the training loop and evaluation (`ann`), resumable training state (`resume`) and data-parallel
runs under torchrun (`distributed`); conversion methods that fine-tune and SNN training build on it.
"""
