"""Kill tests: `spikeport train --state` and `spikeport convert` killed with SIGKILL at random points leave the
previous good file or none, never a partial one, and a resumed training ends bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks.badinputs import small_graph
from pipeline.atomic import temporaries, write_nir
from pipeline.nirio import read_graph

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", *map(str, args), "--quiet"]


def _start(cmd) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_after(proc: subprocess.Popen, delay: float) -> bool:
    """SIGKILL `proc` after `delay` s; True when it was killed, False when it finished first (checked)."""
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True
    assert proc.returncode == 0, proc.stderr.read()
    return False


def _complete_checkpoint(path: Path) -> dict | None:
    """The checkpoint at `path` loaded in full, or None when there is none; a partial file fails the test."""
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def _train_cmd(tmp, state, out, epochs):
    return _cli("train", "--epochs", epochs, "--seed", 0, "--state", tmp / state, "--out", tmp / out)


def _wait_for(path: Path, proc: subprocess.Popen, limit: float = 120.0) -> None:
    start = time.monotonic()
    while not path.exists() and proc.poll() is None and time.monotonic() - start < limit:
        time.sleep(0.05)


def run_kill_train(tmp: Path, epochs: int, kills: int, seed: int) -> dict:
    """Train uninterrupted; then train with --state, killed `kills` times at random points after the first
    epoch's state exists, and resume to the end. Returns the counts and whether the weights match."""
    rng = random.Random(seed)
    subprocess.run(_train_cmd(tmp, "ref.state", "ref.pt", epochs), cwd=ROOT, check=True, capture_output=True)
    reference = torch.load(tmp / "ref.pt", weights_only=True)["state_dict"]
    killed, epochs_seen = 0, []
    while True:
        proc = _start(_train_cmd(tmp, "run.state", "run.pt", epochs))
        if killed < kills:
            _wait_for(tmp / "run.state", proc)
            if not _kill_after(proc, rng.uniform(0.0, 1.5)):
                break
            killed += 1
            state = _complete_checkpoint(tmp / "run.state")  # complete or absent, never partial
            assert state is None or state["format"] == "spikeport-training-state-1"
            epochs_seen.append(None if state is None else state["epoch"])
            assert _complete_checkpoint(tmp / "run.pt") is None or epochs_seen[-1] == epochs
            continue
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
        break
    final = torch.load(tmp / "run.pt", weights_only=True)["state_dict"]
    assert not temporaries(tmp / "run.state") and not temporaries(tmp / "run.pt")
    return {"kills": killed, "epochs_at_kill": epochs_seen,
            "identical": final.keys() == reference.keys() and all(torch.equal(final[k], reference[k]) for k in final)}


def run_kill_convert(tmp: Path, checkpoint: Path, kills: int, seed: int) -> dict:
    """`spikeport convert` over an existing good .nir, killed at random points: the file is always the
    previous graph (same bytes) or a complete new one."""
    rng = random.Random(seed)
    target = tmp / "model.nir"
    previous = write_nir(target, small_graph(seed)).read_bytes()
    outcomes = {"previous": 0, "new": 0}
    for _ in range(kills):
        proc = _start(_cli("convert", "--checkpoint", checkpoint, "--out", target, "--calib-samples", 64))
        _kill_after(proc, rng.uniform(0.5, 8.0))
        if target.read_bytes() == previous:
            outcomes["previous"] += 1
        else:
            assert len(read_graph(target).nodes) > len(small_graph().nodes)  # the converted CNN, complete
            outcomes["new"] += 1
            previous = target.read_bytes()
    return outcomes


_SLOW_WRITER = """
import sys, time
from pipeline.atomic import write_with
def writer(p):
    with open(p, "wb") as f:
        for i in range(400):
            f.write(bytes([i % 256]) * 4096); f.flush(); time.sleep(0.005)
write_with(sys.argv[1], writer)
"""


def run_kill_midwrite(tmp: Path, kills: int, seed: int) -> dict:
    """A writer that takes ~2 s to fill 1.6 MB through pipeline.atomic, killed mid-write: the target keeps
    its previous content, and the next write removes the dead writer's temporary."""
    rng = random.Random(seed)
    target = tmp / "big.bin"
    target.write_bytes(b"previous")
    killed = 0
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)], cwd=ROOT)
        while not temporaries(target):
            time.sleep(0.01)
        killed += _kill_after(proc, rng.uniform(0.0, 1.0))
        assert target.read_bytes() == b"previous"
    assert temporaries(target)  # the killed writers' leftovers, hidden beside the target ...
    write_nir(target, small_graph())  # ... until the next write to the same target
    assert not temporaries(target)
    return {"killed mid-write": killed}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from pipeline.models import build_model
    from pipeline.train import save_checkpoint
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("kill") / "ann.pt"
    return save_checkpoint(path, build_model("digits-cnn", (1, 8, 8), 10), model_name="digits-cnn",
                           input_shape=(1, 8, 8), num_classes=10)


def test_killed_training_resumes_bit_identical(tmp_path):
    result = run_kill_train(tmp_path, epochs=4, kills=1, seed=0)
    assert result["kills"] >= 1 and result["identical"], result


def test_killed_writer_leaves_the_previous_file(tmp_path):
    assert run_kill_midwrite(tmp_path, kills=3, seed=0)["killed mid-write"] == 3


def test_killed_convert_leaves_the_previous_or_a_complete_file(tmp_path, checkpoint):
    outcomes = run_kill_convert(tmp_path, checkpoint, kills=1, seed=0)
    assert sum(outcomes.values()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_killed_training_many_times(tmp_path, seed):
    result = run_kill_train(tmp_path, epochs=15, kills=6, seed=seed)
    assert result["kills"] >= 3 and result["identical"], result


@pytest.mark.slow
def test_killed_convert_many_times(tmp_path, checkpoint):
    outcomes = run_kill_convert(tmp_path, checkpoint, kills=10, seed=1)
    assert sum(outcomes.values()) == 10
