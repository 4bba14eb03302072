"""Every fault of issue 19 through the CLI: exit code, one line on stderr (no traceback), inputs unchanged, no
output or temporary left; plus interruption, SIGKILL of output sets, concurrent writers and the parse child.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.faults import (FAULTS, build_work, clean_outputs, h5_declaring, make_root_files, mount_full, release,
                               snapshot)
from pipeline.cli import main
from pipeline.io.atomic import lock_path, set_temporaries, temporaries

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    build_work(folder)
    abilities = {"root": make_root_files(folder), "tmpfs": mount_full(folder)}
    yield folder, abilities
    release(folder)


def run_main(argv, capsys) -> tuple[int, str]:
    try:
        code = main([*argv, "--quiet"])
    except SystemExit as exc:   # argparse refusals
        code = exc.code
    return code, capsys.readouterr().err


def assert_one_line(err: str, message: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err
    assert message in lines[-1], err
    assert len(lines) == 1 or lines[0].startswith("usage:"), err   # argparse prints its usage line first


@pytest.mark.parametrize("fault", FAULTS, ids=[f.label for f in FAULTS])
def test_fault(fault, work, capsys, monkeypatch):
    folder, abilities = work
    if fault.needs and not abilities[fault.needs]:
        pytest.skip(f"needs {fault.needs} (mknod/chattr or mount)")
    monkeypatch.chdir(folder)
    clean_outputs(fault, folder)
    before = snapshot(folder)
    code, err = run_main(fault.argv(folder), capsys)
    assert code == fault.code, err
    assert_one_line(err, fault.message)
    assert snapshot(folder) == before, "an input changed"
    for path in fault.output_paths(folder):
        assert not path.exists(), f"{path} left behind"
        assert not temporaries(path) and not set_temporaries(path)
    if abilities["tmpfs"]:
        assert not any((folder / "full").iterdir()), "something left on the full disk"


def test_device_is_not_replaced(work, capsys):
    folder, abilities = work
    if not abilities["root"]:
        pytest.skip("mknod not allowed")
    run_main(["simulate", str(folder / "M.nir"), "--json", str(folder / "null"), "--limit", "5"], capsys)
    assert (folder / "null").is_char_device()


def test_concurrent_writer_is_refused(work, capsys, tmp_path):
    """A lock held by a live process (here a sleeping child) refuses a second writer of the same output set."""
    folder, _ = work
    out = tmp_path / "sweep"
    holder = subprocess.Popen(["sleep", "30"])
    try:
        lock_path(out).write_text(f"{holder.pid}\n")
        code, err = run_main(["sweep", "--checkpoint", str(folder / "A.pt"), "--methods", "maxnorm", "--T", "2",
                              "--limit", "10", "--out", str(out)], capsys)
    finally:
        holder.kill()
        holder.wait()
    assert code == 2
    assert_one_line(err, f"being written by another spikeport (pid {holder.pid}")
    assert not out.exists() and not set_temporaries(out)


def test_stale_lock_of_dead_writer_is_taken_over(work, capsys, tmp_path):
    folder, _ = work
    out = tmp_path / "parity"
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock_path(out).write_text(f"{dead.pid}\n")
    code, err = run_main(["parity", str(folder / "M.nir"), "--backends", "reference", "--T", "4", "--limit", "10",
                          "--out", str(out)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [".spikeport-output", "parity.json", "parity_layers.png"]
    assert not lock_path(out).exists()


def test_output_set_replaces_previous_set_whole(work, capsys, tmp_path):
    """A second parity run into the same folder replaces the first set; a file the first run wrote and the
    second does not (here a stray .nir in a sweep set) does not survive, so sets never mix."""
    folder, _ = work
    out = tmp_path / "p"
    args = ["parity", str(folder / "M.nir"), "--backends", "reference", "--T", "4", "--limit", "10", "--out", str(out)]
    assert run_main(args, capsys)[0] == 0
    first = (out / "parity.json").read_text()
    (out / "parity_layers.png").unlink()
    assert run_main([*args[:-4], "--T", "2", "--limit", "10", "--out", str(out)], capsys)[0] == 0
    assert (out / "parity_layers.png").exists() and (out / "parity.json").read_text() != first


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", *map(str, args), "--quiet"]


LONG_COMMANDS = {
    "train": ("train", "--epochs", "200", "--out", "{o}/a.pt"),
    "train-snn": ("train-snn", "--epochs", "200", "--out", "{o}/s.nir"),
    "convert": ("convert", "--checkpoint", "{w}/A.pt", "--method", "optimal-shift", "--out", "{o}/m.nir"),
    "simulate": ("simulate", "{w}/M.nir", "--T", "4000", "--json", "{o}/r.json"),
    "energy": ("energy", "{w}/M.nir", "--T", "4000", "--plot", "{o}/e.png"),
    "quantize": ("quantize", "{w}/M.nir", "-o", "{o}/q.nir", "--dataset", "synthetic-cifar"),
    "sweep": ("sweep", "--epochs", "200", "--out", "{o}/sweep"),
    "deploy": ("deploy", "{w}/M.nir", "--T", "2000", "--out", "{o}/deploy"),
    "parity": ("parity", "{w}/M.nir", "--backends", "reference", "--T", "4000", "--out", "{o}/parity"),
    "demo": ("demo", "--epochs", "200", "--out", "{o}/demo"),
}


def _start(name: str, folder: Path, out: Path) -> subprocess.Popen:
    args = [a.format(w=folder, o=out) for a in LONG_COMMANDS[name]]
    return subprocess.Popen(_cli(*args), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LONG_COMMANDS))
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_interrupted_command_leaves_nothing(name, sig, work, tmp_path):
    """Ctrl-C: exit 130 with one line; SIGKILL: nothing to say. Either way no output, no temporary, inputs
    unchanged (quantize on a mismatched data set fails fast; it stands for the commands that write at once)."""
    folder, _ = work
    before = snapshot(folder)
    proc = _start(name, folder, tmp_path)
    time.sleep(8.0)
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT and proc.returncode != 2:
        assert proc.returncode == 130, err
        assert_one_line(err, "interrupted")
    assert snapshot(folder) == before
    if proc.returncode != 0:
        left = [p for p in tmp_path.rglob("*")]
        leftovers = [p for p in left if not p.name.endswith(".lock")] if sig == signal.SIGKILL else left
        # after SIGKILL a hidden temporary may remain until the next write to the same target removes it
        assert all(p.name.startswith(".") and p.name.endswith((".part", ".lock")) for p in leftovers), leftovers
        assert not [p for p in left if not p.name.startswith(".")], left


@pytest.mark.slow
def test_parse_child_dies_with_its_parent(tmp_path):
    """A CLI killed while its forked HDF5 parser reads a file declaring 900 MB leaves no orphan."""
    path = h5_declaring(tmp_path / "big.nir", 900)
    proc = subprocess.Popen(_cli("simulate", path), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children = []
    deadline = time.monotonic() + 60
    while not children and time.monotonic() < deadline:
        time.sleep(0.05)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert children, "no parse child seen"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)
    assert not any(Path(f"/proc/{c}").exists() and "Z" not in Path(f"/proc/{c}/stat").read_text().split()[2]
                   for c in children)


def test_write_error_leaves_nothing(tmp_path, monkeypatch, capsys):
    """A write the system refuses midway (EIO from the file system) is one line, exit 2, and leaves no file."""
    import errno

    import pipeline.io.atomic as atomic
    real_open = open

    def failing_open(path, mode="r", *args, **kwargs):
        if "w" in mode and str(path).endswith(".part"):
            raise OSError(errno.EIO, "Input/output error", str(path))
        return real_open(path, mode, *args, **kwargs)
    monkeypatch.setattr(atomic, "open", failing_open, raising=False)
    code, err = run_main(["train", "--epochs", "1", "--out", str(tmp_path / "a.pt")], capsys)
    assert code == 2
    assert_one_line(err, "Input/output error")
    assert list(tmp_path.iterdir()) == []
