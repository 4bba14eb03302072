"""lava-dl 0.6.0's shipped netx networks on spikeport's reference and Lava backends, against the ground truth
shipped beside them and against lava-dl's own `netx.hdf5.Network` run of the same file on Lava (fixed_pt).

Run: .venv/bin/python -m benchmarks.lavadl_networks  (writes the 'lavadl-networks' section of docs/benchmarks.md)

Each layer's spike trains are compared step by step after aligning the time bases: spikeport's runs are
synchronous (layer k answers input step t at step t), the ground truth and lava-dl's run add a step per hop; the
shift that aligns them is found per layer (0..SHIFTS) and reported with the number of differing spikes there.
"""
from __future__ import annotations

import argparse
import sysconfig
import time
from pathlib import Path

import numpy as np

import backends
from backends.lava.backend import forgotten_afterwards
from backends.netx import import_netx
from benchmarks.docs import machine, write_section
from lava.lib.dl.netx.hdf5 import Network
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.io.reset import Reset
from lava.proc.io.sink import RingBuffer as Sink
from lava.proc.io.source import RingBuffer as Source
from pipeline.io.render import markdown_table

COMMAND = ".venv/bin/python -m benchmarks.lavadl_networks"
GTS = Path(sysconfig.get_paths()["purelib"]) / "tests/lava/lib/dl/netx"
SHIFTS = 12
COLUMNS = [("network", "network"), ("layer", "layer"), ("spikes", "spikes (Lava)"), ("ref", "reference vs Lava"),
           ("truth", "Lava vs ground truth"), ("netx", "Lava vs lava-dl netx, staggered resets"),
           ("plain", "Lava vs lava-dl netx run plainly")]


def tiny():
    """tiny.net: the input layer's neurons driven by the shipped bias for 16 steps; ground truth per layer."""
    bias = np.load(GTS / "gts/tinynet/input_bias.npy")
    truth = {n: np.load(GTS / f"gts/tinynet/{n}.npy")[0] for n in ("input", "layer1", "output")}
    return dict(name="tiny.net", path=GTS / "tiny.net", kwargs={}, T=16, bias=bias, steps=None,
                truth=[v.reshape(-1, v.shape[-1]) for v in truth.values()])


def pilotnet():
    """pilotnet_lif: the image as the input layer's bias for 16 steps; ground truth (W, H, C, T) per layer,
    recorded with a reset every 16 steps (only its first 16 steps are compared)."""
    root = GTS / "gts/pilotnet_lif"
    layers = ["input", "conv-0", "conv-1", "conv-2", "conv-3", "conv-4", "fc-0", "fc-1", "fc-2"]
    truth = [np.load(root / f"{n}.npy") for n in layers]
    return dict(name="pilotnet_lif", path=root / "network.net", kwargs={}, T=16, bias=np.load(root / "image.npy"),
                steps=None, truth=[(t.transpose(2, 1, 0, 3).reshape(-1, t.shape[-1]) if t.ndim == 4 else t)[:, :16]
                                   for t in truth])


def ntidigits(T: int):
    """ntidigits: `T` steps of the shipped spike input; ground truth of the last (5th) layer."""
    root = GTS / "gts/ntidigits"
    x = np.load(root / "input.npy")[:, :T]
    return dict(name="ntidigits", path=root / "ntidigits.net", kwargs={"num_layers": 5}, T=T, bias=None, steps=x,
                truth=[None, None, np.load(root / "output.npy")[:, :T]])


def spikeport_runs(case) -> dict[str, tuple[list[np.ndarray], float]]:
    """Spike trains (neurons, T) per neuron layer, torch order, and seconds, per spikeport backend."""
    graph = import_netx(case["path"], **case["kwargs"])
    shape = tuple(int(d) for d in graph.nodes["input"].input_type["input"])
    if case["bias"] is not None:   # (W, H, C) -> (C, H, W), held for T steps
        x = np.ascontiguousarray(case["bias"].transpose(2, 1, 0))[None].astype(np.float32)
    else:
        x = case["steps"].T.reshape(1, case["T"], *shape).astype(np.float32)
    out = {}
    for name in ("reference", "lava"):
        start = time.perf_counter()
        run = backends.get(name).run(graph, x, case["T"], record=True)
        out[name] = ([s[0].reshape(case["T"], -1).T for s in run.spikes.values()], time.perf_counter() - start)
    return out


def lavadl_run(case, staggered: bool) -> tuple[list[np.ndarray], float]:
    """lava-dl's netx.hdf5.Network of the same file on Lava fixed_pt for T + number of layers steps: spike trains
    (neurons, steps) per layer in C-order of torch's (C, H, W). `staggered` zeroes layer i's u and v after step i
    as lava-dl's own tiny.net test does (io.reset.Reset with offset i - 1), so that no layer integrates its bias
    before its first input arrives; otherwise netx runs plainly."""
    with forgotten_afterwards():
        net = Network(net_config=str(case["path"]), **case["kwargs"])
        steps = case["T"] + len(net)
        sinks = []
        for i, layer in enumerate(net.layers):
            sink = Sink(shape=layer.out.shape, buffer=steps)
            layer.out.connect(sink.a_in)
            sinks.append(sink)
            for var in (layer.neuron.u, layer.neuron.v) if staggered else ():
                Reset(interval=steps, offset=i - 1).connect_var(var)
        if case["bias"] is not None:
            net.in_layer.neuron.bias_mant.init = case["bias"]
        else:
            data = np.zeros((case["steps"].shape[0], steps))
            data[:, :case["T"]] = case["steps"]
            source = Source(data=data)
            source.s_out.connect(net.inp)
        start = time.perf_counter()
        net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        trains = [s.data.get() for s in sinks]
        net.stop()
    seconds = time.perf_counter() - start
    # Lava's (X, Y, C) = (W, H, C) layout back to torch's (C, H, W) C-order
    return [t.transpose(2, 1, 0, 3).reshape(-1, t.shape[-1]) if t.ndim == 4 else t for t in trains], seconds


def aligned(ours: np.ndarray, other: np.ndarray, T: int, shifts=range(SHIFTS + 1)) -> tuple[int, int, int]:
    """(shift, differing spikes, compared steps): `other` at step t + shift against `ours` at step t, for the
    shift (of `shifts`) with the fewest differences over the steps both hold."""
    best = None
    for s in shifts:
        n = min(T, other.shape[1] - s)
        if n <= 0:
            break
        diff = int(np.abs(ours[:, :n] - other[:, s:s + n]).sum())
        if best is None or diff < best[1]:
            best = (s, diff, n)
    return best


def measure(case) -> list[list]:
    ours = spikeport_runs(case)
    theirs, lavadl_s = lavadl_run(case, staggered=True)
    plain, _ = lavadl_run(case, staggered=False)
    lava, lava_s = ours["lava"]
    ref, ref_s = ours["reference"]
    rows = []
    for k, (ref_k, lava_k, netx_k, plain_k) in enumerate(zip(ref, lava, theirs, plain)):
        truth = case["truth"][k] if k < len(case["truth"]) else None
        row = dict(network=case["name"], layer=k, spikes=int(lava_k.sum()),
                   ref="identical" if np.array_equal(ref_k, lava_k) else f"{int(np.abs(ref_k - lava_k).sum())} differ")
        netx_shift = aligned(lava_k, netx_k, case["T"])[0]
        for key, other in (("truth", truth), ("netx", netx_k), ("plain", plain_k)):
            if other is None:
                row[key] = "-"
            else:   # the plain run at the staggered run's shift
                s, diff, n = aligned(lava_k, other, case["T"], [netx_shift] if key == "plain" else range(SHIFTS + 1))
                row[key] = f"{diff} differ of {int(other[:, s:s + n].sum())} (shift {s}, {n} steps)"
        rows.append(row)
    rows.append(dict(network=case["name"], layer="seconds", ref=f"reference {ref_s:.1f}, Lava {lava_s:.1f}",
                     netx=f"lava-dl netx {lavadl_s:.1f}"))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ntidigits-steps", type=int, default=3000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    for case in (tiny(), pilotnet(), ntidigits(args.ntidigits_steps)):
        rows += measure(case)
        print(markdown_table(rows, COLUMNS), flush=True)
    body = (f"## lava-dl's shipped netx networks (`{COMMAND}`)\n\nMachine: {machine()}. Spike trains per neuron "
            "layer (k = 0 is the input layer where it has neurons), spikeport's Lava backend against its reference "
            "backend, against the ground truth shipped in lava-dl's wheel and against lava-dl's own "
            "`netx.hdf5.Network` run of the same file on Lava fixed_pt (aligned by the shift shown: one step per "
            "hop; the ground truth of pilotnet_lif resets every 16 steps, so deeper layers compare fewer steps; "
            "ntidigits ships the last layer's ground truth only; \"staggered resets\" zero layer i's u and v "
            "after step i as lava-dl's tiny.net test does, \"plainly\" runs without them and is compared at the "
            "staggered run's shift).\n\n"
            + markdown_table(rows, COLUMNS))
    if not args.no_write:
        print(write_section("lavadl-networks", body))


if __name__ == "__main__":
    main()
