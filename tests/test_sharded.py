"""Sharded evaluation (pipeline.sharded): the shares cover the samples on whole backend batches, merged shares equal
one run on all samples, and two gloo processes (mp.spawn, torchrun on the CLI, and two torchrun launchers meeting at
a c10d rendezvous as on two machines) give the single-process numbers."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import pipeline
from pipeline import sharded

ROOT = Path(__file__).resolve().parents[1]
T = 8


@pytest.mark.parametrize("n, batch, size, expected", [
    (360, 256, 2, [(0, 256), (256, 360)]),                       # digits: one full batch, one short
    (1000, 256, 3, [(0, 512), (512, 768), (768, 1000)]),         # 4 batches over 3: 2, 1, 1
    (360, 256, 3, [(0, 256), (256, 360), (360, 360)]),           # more processes than batches: the last idles
    (10, 1, 4, [(0, 3), (3, 6), (6, 8), (8, 10)]),
])
def test_bounds_split_whole_batches(n, batch, size, expected):
    assert [sharded.bounds(n, batch, rank, size) for rank in range(size)] == expected


def test_reference_batch_size_is_read_from_its_run():
    assert sharded.backend_batch_size("reference") == 256   # ReferenceBackend.run(..., batch_size=256)


def test_merged_halves_equal_one_run(digits, digits_graphs):
    graph, x = digits_graphs["robustnorm"], digits.test_x.numpy()
    whole = pipeline.simulate(graph, x, T)
    halves = [pipeline.simulate(graph, x[:256], T), pipeline.simulate(graph, x[256:], T)]
    merged = sharded.merge(halves)
    np.testing.assert_array_equal(merged.outputs, whole.outputs)
    assert merged.spike_counts.keys() == whole.spike_counts.keys()
    for name in whole.spike_counts:
        np.testing.assert_array_equal(merged.spike_counts[name], whole.spike_counts[name])
        np.testing.assert_allclose(merged.neuron_counts[name], whole.neuron_counts[name], rtol=1e-6)
    for name in whole.input_events:
        np.testing.assert_allclose(merged.input_events[name], whole.input_events[name], rtol=1e-6)
    assert merged.spikes_per_sample == whole.spikes_per_sample


def _worker(rank: int, world: int, init_file: str, nir_path: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    x = pipeline.load_dataset("digits").test_x.numpy()
    run = sharded.simulate(pipeline.load(nir_path), x, T)
    if rank == 1:   # every process holds the gathered result
        np.savez(out, outputs=run.outputs, **run.spike_counts)
    dist.barrier()
    os._exit(0)   # skip gloo's teardown, which can abort the process (tests/test_spiking_ddp.py)


def test_two_gloo_processes_equal_one_process(tmp_path, digits, digits_graphs):
    nir_path = pipeline.save(digits_graphs["robustnorm"], tmp_path / "model.nir")
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(nir_path), str(tmp_path / "run.npz")), nprocs=2,
             join=True)
    whole = pipeline.simulate(digits_graphs["robustnorm"], digits.test_x.numpy(), T)
    gathered = np.load(tmp_path / "run.npz")
    np.testing.assert_array_equal(gathered["outputs"], whole.outputs)
    for name, counts in whole.spike_counts.items():
        np.testing.assert_array_equal(gathered[name], counts)


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    """Two processes under torchrun on a free port (`--standalone`: the default 29500 may be taken on a shared CI
    host); a failure shows the processes' stderr."""
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          *args], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, f"torchrun exited {run.returncode}:\n{run.stderr[-4000:]}"
    return run


@pytest.mark.slow
def test_torchrun_simulate_prints_the_single_process_numbers(tmp_path, digits_graphs):
    nir_path = pipeline.save(digits_graphs["robustnorm"], tmp_path / "model.nir")
    args = ["-m", "pipeline.cli", "simulate", str(nir_path), "--T", "4", "16", "--quiet"]
    single = subprocess.run([sys.executable, *args, "--json", str(tmp_path / "one.json")], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    two = _torchrun(*args, "--json", str(tmp_path / "two.json"))
    strip = [line.rsplit(",", 1)[0] for line in single.stdout.splitlines()]   # all but the seconds
    assert [line.rsplit(",", 1)[0] for line in two.stdout.splitlines()] == strip and len(strip) == 2
    runs = [json.loads((tmp_path / f"{name}.json").read_text())["runs"] for name in ("one", "two")]
    for a, b in zip(*runs):
        assert (a["accuracy"], a["spikes_per_sample"], a["samples"]) == (b["accuracy"], b["spikes_per_sample"],
                                                                         b["samples"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_launchers_at_one_rendezvous_print_the_single_process_numbers(tmp_path, digits_graphs):
    """README's two-machine command, both "machines" on this host: two torchrun launchers (--nnodes 2, one process
    each) find each other only through the c10d rendezvous endpoint, as launchers on two hosts do."""
    nir_path = pipeline.save(digits_graphs["robustnorm"], tmp_path / "model.nir")
    args = ["-m", "pipeline.cli", "simulate", str(nir_path), "--T", "4", "16", "--quiet"]
    single = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=True)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{_free_port()}", "--rdzv_id", "two-hosts",
                "--rdzv_conf", "join_timeout=300", *args]
    nodes = [subprocess.Popen(launcher, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [node.communicate(timeout=600) for node in nodes]
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, f"torchrun exited {node.returncode}:\n{err[-4000:]}"
    strip = [line.rsplit(",", 1)[0] for line in single.stdout.splitlines()]   # all but the seconds
    printed = [[line.rsplit(",", 1)[0] for line in out.splitlines()] for out, _ in outputs]
    assert sorted(printed, key=len) == [[], strip] and len(strip) == 2   # global rank 0 alone prints


def _untimed(value):
    """`value` without wall times and provenance, which differ between any two runs."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k not in ("seconds", "prepare_seconds", "environment")}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


@pytest.mark.slow
def test_torchrun_sweep_writes_the_single_process_results(tmp_path):
    ckpt = tmp_path / "ann.pt"
    subprocess.run([sys.executable, "-m", "pipeline.cli", "train", "--epochs", "3", "--out", str(ckpt), "--quiet"],
                   cwd=ROOT, check=True)
    args = ["-m", "pipeline.cli", "sweep", "--checkpoint", str(ckpt), "--methods", "robustnorm,dnisnm", "--T", "2", "8",
            "--quiet"]
    single = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    two = _torchrun(*args, "--out", str(tmp_path / "two"))
    assert two.stdout.replace("two", "one") == single.stdout and len(single.stdout.splitlines()) == 5
    one, both = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("one", "two"))
    assert one["samples"] == 360 and len(one["runs"]) == 4
    assert _untimed(both) == _untimed(one)
    assert (tmp_path / "two" / "report.md").read_text() == (tmp_path / "one" / "report.md").read_text()
