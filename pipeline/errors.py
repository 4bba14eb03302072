"""Errors that a user's input can cause; the CLI prints them as one line and exits non-zero.

Each names what is wrong and what to do about it (no traceback unless --debug).
"""


class SpikeportError(Exception):
    """Base class for errors caused by the user's input, printed without a traceback by the CLI."""


class UnsupportedLayer(SpikeportError):
    """A torch model contains a layer the converter cannot map to NIR."""


class ConversionError(SpikeportError):
    """A model or graph does not have the structure a conversion pass needs."""
