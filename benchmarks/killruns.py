"""Kill runs: `spikeport train --state`, `spikeport convert` and an atomic writer killed with SIGKILL at
random points; each returns what it found (used by tests/test_kill.py and benchmarks/reliability.py).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.badinputs import small_graph
from pipeline.io.atomic import temporaries, write_nir
from pipeline.io.nirio import read_graph

ROOT = Path(__file__).resolve().parents[1]  # the worktree: `python -m pipeline.cli` runs from here


def _require(ok: bool, what: str) -> None:
    """Fail loudly (also under python -O) when an atomicity or resume property does not hold."""
    if not ok:
        raise RuntimeError(what)


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
    _require(proc.returncode == 0, proc.stderr.read())
    return False


def _complete_checkpoint(path: Path) -> dict | None:
    """The checkpoint at `path` loaded in full, or None when there is none; a partial file fails the test."""
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def _train_cmd(tmp, state, out, epochs):
    return _cli("train", "--epochs", epochs, "--seed", 0, "--state", tmp / state, "--out", tmp / out)


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _wait_for_new(path: Path, since: int | None, proc: subprocess.Popen, limit: float = 300.0) -> None:
    """Wait until `proc` has (re)written `path` (so that it is training, not starting up), or has ended."""
    start = time.monotonic()
    while _mtime(path) == since and proc.poll() is None and time.monotonic() - start < limit:
        time.sleep(0.02)


def run_kill_train(tmp: Path, epochs: int, kills: int, seed: int, window: float = 1.0) -> dict:
    """Train uninterrupted; then train with --state, killed `kills` times at a random point 0-`window` s after
    the run saved its first epoch, and resume to the end. Returns the counts and whether the weights match."""
    rng = random.Random(seed)
    subprocess.run(_train_cmd(tmp, "ref.state", "ref.pt", epochs), cwd=ROOT, check=True, capture_output=True)
    reference = torch.load(tmp / "ref.pt", weights_only=True)["state_dict"]
    killed, epochs_seen = 0, []
    while True:
        since = _mtime(tmp / "run.state")
        proc = _start(_train_cmd(tmp, "run.state", "run.pt", epochs))
        if killed < kills:
            _wait_for_new(tmp / "run.state", since, proc)
            if not _kill_after(proc, rng.uniform(0.0, window)):
                break
            killed += 1
            state = _complete_checkpoint(tmp / "run.state")  # complete or absent, never partial
            _require(state is None or state["format"] == "spikeport-training-state-1", "not a training state")
            epochs_seen.append(None if state is None else state["epoch"])
            _require(_complete_checkpoint(tmp / "run.pt") is None or epochs_seen[-1] == epochs, "early checkpoint")
            continue
        _require(proc.wait(timeout=300) == 0, proc.stderr.read())
        break
    final = torch.load(tmp / "run.pt", weights_only=True)["state_dict"]
    _require(not temporaries(tmp / "run.state") and not temporaries(tmp / "run.pt"), "temporaries left")
    return {"kills": killed, "epochs_at_kill": epochs_seen,
            "identical": final.keys() == reference.keys() and all(torch.equal(final[k], reference[k]) for k in final)}


def run_kill_convert(tmp: Path, checkpoint: Path, kills: int, seed: int) -> dict:
    """`spikeport convert` over an existing good .nir, killed at random points: the file is always the
    previous graph (same bytes) or a complete new one."""
    rng = random.Random(seed)
    target = tmp / "model.nir"
    previous = write_nir(target, small_graph(seed)).read_bytes()
    outcomes = {"killed, previous kept": 0, "killed, new complete": 0, "finished": 0}
    for _ in range(kills):
        proc = _start(_cli("convert", "--checkpoint", checkpoint, "--out", target, "--calib-samples", 64))
        if not _kill_after(proc, rng.uniform(0.3, 3.0)):
            outcomes["finished"] += 1
            _require(len(read_graph(target).nodes) > len(small_graph().nodes), "not the converted CNN")
        elif target.read_bytes() == previous:
            outcomes["killed, previous kept"] += 1
        else:
            _require(len(read_graph(target).nodes) > len(small_graph().nodes), "not the converted CNN")
            outcomes["killed, new complete"] += 1
        previous = target.read_bytes()
    return outcomes


_SLOW_WRITER = """
import sys, time
from pipeline.io.atomic import atomic_path
with atomic_path(sys.argv[1]) as p, open(p, "wb") as f:
    for i in range(400):
        f.write(bytes([i % 256]) * 4096); f.flush(); time.sleep(0.005)
"""


def run_kill_midwrite(tmp: Path, kills: int, seed: int) -> dict:
    """A writer that takes ~2 s to fill 1.6 MB through pipeline.io.atomic, killed mid-write: the target keeps
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
        _require(target.read_bytes() == b"previous", "the target changed")
    left = len(temporaries(target))  # the killed writers' leftovers, hidden beside the target ...
    write_nir(target, small_graph())  # ... until the next write to the same target
    _require(not temporaries(target), "the next write left temporaries")
    return {"killed mid-write": killed, "temporaries left by killed writers": left}
