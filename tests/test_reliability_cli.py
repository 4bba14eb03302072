"""Every fault of issue 19 through the CLI: exit code, one line on stderr (no traceback), inputs unchanged, no
output or temporary left; plus interruption, SIGKILL of output sets, concurrent writers and the parse child.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.faults import FAULTS, build_work, clean_outputs, make_root_files, mount_full, release, snapshot
from benchmarks.interrupts import (LONG_COMMANDS, concurrent_sweeps, ctrl_c_while_parsing, interrupt,
                                  orphaned_parse_child)
from pipeline.cli import main
from pipeline.io.atomic import MARKER, lock_path, output_set, set_temporaries, temporaries

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
    """A second parity run into the same folder replaces the first set as a whole: parity.json is the second
    run's, and the plot removed from the first set is there again (the folder is one run's complete set)."""
    folder, _ = work
    out = tmp_path / "p"
    args = ["parity", str(folder / "M.nir"), "--backends", "reference", "--T", "4", "--limit", "10", "--out", str(out)]
    assert run_main(args, capsys)[0] == 0
    first = (out / "parity.json").read_text()
    (out / "parity_layers.png").unlink()
    assert run_main([*args[:-4], "--T", "2", "--limit", "10", "--out", str(out)], capsys)[0] == 0
    assert (out / "parity_layers.png").exists() and (out / "parity.json").read_text() != first


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LONG_COMMANDS))
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_interrupted_command_leaves_nothing_partial(name, sig, work, tmp_path):
    """Ctrl-C: exit 130, one line, nothing written. SIGKILL: an output set is complete (holds the marker) or
    absent, a file appears only whole (os.replace); hidden temporaries wait for the next writer. Inputs unchanged."""
    folder, _ = work
    r = interrupt(name, sig, folder, tmp_path)
    assert not r["input_changed"]
    if not r["running"]:
        assert r["code"] == 0, r["stderr"]
        return
    if sig == signal.SIGINT and r["code"] == 0:   # Ctrl-C while the finished command exits: its outputs are whole
        assert r["hidden"] == [] and r["stderr"] == ""
    elif sig == signal.SIGINT:
        assert r["code"] == 130, r["stderr"]
        assert_one_line(r["stderr"], "interrupted")
        assert r["visible"] == [] and r["hidden"] == []
    else:
        assert r["code"] == -signal.SIGKILL
        sets = [p for p in r["visible"] if p.is_dir()]
        assert all((p / MARKER).is_file() for p in sets), sets


@pytest.mark.slow
def test_concurrent_sweeps_one_refused(work, tmp_path):
    folder, _ = work
    r = concurrent_sweeps(folder, tmp_path)
    assert r["codes"] == [0, 2], r
    assert "being written by another spikeport" in r["refused"][0] and "\n" not in r["refused"][0]
    assert r["files"] == [MARKER, "accuracy_vs_T.png", "maxnorm.nir", "pareto_cmos45nm.png", "pareto_loihi.png",
                          "report.md", "results.json"]
    assert r["hidden"] == []


@pytest.mark.slow
def test_ctrl_c_during_parsing_is_one_line(tmp_path):
    """Ctrl-C from a terminal reaches the parser child too: it ignores it, the CLI says one line and kills it."""
    r = ctrl_c_while_parsing(tmp_path)
    assert r["code"] == 130 and r["children"] == 1 and r["orphans"] == 0, r
    assert_one_line(r["stderr"], "interrupted")


@pytest.mark.slow
def test_parse_child_dies_with_its_parent(tmp_path):
    """A CLI killed while its forked HDF5 parser reads a file declaring 900 MB leaves no orphan."""
    r = orphaned_parse_child(tmp_path)
    assert r == {"children": 1, "orphans": 0}


def test_write_error_leaves_nothing(work, tmp_path, monkeypatch, capsys):
    """A write the system refuses midway (EIO from the file system) is one line, exit 2, and leaves no file."""
    import errno

    import pipeline.io.atomic as atomic
    real_open = open

    def failing_open(path, mode="r", *args, **kwargs):
        if "w" in mode and str(path).endswith(".part"):
            raise OSError(errno.EIO, "Input/output error", str(path))
        return real_open(path, mode, *args, **kwargs)
    monkeypatch.setattr(atomic, "open", failing_open, raising=False)
    code, err = run_main(["quantize", str(work[0] / "M.nir"), "-o", str(tmp_path / "q.nir")], capsys)
    assert code == 2
    assert_one_line(err, "Input/output error")
    assert list(tmp_path.iterdir()) == []


def test_full_disk_hdf5_write_does_not_crash_the_process(work):
    """Before the fix, `convert` onto a full tmpfs died with SIGSEGV at interpreter exit (HDF5 closing a file its
    failed flush had left half-closed); in its own process it now exits 2 with one line and leaves nothing."""
    folder, abilities = work
    if not abilities["tmpfs"]:
        pytest.skip("mounting a tmpfs is not allowed here")
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "convert", "--checkpoint", str(folder / "A.pt"),
                           "--out", str(folder / "full" / "m.nir"), "--calib-samples", "64", "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert_one_line(proc.stderr, "free disk space")
    assert not any((folder / "full").iterdir())


def test_output_set_restores_a_set_moved_aside_by_a_killed_writer(tmp_path):
    """A writer killed between moving the previous set aside and renaming the new one in leaves `.NAME.PID.old`;
    the next writer puts it back before it starts, so the folder is never lost."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    aside = tmp_path / f".out.{dead.pid}.old"
    aside.mkdir()
    (aside / "parity.json").write_text("previous\n")
    with pytest.raises(RuntimeError):
        with output_set(tmp_path / "out", ("parity.json",), "parity") as tmp:
            assert (tmp_path / "out" / "parity.json").read_text() == "previous\n"
            raise RuntimeError("fails before completing")
    assert (tmp_path / "out" / "parity.json").read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("delay", [1.0, 3.0])
def test_ctrl_c_while_starting_is_one_line(work, delay):
    """Ctrl-C while Python imports torch and the backends (1 s) or while it simulates (3 s): one line, exit 130. (In
    the first ~0.2 s the interpreter itself is still loading pipeline/cli.py; a Ctrl-C there gets Python's own
    traceback.) T = 50 000 keeps the run busy well past 3 s on any machine: at T = 32 a fast CI machine had
    finished before the signal and exited 0."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "simulate", str(work[0] / "M.nir"), "--T", "50000",
                             "--quiet"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert_one_line(err, "interrupted")
