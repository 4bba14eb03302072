"""Interruptions as a user causes them: Ctrl-C or SIGKILL of every long command, two writers of one output
folder, and the CLI killed while its forked HDF5 parser reads; each runner returns what it found.

Used by tests/test_reliability_cli.py (slow tests) and benchmarks/reliability.py.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.faults import h5_declaring, snapshot
from benchmarks.killruns import ROOT

# every command that runs long enough to be interrupted, sized to be still running after INTERRUPT_AFTER seconds
# (convert and quantize of the digits graph take a few seconds: they are interrupted after SHORT_AFTER)
LONG_COMMANDS = {
    "train": ("train", "--epochs", "200", "--out", "{o}/a.pt"),
    "train-snn": ("train-snn", "--epochs", "200", "--out", "{o}/s.nir"),
    "convert": ("convert", "--checkpoint", "{w}/A.pt", "--out", "{o}/m.nir"),
    "simulate": ("simulate", "{w}/M.nir", "--T", "4000", "--json", "{o}/r.json"),
    "energy": ("energy", "{w}/M.nir", "--T", "4000", "--plot", "{o}/e.png"),
    "quantize": ("quantize", "{w}/M.nir", "-o", "{o}/q.nir", "--target", "loihi2"),
    "sweep": ("sweep", "--epochs", "200", "--out", "{o}/sweep"),
    "deploy": ("deploy", "{w}/M.nir", "--T", "2000", "--out", "{o}/deploy"),
    "parity": ("parity", "{w}/M.nir", "--backends", "reference", "--T", "4000", "--out", "{o}/parity"),
    "demo": ("demo", "--epochs", "200", "--out", "{o}/demo"),
}
INTERRUPT_AFTER = 8.0
SHORT_AFTER = {"convert": 3.0, "quantize": 3.0}


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", *map(str, args), "--quiet"]


def interrupt(name: str, sig: int, work: Path, out: Path) -> dict:
    """Run long command `name` (inputs in `work`, outputs into the empty folder `out`), send `sig` after
    INTERRUPT_AFTER seconds (SHORT_AFTER for the short ones); report the exit code, stderr, whether it was still
    running, inputs changed and what it left in `out` (visible files; hidden temporaries a later write removes are
    counted apart)."""
    before = snapshot(work)
    args = [a.format(w=work, o=out) for a in LONG_COMMANDS[name]]
    proc = subprocess.Popen(cli(*args), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=SHORT_AFTER.get(name, INTERRUPT_AFTER))
        running = False
    except subprocess.TimeoutExpired:
        running = True
        os.kill(proc.pid, sig)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return {"code": None, "stderr": err, "running": running, "input_changed": snapshot(work) != before,
                "visible": [], "hidden": []}
    entries = sorted(out.rglob("*"))
    return {"code": proc.returncode, "stderr": err, "running": running, "input_changed": snapshot(work) != before,
            "visible": [p for p in entries if not any(part.startswith(".") for part in p.relative_to(out).parts)],
            "hidden": [p for p in entries if p.relative_to(out).parts[0].startswith(".")]}


def concurrent_sweeps(work: Path, out: Path) -> dict:
    """Two sweeps into one folder started together: one must be refused by the lock, the other complete alone."""
    args = cli("sweep", "--checkpoint", work / "A.pt", "--methods", "maxnorm", "--T", "2", "4", "--limit", "40",
               "--out", out / "shared")
    procs = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    names = sorted(p.name for p in (out / "shared").iterdir()) if (out / "shared").is_dir() else []
    return {"codes": sorted(code for code, _ in results),
            "refused": [err.strip() for code, err in results if code == 2],
            "files": names, "hidden": sorted(p.name for p in out.iterdir() if p.name.startswith("."))}


def orphaned_parse_child(tmp: Path, megabytes: int = 900) -> dict:
    """Kill the CLI while its forked parser reads a file declaring `megabytes` of data; is the child still alive
    0.2 s later (reparented, holding memory and the caller's stdout/stderr)?"""
    path = h5_declaring(tmp / "big.nir", megabytes)
    proc = subprocess.Popen(cli("simulate", path), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children = _children(proc)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.2)   # the parse takes about a second more: a child alive now outlived its parent
    alive = [c for c in children if _alive(c)]
    for c in alive:
        os.kill(int(c), signal.SIGKILL)
    return {"children": len(children), "orphans": len(alive)}


def _alive(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ctrl_c_while_parsing(tmp: Path, megabytes: int = 900) -> dict:
    """Ctrl-C as a terminal sends it (SIGINT to the whole process group) while the forked parser reads: the
    exit code and stderr of the CLI, and whether the child outlived it."""
    path = h5_declaring(tmp / "big.nir", megabytes)
    proc = subprocess.Popen(cli("simulate", path), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    children = _children(proc)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    time.sleep(1.0)
    return {"code": proc.returncode, "stderr": err, "children": len(children),
            "orphans": sum(_alive(c) for c in children)}


def _children(proc: subprocess.Popen, limit: float = 60.0) -> list[str]:
    """The child pids of `proc` once it has one (or an empty list after `limit` seconds or when it ended)."""
    children: list[str] = []
    deadline = time.monotonic() + limit
    while not children and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        except OSError:
            break
    time.sleep(0.5)   # the child is reading the declared data now
    return children
