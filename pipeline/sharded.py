"""Evaluation sharded over torchrun processes: each process simulates a contiguous share of whole backend batches,
and the shares are gathered on every process into the RunResult a single process computes on all samples.
Work that is not split (training, fine-tuning, conversion) runs on process 0 and its result is sent to the others.
"""
from __future__ import annotations

import inspect

import numpy as np
import torch.distributed as dist

import backends
from backends.result import RunResult
from pipeline import api
from pipeline.training.distributed import world


def bounds(n: int, batch_size: int, rank: int, size: int) -> tuple[int, int]:
    """Samples [lo, hi) of process `rank` of `size`: the ceil(n / batch_size) batches split into `size` contiguous
    runs of batches whose counts differ by at most one (a process may get none), so every process runs exactly
    the batches a single process would run."""
    batches = -(-n // batch_size)
    per, extra = divmod(batches, size)
    first = rank * per + min(rank, extra)
    last = first + per + (rank < extra)
    return min(first * batch_size, n), min(last * batch_size, n)


def backend_batch_size(backend: str) -> int:
    """The default batch size of `backend`'s run (1 when it takes none): shard boundaries fall on its batches."""
    parameter = inspect.signature(backends.get(backend).run).parameters.get("batch_size")
    return 1 if parameter is None or parameter.default is inspect.Parameter.empty else int(parameter.default)


def simulate(graph, inputs: np.ndarray, T: int, *, backend: str = "reference", progress: bool = False,
             **options) -> RunResult:
    """`pipeline.simulate` on this process's share of `inputs` when under torchrun (process group initialised by
    `pipeline.training.distributed.init_from_env`), gathered; the plain call otherwise."""
    rank, size = world()
    if size == 1:
        return api.simulate(graph, inputs, T, backend=backend, progress=progress, **options)
    lo, hi = bounds(len(inputs), backend_batch_size(backend), rank, size)
    run = api.simulate(graph, inputs[lo:hi], T, backend=backend, progress=progress and rank == 0,
                       **options) if hi > lo else None
    shares: list[RunResult | None] = [None] * size
    dist.all_gather_object(shares, run)
    return merge([share for share in shares if share is not None])


def from_first(compute):
    """`compute()` on process 0 only, its result sent to every process (pickled over gloo), so that all processes
    simulate the very same model or graph; the plain call when not distributed."""
    rank, size = world()
    if size == 1:
        return compute()
    box = [compute() if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def merge(shares: list[RunResult]) -> RunResult:
    """One RunResult from runs on consecutive parts of the samples: per-sample arrays concatenated, per-neuron
    averages weighted by sample counts, the wall time of the slowest part."""
    sizes = np.array([len(share.outputs) for share in shares], dtype=np.float64)
    first = shares[0]

    def weighted(field: str) -> dict[str, np.ndarray]:
        values = [getattr(share, field) for share in shares]
        return {k: sum(w * np.asarray(v[k], dtype=np.float64) for w, v in zip(sizes, values)) / sizes.sum()
                for k in values[0]}

    return RunResult(
        backend=first.backend, T=first.T,
        outputs=np.concatenate([share.outputs for share in shares]),
        spike_counts={k: np.concatenate([share.spike_counts[k] for share in shares]) for k in first.spike_counts},
        neuron_counts=weighted("neuron_counts"),
        input_events=None if first.input_events is None else weighted("input_events"),
        spikes=None if first.spikes is None else {
            k: np.concatenate([share.spikes[k] for share in shares]) for k in first.spikes},
        seconds=max(share.seconds for share in shares),
        approximate=any(share.approximate for share in shares),
        ignored=first.ignored,
    )
