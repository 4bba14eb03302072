"""Bad inputs for the reliability checks: corrupted NIR files, checkpoints and data roots, and a reader harness.

`nir_cases` writes one file per case (seeded); `read_isolated` reads each in a forked child with a timeout.
"""
from __future__ import annotations

import multiprocessing
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import nir
import numpy as np

from backends.nirext import VERSION, graph_metadata, neuron_metadata
from pipeline.io.atomic import write_nir


@dataclass(frozen=True)
class Case:
    """One bad input: its class (a row of docs/reliability.md), a short label and the file or folder."""

    kind: str
    label: str
    path: Path


def small_graph(seed: int = 0) -> nir.NIRGraph:
    """A valid graph for digits-shaped input: Input(1,8,8) -> Flatten -> Affine -> IF -> Affine -> I -> Output."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.3, (16, 64)).astype(np.float32)
    w2 = rng.normal(0, 0.3, (10, 16)).astype(np.float32)
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([1, 8, 8])}),
            "flat": nir.Flatten(input_type={"input": np.array([1, 8, 8])}, start_dim=0),
            "fc1": nir.Affine(weight=w1, bias=np.zeros(16, np.float32)),
            "if1": nir.IF(r=np.ones(16, np.float32), v_threshold=np.ones(16, np.float32),
                          v_reset=np.zeros(16, np.float32), metadata=neuron_metadata("subtract")),
            "fc2": nir.Affine(weight=w2, bias=np.zeros(10, np.float32)),
            "out": nir.I(r=np.ones(10, np.float32)),
            "output": nir.Output(output_type={"output": np.array([10])}),
        },
        edges=[("input", "flat"), ("flat", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "out"), ("out", "output")],
        metadata=graph_metadata("hand-built"), type_check=False,
    )


def _edit(path: Path, edit) -> Path:
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _replace(f: h5py.File, key: str, value) -> None:
    """Set dataset `key` to `value`, replacing any existing one."""
    if key in f:
        del f[key]
    f[key] = value


def nir_cases(folder, per_class: int = 20, seed: int = 0) -> list[Case]:
    """Write bad NIR files into `folder`, `per_class` (or fewer, when the class has fewer) per class."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    good = write_nir(folder / "good.nir", small_graph(seed))
    raw = good.read_bytes()
    rng = random.Random(seed)
    cases: list[Case] = []

    def copy(kind: str, label: str) -> Path:
        path = folder / f"{kind.replace(' ', '_')}-{len(cases):04d}.nir"
        shutil.copyfile(good, path)
        cases.append(Case(kind, label, path))
        return path

    def data(kind: str, label: str, content: bytes) -> None:
        path = folder / f"{kind.replace(' ', '_')}-{len(cases):04d}.nir"
        path.write_bytes(content)
        cases.append(Case(kind, label, path))

    for i in range(per_class):
        flipped = bytearray(raw)
        for offset in rng.sample(range(len(raw)), 1 + i % 8):
            flipped[offset] ^= 1 << rng.randrange(8)
        data("bit flips", f"{1 + i % 8} bit(s)", bytes(flipped))
    for offset in np.linspace(0, len(raw) - 1, per_class).astype(int):
        data("truncated", f"at byte {offset}", raw[:offset])
    data("not HDF5", "text", b"this is not a NIR file\n")
    data("not HDF5", "zeros", bytes(4096))
    params = [f"node/nodes/{n}/{p}" for n, p in (("fc1", "weight"), ("fc1", "bias"), ("if1", "r"), ("if1", "v_threshold"),
                                                  ("fc2", "weight"), ("out", "r"), ("input", "shape"))]
    wrong = {"string": lambda a: np.array([b"abc"] * max(1, a.size)), "complex": lambda a: a.astype(np.complex64),
             "scalar string": lambda a: b"x", "3-D": lambda a: np.zeros((2, 2, 2), np.float32)}
    for key in params:
        for name, make in wrong.items():
            _edit(copy("wrong dtype or rank", f"{key.split('/', 2)[2]} as {name}"),
                  lambda f, key=key, make=make: _replace(f, key, make(f[key][()])))
    members: list[str] = []
    with h5py.File(good, "r") as f:
        f.visit(members.append)
    for key in members:
        _edit(copy("missing group or dataset", key), lambda f, key=key: f.__delitem__(key))
    for node in ("input", "fc1", "if1", "out", "output"):
        for garbage in ("Bogus", "", "MaxPool2d", "NIRGraph", "ÿ\x7f"):
            _edit(copy("garbage node type", f"{node}: {garbage!r}"),
                  lambda f, node=node, g=garbage: _replace(f, f"node/nodes/{node}/type", g.encode("utf-8")))
    for key in ("node/nodes/fc1/weight", "node/nodes/fc1/bias", "node/nodes/if1/v_threshold", "node/nodes/if1/r",
                "node/nodes/fc2/weight", "node/nodes/out/r"):
        for value in (np.nan, np.inf, -np.inf):
            def put(f, key=key, value=value):
                arr = f[key][()]
                arr.flat[rng.randrange(arr.size)] = value
                _replace(f, key, arr)
            _edit(copy("non-finite parameter", f"{key.split('/', 2)[2]} = {value}"), put)
    for value in (0.0, -1.0):
        _edit(copy("threshold <= 0", f"v_threshold = {value}"),
              lambda f, v=value: _replace(f, "node/nodes/if1/v_threshold", np.full(16, v, np.float32)))
    edges = [("input", "flat"), ("flat", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "out"), ("out", "output")]
    bad_edges = {"dangling target": edges + [("fc1", "ghost")], "dangling source": edges + [("ghost", "if1")],
                 "cycle": edges + [("if1", "fc1")], "no Output edge": edges[:-1], "edge into Input": edges + [("out", "input")]}
    for label, value in bad_edges.items():
        _edit(copy("bad edges", label), lambda f, v=value: _replace(f, "node/edges", np.array(v, dtype=object).astype("S")))
    shapes = {"fc1 weight (16, 63)": ("node/nodes/fc1/weight", np.zeros((16, 63), np.float32)),
              "fc2 weight (10, 15)": ("node/nodes/fc2/weight", np.zeros((10, 15), np.float32)),
              "if1 size 15": ("node/nodes/if1/r", np.ones(15, np.float32)),
              "input (1, 8, 7)": ("node/nodes/input/shape", np.array([1, 8, 7])),
              "fc1 bias (15,)": ("node/nodes/fc1/bias", np.zeros(15, np.float32))}
    for label, (key, value) in shapes.items():
        _edit(copy("shape mismatch", label), lambda f, k=key, v=value: _replace(f, k, v))
    metas = {"graph version 99": ("node/metadata/spikeport/version", 99),
             "graph version 0": ("node/metadata/spikeport/version", 0),
             "graph version 'x'": ("node/metadata/spikeport/version", b"x"),
             f"neuron version {VERSION + 1}": ("node/nodes/if1/metadata/spikeport/version", VERSION + 1),
             "reset 'sideways'": ("node/nodes/if1/metadata/spikeport/reset", b"sideways"),
             "encoding 'poisson'": ("node/metadata/spikeport/encoding", b"poisson"),
             "dt = 0": ("node/metadata/spikeport/dt", 0.0), "dt = NaN": ("node/metadata/spikeport/dt", np.nan),
             "unknown key": ("node/metadata/spikeport/colour", b"red")}
    for label, (key, value) in metas.items():
        _edit(copy("extension metadata", label), lambda f, k=key, v=value: _replace(f, k, v))
    return cases


def _read_child(path: str, timeout: float, conn) -> None:
    from backends.graph import GraphError
    from backends.nirext import ExtensionError
    from pipeline.errors import SpikeportError
    from pipeline.io.nirio import read_graph
    try:
        graph = read_graph(path, timeout=timeout)
        conn.send(("graph", f"{len(graph.nodes)} nodes"))
    except (SpikeportError, GraphError, ExtensionError) as err:
        conn.send(("error", str(err)))
    except BaseException as err:  # an unclear error is what the harness exists to find
        conn.send(("unclear", f"{type(err).__name__}: {err}"))


def read_isolated(path, timeout: float = 5.0) -> tuple[str, str]:
    """Read `path` with `pipeline.io.nirio.read_graph(path, timeout)` in a forked child, so that even a reader
    without its own time limit is caught: ("graph" | "error" | "unclear" | "hang" | "crash", detail).
    Only "graph" and "error" (a one-line SpikeportError) are acceptable."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_read_child, args=(str(path), timeout, child))
    proc.start()
    child.close()
    ready = parent.poll(4 * timeout + 30)  # generous: only a hang outside read_graph's own limit trips it
    try:
        result = parent.recv() if ready else None
    except EOFError:  # the child died without answering
        result = None
    proc.join(1.0 if ready else 0)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return "hang", f"no answer within {4 * timeout + 30} s"
    if result is None:
        return "crash", f"child exited with code {proc.exitcode}"
    return result
