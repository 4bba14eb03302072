"""Faults beyond the validators, as a new user meets them: outputs onto inputs or devices, full disks, bad option
values, mismatched data, damaged states and hwconfigs; one `Fault` per case, files built by `build_work`.

Used by tests/test_reliability_cli.py (each case in-process) and benchmarks/reliability.py (each case in its own
process); `{w}` in a case's arguments is the work folder.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import h5py
import nir
import numpy as np
import torch

from benchmarks.badinputs import small_graph
from pipeline.data.zoo import build_model
from pipeline.io.atomic import write_nir, write_text
from pipeline.training.ann import save_checkpoint

FULL_DISK_BYTES = 8 * 1024   # the tmpfs at {w}/full: smaller than any .nir, checkpoint or plot written here


@dataclass(frozen=True)
class Fault:
    """One case: its class (a row of docs/reliability.md), CLI arguments, the expected exit code, a substring of
    the one-line message, paths that must not exist afterwards and what it needs ('root': mknod, chattr; 'tmpfs':
    the full disk at {w}/full)."""

    kind: str
    label: str
    args: tuple[str, ...]
    message: str
    outputs: tuple[str, ...] = ()
    code: int = 2
    needs: str = ""

    def argv(self, work: Path) -> list[str]:
        return [a.format(w=work) for a in self.args]

    def output_paths(self, work: Path) -> list[Path]:
        return [Path(p.format(w=work)) for p in self.outputs]


def _f(kind, label, args, message, outputs=(), code=2, needs=""):
    return Fault(kind, label, tuple(args.split()), message, tuple(outputs), code, needs)


SAME = "same-path output"
DEVICE = "device file or odd output path"
FULL = "disk full"
VALUE = "option value"
DATA = "graph, checkpoint or data mismatch"
STATE = "training state, hwconfig, metadata"
BOUND = "resource bound"

FAULTS: list[Fault] = [
    _f(SAME, "simulate M --json M", "simulate {w}/M.nir --json {w}/M.nir", "is the input"),
    _f(SAME, "simulate M --json (hard link of M)", "simulate {w}/M.nir --json {w}/M-link.nir", "is the input"),
    _f(SAME, "energy M --plot M", "energy {w}/M.nir --plot {w}/M.nir", "is the input"),
    _f(SAME, "quantize M -o M", "quantize {w}/M.nir -o {w}/M.nir", "is the input"),
    _f(SAME, "convert --checkpoint A --out A", "convert --checkpoint {w}/A.pt --out {w}/A.pt", "is the input"),
    _f(SAME, "deploy D/model.q.nir --out D", "deploy {w}/D/model.q.nir --out {w}/D", "holds the input"),
    _f(SAME, "train --state X --out X", "train --state {w}/X.state --out {w}/X.state --epochs 1",
       "name the same file"),
    _f(SAME, "train-snn --plot P --out P", "train-snn --plot {w}/P.png --out {w}/P.png --epochs 1",
       "name the same file", ["{w}/P.png"]),
    _f(SAME, "sweep --out into a folder with other files", "sweep --out {w}/mixed --checkpoint {w}/A.pt",
       "did not write"),
    _f(DEVICE, "--json onto a character device", "simulate {w}/M.nir --json {w}/null", "not a regular file",
       needs="root"),
    _f(DEVICE, "--plot onto a FIFO", "energy {w}/M.nir --plot {w}/fifo", "not a regular file"),
    _f(DEVICE, "--json under /proc", "simulate {w}/M.nir --json /proc/self/spikeport.json", "system folder"),
    _f(DEVICE, "--json with a file as parent", "simulate {w}/M.nir --json {w}/M.nir/r.json", "is a file"),
    _f(DEVICE, "--json onto an existing folder", "simulate {w}/M.nir --json {w}/D", "existing folder"),
    _f(DEVICE, "--json .", "simulate {w}/M.nir --json .", "names a folder"),
    _f(DEVICE, "--out in an immutable folder", "convert --checkpoint {w}/A.pt --out {w}/immutable/m.nir",
       "not writable", ["{w}/immutable/m.nir"], needs="root"),
    _f(DEVICE, "--out . for an output set", "parity {w}/M.nir --out .", "current folder"),
    _f(DEVICE, "model is a folder", "simulate {w}/D", "is a folder"),
    _f(DEVICE, "model is a FIFO", "simulate {w}/fifo", "FIFO"),
    _f(DEVICE, "model is /dev/zero", "simulate /dev/zero", "device"),
    _f(FULL, "convert onto a full disk", "convert --checkpoint {w}/A.pt --out {w}/full/m.nir", "free disk space",
       ["{w}/full/m.nir"], needs="tmpfs"),
    _f(FULL, "quantize onto a full disk", "quantize {w}/M.nir -o {w}/full/q.nir", "free disk space",
       ["{w}/full/q.nir"], needs="tmpfs"),
    _f(FULL, "deploy onto a full disk", "deploy {w}/M.nir --T 4 --limit 20 --out {w}/full/deploy", "free disk space",
       ["{w}/full/deploy"], needs="tmpfs"),
    _f(FULL, "train onto a full disk", "train --epochs 1 --out {w}/full/a.pt", "free disk space",
       ["{w}/full/a.pt"], needs="tmpfs"),
    _f(FULL, "train-snn onto a full disk", "train-snn --epochs 1 --out {w}/full/s.nir", "free disk space",
       ["{w}/full/s.nir"], needs="tmpfs"),
    _f(FULL, "energy --plot onto a full disk", "energy {w}/M.nir --plot {w}/full/e.png", "free disk space",
       ["{w}/full/e.png"], needs="tmpfs"),
    _f(FULL, "sweep onto a full disk", "sweep --checkpoint {w}/A.pt --methods maxnorm --T 2 --limit 10 "
       "--out {w}/full/sweep", "free disk space", ["{w}/full/sweep"], needs="tmpfs"),
    _f(VALUE, "--limit 0", "simulate {w}/M.nir --limit 0", "positive integer"),
    _f(VALUE, "--limit -1", "simulate {w}/M.nir --limit -1", "positive integer"),
    _f(VALUE, "--lr nan", "train --lr nan", "finite number"),
    _f(VALUE, "--lr -1", "train --lr -1", "finite number"),
    _f(VALUE, "--seed -1", "train --seed -1", "2**32"),
    _f(VALUE, "--percentile 150", "convert --checkpoint {w}/A.pt --percentile 150", "(0, 100]"),
    _f(VALUE, "--percentile nan", "convert --checkpoint {w}/A.pt --percentile nan", "(0, 100]"),
    _f(VALUE, "--device cuda (train)", "train --device cuda", "device"),
    _f(VALUE, "--device xyz (simulate)", "simulate {w}/M.nir --device xyz", "device"),
    _f(VALUE, "--device cuda (convert)", "convert --checkpoint {w}/A.pt --device cuda", "device"),
    _f(VALUE, "sweep --methods ',,'", "sweep --methods ,, --out {w}/s", "names no method", ["{w}/s"]),
    _f(VALUE, "train --model vgg16 on digits", "train --model vgg16 --out {w}/v.pt", "vgg16 on digits",
       ["{w}/v.pt"]),
    _f(VALUE, "--model os:system (needs arguments)", "convert --checkpoint {w}/A.pt --model os:system",
       "cannot be called"),
    _f(DATA, "digits graph on synthetic-cifar (simulate)", "simulate {w}/M.nir --dataset synthetic-cifar",
       "another data set"),
    _f(DATA, "digits graph on synthetic-cifar (energy)", "energy {w}/M.nir --dataset synthetic-cifar",
       "another data set"),
    _f(DATA, "plain graph with Input (64,) on digits", "simulate {w}/flat64.nir", "another data set"),
    _f(DATA, "graph with 3 outputs on 10-class data", "simulate {w}/three.nir", "3 outputs"),
    _f(DATA, "checkpoint for (1, 16, 16) on digits", "convert --checkpoint {w}/A16.pt", "trained on samples"),
    _f(DATA, "state_dict for other data with --model", "convert --checkpoint {w}/sd16.pt --model "
       "benchmarks.faults:mlp16", "does not accept samples"),
    _f(DATA, "negative Conv2d padding", "simulate {w}/negpad.nir", "'conv' (Conv2d) has kernel"),
    _f(DATA, "checkpoint with 3e38 weights", "convert --checkpoint {w}/huge.pt --out {w}/h.nir",
       "float32", ["{w}/h.nir"]),
    _f(DATA, "empty IDX data set (train)", "train --dataset mnist --data-root {w}/emptyidx --out {w}/e.pt",
       "non-empty", ["{w}/e.pt"]),
    _f(DATA, "empty IDX data set (simulate)", "simulate {w}/M.nir --dataset mnist --data-root {w}/emptyidx",
       "non-empty"),
    _f(STATE, "training state without 'optimizer'", "train --epochs 1 --state {w}/no-optimizer.state --out {w}/o.pt",
       "'optimizer'", ["{w}/o.pt"]),
    _f(STATE, "training state without 'model'", "train --epochs 1 --state {w}/no-model.state --out {w}/o.pt",
       "'model'", ["{w}/o.pt"]),
    _f(STATE, "hwconfig not UTF-8", "energy {w}/M.nir --target {w}/latin1.toml", "UTF-8"),
    _f(STATE, "hwconfig weight_bits = 1", "quantize {w}/M.nir --target {w}/bits1.toml -o {w}/q1.nir", "weight_bits",
       ["{w}/q1.nir"]),
    _f(STATE, "hwconfig exponent 100000", "quantize {w}/M.nir --target {w}/exp.toml -o {w}/q2.nir",
       "weight_exp_max", ["{w}/q2.nir"]),
    _f(STATE, "hwconfig exponent -100000", "quantize {w}/M.nir --target {w}/expneg.toml -o {w}/q3.nir",
       "weight_exp_min", ["{w}/q3.nir"]),
    _f(VALUE, "quantize --weight-bits 1", "quantize {w}/M.nir --weight-bits 1 -o {w}/q4.nir",
       "weight_bits must be in 2", ["{w}/q4.nir"]),
    _f(VALUE, "quantize --input-bits 100", "quantize {w}/M.nir --input-bits 100 -o {w}/q5.nir", "input_bits must be",
       ["{w}/q5.nir"]),
    _f(STATE, "fixed_point metadata that is a string", "simulate {w}/fpstring.nir", "fixed_point"),
    _f(BOUND, "simulate --T 1000000000", "simulate {w}/M.nir --T 1000000000", "--max-T"),
    _f(BOUND, "energy --T 1000000000", "energy {w}/M.nir --T 1000000000", "--max-T"),
    _f(BOUND, "train-snn --T 1000000000", "train-snn --T 1000000000 --out {w}/t.nir", "--max-T", ["{w}/t.nir"]),
    _f(BOUND, "train-snn --T 100000 (memory)", "train-snn --T 100000 --out {w}/t.nir", "--max-memory",
       ["{w}/t.nir"]),
    _f(BOUND, "train --batch-size 10**9 --max-memory 1", "train --batch-size 1000000000 --max-memory 1 "
       "--out {w}/b.pt", "--max-memory", ["{w}/b.pt"]),
    _f(BOUND, "checkpoint input_shape (1, 100000, 100000)", "convert --checkpoint {w}/wide.pt", "above the limit"),
]


def _short(fault: Fault) -> Fault:
    """Runs of simulate/energy that get past their fault use 20 test samples."""
    if fault.args[0] in ("simulate", "energy") and "--limit" not in fault.args:
        return Fault(fault.kind, fault.label, fault.args + ("--limit", "20"), fault.message, fault.outputs,
                     fault.code, fault.needs)
    return fault


FAULTS = [_short(f) for f in FAULTS]


def mlp16():
    """A user factory for (1, 16, 16) inputs (used by the 'state_dict for other data' case)."""
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 10))


def _hwconfig(path: Path, formats: str) -> None:
    write_text(path, f'[target]\nname = "{path.stem}"\ndescription = "bad formats"\n\n[formats]\n{formats}\n')


def _graph_variant(seed: int, outputs: int = 10) -> nir.NIRGraph:
    """small_graph with `outputs` output classes."""
    g = small_graph(seed)
    w = g.nodes["fc2"].weight[:outputs]
    g.nodes["fc2"] = nir.Affine(weight=w, bias=np.zeros(outputs, np.float32))
    g.nodes["out"] = nir.I(r=np.ones(outputs, np.float32))
    g.nodes["output"] = nir.Output(output_type={"output": np.array([outputs])})
    return g


def _negative_padding() -> nir.NIRGraph:
    g = small_graph(0)
    nodes = dict(g.nodes)
    nodes["conv"] = nir.Conv2d(input_shape=(8, 8), weight=np.ones((1, 1, 3, 3), np.float32), stride=1, padding=-1,
                               dilation=1, groups=1, bias=np.zeros(1, np.float32))
    edges = [("input", "conv"), ("conv", "flat")] + [e for e in g.edges if e[0] != "input"]
    nodes["flat"] = nir.Flatten(input_type={"input": np.array([1, 4, 4])}, start_dim=0)
    nodes["fc1"] = nir.Affine(weight=np.ones((16, 16), np.float32), bias=np.zeros(16, np.float32))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=g.metadata, type_check=False)


def _idx(path: Path, magic: int, dims: tuple[int, ...]) -> None:
    path.write_bytes(magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims))


def build_work(work: Path) -> None:
    """Write every input the FAULTS name into `work` (a fresh folder); the tmpfs and root-only files apart."""
    from pipeline import api
    from pipeline.data.datasets import MNIST_FILES, load_dataset
    from pipeline.training.resume import save_state
    torch.manual_seed(0)
    ds = load_dataset("digits")
    model = build_model("digits-cnn", ds.input_shape, ds.num_classes)
    ckpt = save_checkpoint(work / "A.pt", model, model_name="digits-cnn", input_shape=(1, 8, 8), num_classes=10)
    state = torch.load(ckpt, weights_only=True)
    graph = api.convert(model, ds.train_x[:200], method="maxnorm")
    write_nir(work / "M.nir", graph)
    os.link(work / "M.nir", work / "M-link.nir")
    (work / "D").mkdir()
    write_nir(work / "D" / "model.q.nir", api.quantize(graph, ds.train_x[:200], target="loihi2").graph)
    (work / "mixed").mkdir()
    write_text(work / "mixed" / "notes.txt", "the user's own file\n")
    os.mkfifo(work / "fifo")
    (work / "immutable").mkdir()
    torch.save({**state, "input_shape": (1, 16, 16)}, work / "A16.pt")
    torch.save(mlp16().state_dict(), work / "sd16.pt")
    torch.save({**state, "input_shape": (1, 100000, 100000)}, work / "wide.pt")
    torch.save({**state, "state_dict": {k: torch.full_like(v, 3e38) if v.is_floating_point() else v
                                        for k, v in state["state_dict"].items()}}, work / "huge.pt")
    write_nir(work / "flat64.nir", _plain64())
    write_nir(work / "three.nir", _graph_variant(1, outputs=3))
    write_nir(work / "negpad.nir", _negative_padding())
    q = api.quantize(small_graph(2), ds.train_x[:200], target="loihi2").graph
    q.nodes["fc1"].metadata = {"spikeport": {"version": 2, "fixed_point": "8 bits"}}
    write_nir(work / "fpstring.nir", q)
    (work / "emptyidx").mkdir()
    for name in MNIST_FILES:
        images = "images" in name
        _idx(work / "emptyidx" / name, 0x00000803 if images else 0x00000801, (0, 28, 28) if images else (0,))
    opt = torch.optim.Adam(model.parameters())
    for key in ("optimizer", "model"):
        path = save_state(work / f"no-{key}.state", model=model, optimizer=opt, epoch=1, history=[])
        raw = torch.load(path, weights_only=False)
        del raw[key]
        torch.save(raw, path)
    (work / "latin1.toml").write_bytes('[target]\nname = "latin1"\ndescription = "Gr\xfc\xdfe"\n'.encode("latin-1"))
    _hwconfig(work / "bits1.toml", "weight_bits = 1\nweight_exp_min = -8\nweight_exp_max = 7")
    _hwconfig(work / "exp.toml", "weight_bits = 8\nweight_exp_min = -8\nweight_exp_max = 100000")
    _hwconfig(work / "expneg.toml", "weight_bits = 8\nweight_exp_min = -100000\nweight_exp_max = 7")


def _plain64() -> nir.NIRGraph:
    rng = np.random.default_rng(0)
    g = small_graph(0)
    nodes = {k: v for k, v in g.nodes.items() if k != "flat"}
    nodes["input"] = nir.Input(input_type={"input": np.array([64])})
    nodes["fc1"] = nir.Affine(weight=rng.normal(0, 0.3, (16, 64)).astype(np.float32), bias=np.zeros(16, np.float32))
    edges = [("input", "fc1")] + [e for e in g.edges if "flat" not in e]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=g.metadata, type_check=False)


def make_root_files(work: Path) -> bool:
    """A copy of /dev/null (mknod) and an immutable folder (chattr +i); False where that is not allowed."""
    try:
        os.mknod(work / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError):
        return False
    return subprocess.run(["chattr", "+i", str(work / "immutable")], capture_output=True).returncode == 0


def mount_full(work: Path) -> bool:
    """A FULL_DISK_BYTES tmpfs at work/full; False where mounting is not allowed."""
    (work / "full").mkdir(exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FULL_DISK_BYTES}", "tmpfs", str(work / "full")],
                          capture_output=True).returncode == 0


def release(work: Path) -> None:
    """Undo make_root_files and mount_full, so the folder can be deleted."""
    subprocess.run(["chattr", "-i", str(work / "immutable")], capture_output=True)
    if os.path.ismount(work / "full"):
        subprocess.run(["umount", str(work / "full")], capture_output=True)


def snapshot(work: Path) -> dict[str, tuple[int, str]]:
    """File type and content hash of every entry under `work` (outside the tmpfs): what 'input unchanged' compares."""
    result = {}
    for path in sorted(work.rglob("*")):
        if "full" in path.relative_to(work).parts[:1]:
            continue
        mode = os.lstat(path).st_mode
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(mode) else ""
        result[str(path.relative_to(work))] = (stat.S_IFMT(mode), digest)
    return result


def clean_outputs(fault: Fault, work: Path) -> None:
    for path in fault.output_paths(work):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def h5_declaring(path: Path, megabytes: int) -> Path:
    """A small valid-looking NIR file whose one dataset declares `megabytes` of data (never written)."""
    with h5py.File(path, "w") as f:
        node = f.create_group("node/nodes/big")
        node["type"] = b"Affine"
        node.create_dataset("weight", shape=(megabytes, 2**18), dtype="f4", chunks=(1, 2**18), compression="gzip")
        node["bias"] = np.zeros(megabytes, np.float32)
    return path
