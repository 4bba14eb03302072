"""Base process model for spikeport's Lava processes: one input, one output, errors reported not hung.

An exception inside a Lava process model leaves the other processes blocked on their channels (the
run hangs), so a guarded model writes the process name and traceback to `<error_dir>/<id>.err`, sends
zeros from then on, and lets the run finish; the backend raises the error afterwards.
"""
from __future__ import annotations

import traceback
from pathlib import Path

import numpy as np

from lava.magma.core.model.py.model import PyLoihiProcessModel


class GuardedModel(PyLoihiProcessModel):
    """Subclasses implement `compute(x) -> y` for one time step and set `out_shape` in `__init__`;
    a sink sets `out_port = None` and returns nothing."""

    out_port = "a_out"
    zero_dtype: type = float   # dtype of the zeros sent after an error (a fixed-point model sends integers)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.error: str | None = None
        self.out_shape: tuple[int, ...] = ()

    def compute(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def run_spk(self) -> None:
        x = self.a_in.recv()
        y = None
        if self.error is None:
            try:
                y = self.compute(x)
            except Exception:  # reported through the error file, see the module docstring
                self.error = f"Lava process {self.proc_params['name']!r} failed:\n{traceback.format_exc()}"
                Path(self.proc_params["error_dir"], f"{self.model_id}.err").write_text(self.error)
        if self.out_port is not None:
            getattr(self, self.out_port).send(np.zeros(self.out_shape, self.zero_dtype) if y is None else y)
