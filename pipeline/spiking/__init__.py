"""Spiking networks trained directly: the training loop (`train`), surrogate-gradient neurons (`surrogate`),
chain blocks and NIR export (`hybrid`), and the methods snn2ann, joint-asnn, stbp (`methods/`, `registry`).
"""
