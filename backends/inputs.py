"""What a backend's `run(graph, inputs, T)` accepts: direct input (N, *input shape) or time-varying input
(N, T, *input shape), told apart by the graph's Input shape; slices become float tensors only when needed.

Rule (docs/nir-extensions.md, "Time step semantics"): inputs whose per-sample shape equals the Input's shape
are direct (the same tensor at every step); inputs of per-sample shape (T, *Input shape) are time-varying (step
t receives x[:, t]). The two differ in rank, so an Input whose own shape starts with T (sinabs writes its time
dimension there) is no ambiguity: its (N, *shape) inputs are direct. Binary, signed and graded
values are all accepted; a bool/int8 array or a torch sparse COO tensor stays in that form until a slice of
it is converted (`steps`), so a long spike train is never held as one float tensor.
"""
from __future__ import annotations

import numpy as np
import torch


def compact(inputs) -> torch.Tensor:
    """`inputs` as a torch tensor of its own dtype (no copy of a numpy array; a sparse tensor stays sparse)."""
    if isinstance(inputs, torch.Tensor):
        return inputs.detach()
    arr = np.asarray(inputs)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"inputs must be numeric, got dtype {arr.dtype}")
    if arr.dtype == np.uint16 or arr.dtype == np.uint32 or arr.dtype == np.uint64:
        arr = arr.astype(np.int64)   # torch has no unsigned 16-64-bit tensors
    return torch.from_numpy(np.ascontiguousarray(arr))


def time_varying(shape, input_shape, T: int) -> bool:
    """Whether inputs of `shape` are time-varying for a graph whose Input is `input_shape` (rule above);
    ValueError naming the shapes when they are neither."""
    shape, want = tuple(int(d) for d in shape), tuple(int(d) for d in input_shape)
    if shape[1:] == want:
        return False
    if len(shape) == len(want) + 2 and shape[2:] == want:
        if shape[1] != int(T):
            raise ValueError(f"time-varying inputs have {shape[1]} steps per sample, the run has T={T}; "
                             f"run with T={shape[1]} or pass {T} steps")
        return True
    raise ValueError(f"inputs have shape {shape[1:]} per sample, the graph's Input expects {want} (direct) or "
                     f"({T}, {', '.join(map(str, want))}) (time-varying, T={T})")


def rows(x: torch.Tensor, lo: int, n: int) -> torch.Tensor:
    """Samples lo .. lo+n-1 of `x` (a view, or a sparse copy for a sparse tensor)."""
    n = min(n, x.shape[0] - lo)
    return x.narrow_copy(0, lo, n) if x.is_sparse else x.narrow(0, lo, n)


def steps(x: torch.Tensor, t0: int, n: int, dtype: torch.dtype, device: torch.device | str = "cpu") -> torch.Tensor:
    """Steps t0 .. t0+n-1 of time-varying `x` (batch, T, ...) as a contiguous (n, batch, ...) tensor of `dtype`."""
    part = x.narrow_copy(1, t0, n).to_dense() if x.is_sparse else x.narrow(1, t0, n)
    part = part.transpose(0, 1)
    return torch.empty(part.shape, dtype=dtype, device=device).copy_(part)
