"""The `spikeport` command line: train, convert, simulate, energy, sweep, demo, quantize, deploy, parity,
train-snn, export, fetch (python -m pipeline.cli), a thin layer over the Python API in `pipeline.api`.

User mistakes end in one line on stderr and exit code 2, an internal error in one line and exit code 1,
Ctrl-C in one line and exit code 130; `--debug` shows the traceback instead.
"""
from __future__ import annotations

import os
import signal
import sys


def _interrupted_while_starting(signum, frame) -> None:
    os.write(2, b"spikeport: interrupted while starting; nothing was written\n")
    os._exit(130)


AS_PROGRAM = __name__ == "__main__" or os.path.basename(sys.argv[0]) == "spikeport"   # not called in-process

# Ctrl-C while torch and the backends load (seconds): one line, until main() hands SIGINT to its error boundary
if AS_PROGRAM:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

import backends  # noqa: E402
from backends.graph import GraphError  # noqa: E402
from backends.nirext import ENCODINGS, ExtensionError  # noqa: E402
from pipeline import __version__, api, checks  # noqa: E402
from pipeline.errors import SpikeportError  # noqa: E402

EXIT_INTERNAL_ERROR = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


USER_ERRORS = (SpikeportError, GraphError, ExtensionError, backends.Unsupported)



def _add_data_args(p: argparse.ArgumentParser) -> None:
    from pipeline.data.datasets import DATASET_NAMES
    p.add_argument("--dataset", default="digits", choices=DATASET_NAMES,
                   help="data set (default digits, embedded); mnist, fashion-mnist fetched once into the cache "
                   "($SPIKEPORT_CACHE) unless --data-root; cifar10, cifar100 read from --data-root")
    p.add_argument("--data-root", default=None, help="folder with the dataset files (mnist, fashion-mnist, cifar10, "
                   "cifar100)")
    p.add_argument("--seed", type=_seed, default=0, help="seed for data split, initialisation and shuffling")
    p.add_argument("--limit", type=_positive, default=None, help="use only the first N test samples")


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return n


def _seed(value: str) -> int:
    try:
        return checks.seed(int(value))
    except (ValueError, SpikeportError):
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**32), got {value!r}") from None


def _number(value: str) -> float:
    try:
        return checks.finite_positive("value", value)
    except SpikeportError:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {value!r}") from None


def _add_encoding_arg(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument("--encoding", default=default, choices=ENCODINGS,
                   help="input encoding (docs/nir-extensions.md, Encodings); default "
                        + (default or "the graph's own (metadata), direct if it says none"))


def _percentile(value: str) -> float:
    try:
        return checks.percentile(value)
    except SpikeportError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 100], got {value!r}") from None


def _choices(names) -> str:
    return ", ".join(names)


def build_parser() -> argparse.ArgumentParser:
    from pipeline.conversion.registry import BALANCED_RESETS, method_names
    from pipeline.data.datasets import FETCHED
    from pipeline.data.zoo import MODEL_NAMES
    from pipeline.hardware.hwconfig import available_targets
    from pipeline.spiking.registry import trainer_names
    from pipeline.training.ann import AUGMENTATIONS

    targets = f"hwconfig: one of {_choices(available_targets())}, or the path of a .toml file"
    parser = argparse.ArgumentParser(prog="spikeport", description="Convert PyTorch networks to spiking networks, "
                                     "export them as NIR, and run them on several simulators.")
    parser.add_argument("--version", action="version", version=f"spikeport {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    common.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda")
    common.add_argument("--quiet", action="store_true", help="no progress bars")
    common.add_argument("--max-memory", type=_number, default=None, metavar="GB",
                        help="refuse runs estimated to need more memory than this (default: the memory available)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", parents=[common], help="train an ANN from the model zoo and write a checkpoint")
    p.add_argument("--model", default="digits-cnn", choices=MODEL_NAMES)
    p.add_argument("--epochs", type=_positive, default=30)
    p.add_argument("--batch-size", type=_positive, default=64)
    p.add_argument("--lr", type=_number, default=3e-3)
    p.add_argument("--out", default="out/ann.pt", help="checkpoint path (written atomically)")
    p.add_argument("--state", default=None, metavar="PATH",
                   help="training state saved after every epoch; an existing one is resumed (same settings)")
    p.add_argument("--augment", default="none", choices=AUGMENTATIONS,
                   help="random crop after 2-pixel padding; crop-flip also mirrors left-right (Fashion-MNIST)")
    _add_data_args(p)

    p = sub.add_parser("convert", parents=[common], help="convert a trained ANN into a spiking NIR graph")
    p.add_argument("--checkpoint", required=True, help="checkpoint from `spikeport train`, or a state_dict with --model")
    p.add_argument("--model", default=None, help="package.module:factory building your own torch model")
    p.add_argument("--method", default="robustnorm", choices=method_names())
    p.add_argument("--percentile", type=_percentile, default=None, help="percentile for robustnorm (default 99.9)")
    p.add_argument("--granularity", default=None, choices=["layer", "channel", "neuron"],
                   help="one threshold scale per layer (maxnorm, robustnorm default), channel or neuron "
                   "(dnisnm default)")
    p.add_argument("--reset", default=None, choices=BALANCED_RESETS,
                   help="IF reset (maxnorm, robustnorm): subtract (default) or zero (core NIR, runs on Norse and netx)")
    p.add_argument("--T", type=_positive, default=None, help="time budget, for methods whose graph depends on it "
                   "(optimal-shift)")
    p.add_argument("--calib-samples", type=_positive, default=None, help="training samples used for calibration")
    p.add_argument("--out", default="out/model.nir")
    _add_encoding_arg(p, "direct")
    _add_data_args(p)

    p = sub.add_parser("simulate", parents=[common], help="run a NIR file on a backend and report accuracy; "
                       "under torchrun the test set is split over the processes")
    p.add_argument("model_nir", metavar="MODEL.nir")
    p.add_argument("--backend", default="reference", choices=backends.names())
    p.add_argument("--T", type=_positive, nargs="+", default=[32], help="time steps (several allowed)")
    p.add_argument("--max-T", type=_positive, default=checks.DEFAULT_MAX_T, help="refuse T above this")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    _add_from_arg(p)
    _add_encoding_arg(p)
    _add_data_args(p)

    p = sub.add_parser("energy", parents=[common], help="estimated energy per inference of a NIR file on a hardware target")
    p.add_argument("model_nir", metavar="MODEL.nir")
    p.add_argument("--target", default="cmos45nm", help=targets)
    p.add_argument("--T", type=_positive, default=32)
    p.add_argument("--data-movement", action="store_true",
                   help="add the data-movement term (Joint A-SNN Sec. 5.4), in separate columns")
    p.add_argument("--memory-level", default="cache_8kb",
                   choices=("cache_8kb", "cache_32kb", "cache_1mb", "dram_min", "dram_max"),
                   help="memory level of the hwconfig [memory] table that prices data movement")
    p.add_argument("--plot", default=None, metavar="PATH", help="also write a per-layer stacked bar plot (PNG)")
    _add_encoding_arg(p)
    _add_data_args(p)

    p = sub.add_parser("sweep", parents=[common], help="conversion methods x time steps on one model: table, JSON, plot")
    p.add_argument("--checkpoint", default=None, help="ANN checkpoint from `spikeport train` (default: train --model)")
    p.add_argument("--model", default="digits-cnn", choices=MODEL_NAMES, help="zoo model trained when no checkpoint")
    p.add_argument("--epochs", type=_positive, default=30, help="ANN training epochs when no checkpoint")
    p.add_argument("--methods", default="maxnorm,robustnorm",
                   help="comma-separated METHOD[:GRANULARITY][:RESET] entries, e.g. maxnorm:channel,maxnorm:zero,"
                   f"dnisnm; methods: {_choices(method_names())}")
    p.add_argument("--T", type=_positive, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128])
    p.add_argument("--method-epochs", type=_positive, default=10, help="fine-tuning epochs for methods that train")
    p.add_argument("--targets", default="cmos45nm,loihi", help="comma-separated hwconfig targets priced per (method, "
                   f"T), each with an accuracy-energy Pareto front; {targets}")
    p.add_argument("--out", default="out/sweep")
    _add_encoding_arg(p, "direct")
    _add_data_args(p)

    p = sub.add_parser("quantize", parents=[common], help="quantize a NIR file to a fixed-point target's formats")
    p.add_argument("model_nir", metavar="MODEL.nir")
    p.add_argument("--target", default="loihi2", help=targets + " with [formats]")
    p.add_argument("-o", "--out", default="out/model.q.nir", help="quantized NIR file (written atomically)")
    p.add_argument("--weight-bits", type=_positive, default=None, help="weight mantissa bits (default: the target's)")
    p.add_argument("--input-bits", type=_positive, default=8, help="integer width of the direct input")
    p.add_argument("--payload-bits", type=_positive, default=8, help="integer width of graded spike payloads")
    p.add_argument("--netx", action="store_true", help="lay lava-dl netx's formats over the target's (weight exponent "
                   "0, biases in whole activation units) so netx runs the integers bit for bit")
    _add_data_args(p)

    p = sub.add_parser("deploy", parents=[common], help="quantized NIR, resource map and accuracy/energy report "
                       "for a fixed-point target")
    p.add_argument("model_nir", metavar="MODEL.nir")
    p.add_argument("--target", default="loihi2", help=targets + " with [formats]")
    p.add_argument("--out", default="out/deploy", help="output folder")
    p.add_argument("--T", type=_positive, default=32)
    _add_encoding_arg(p)
    _add_data_args(p)

    p = sub.add_parser("export", parents=[common], help="write a NIR file in the form another tool's importer runs")
    p.add_argument("model_nir", metavar="MODEL.nir")
    p.add_argument("--for", dest="tool", required=True, choices=("norse", "sinabs", "snntorch", "rockpool"))
    p.add_argument("-o", "--out", required=True, help="the NIR file to write")
    p.add_argument("--approximate", action="store_true", help="write it even where the tool computes differently "
                   "(the differences are printed)")

    p = sub.add_parser("parity", parents=[common], help="one NIR file on several backends, compared with the "
                       "reference layer by layer: table, JSON, plot")
    p.add_argument("model_nir", metavar="MODEL.nir")
    p.add_argument("--backends", default="reference,lava,norse,netx",
                   help=f"comma-separated backend names: {_choices(backends.names())}")
    p.add_argument("--T", type=_positive, default=32)
    _add_from_arg(p)
    p.add_argument("--approximate", action="store_true",
                   help="run backends that cannot honour the graph anyway; their differences are labelled")
    p.add_argument("--agreement", type=_number, default=0.99, help="minimum prediction agreement with the reference")
    p.add_argument("--layer-tolerance", type=_number, default=0.05,
                   help="maximum relative spike-count difference per layer")
    p.add_argument("--output-tolerance", type=_number, default=0.05,
                   help="maximum |output difference| relative to the largest reference output")
    p.add_argument("--out", default="out/parity", help="folder for parity.json and parity_layers.png")
    _add_encoding_arg(p)
    _add_data_args(p)

    p = sub.add_parser("train-snn", parents=[common], help="train a spiking network directly (snn2ann, joint-asnn, "
                       "stbp) and export it as NIR; runs data-parallel under torchrun")
    p.add_argument("--method", default="snn2ann", choices=trainer_names())
    p.add_argument("--model", default="digits-cnn", choices=MODEL_NAMES, help="architecture (a chain model)")
    p.add_argument("--T", type=_positive, default=4, help="time steps")
    p.add_argument("--max-T", type=_positive, default=checks.DEFAULT_MAX_T, help="refuse T above this")
    p.add_argument("--epochs", type=_positive, default=20)
    p.add_argument("--batch-size", type=_positive, default=64)
    p.add_argument("--lr", type=_number, default=None, help="learning rate (default: the method's)")
    p.add_argument("--unit", default=None, choices=["stsu", "resu", "none"], help="snn2ann spike mapping unit "
                   "(default stsu)")
    p.add_argument("--no-ata", dest="ata", action="store_const", const=False, default=None,
                   help="snn2ann without adaptive threshold adjustment")
    p.add_argument("--no-wft", dest="wft", action="store_const", const=False, default=None,
                   help="joint-asnn without weight factorization")
    p.add_argument("--no-distill", dest="distill", action="store_const", const=False, default=None,
                   help="joint-asnn without KLD and L2 distillation")
    p.add_argument("--neuron", default=None, choices=["if", "lif"], help="stbp neuron (default if; joint-asnn is LIF)")
    p.add_argument("--state", default=None, metavar="PATH", help="training state saved every epoch; resumed if present")
    p.add_argument("--plot", default=None, metavar="PATH", help="write ANN/SNN validation accuracy per epoch (PNG)")
    p.add_argument("--out", default="out/model.nir")
    _add_data_args(p)

    p = sub.add_parser("fetch", parents=[common], help="fetch MNIST / Fashion-MNIST once into the cache "
                       "($SPIKEPORT_CACHE, else the XDG cache folder), verified by SHA-256")
    p.add_argument("dataset", choices=(*FETCHED, "all"))

    p = sub.add_parser("demo", parents=[common], help="train, convert, simulate on reference and Lava, energy, report")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--epochs", type=_positive, default=30)
    p.add_argument("--method", default="robustnorm", choices=method_names())
    p.add_argument("--lava-samples", type=_positive, default=None, help="test samples run on Lava (default all)")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--encoding", default="rate", choices=ENCODINGS, help="input encoding run beside direct")
    return parser


def _dataset(args):
    from pipeline.data.datasets import load_dataset
    ds = load_dataset(args.dataset, data_root=args.data_root, seed=args.seed, progress=not args.quiet)
    checks.dataset_samples(ds)
    return ds


def _test_data(args, graph):
    ds = _dataset(args)
    checks.graph_for_dataset(graph, ds, getattr(args, "encoding", None))
    n = len(ds.test_x) if args.limit is None else min(args.limit, len(ds.test_x))
    return ds, ds.test_x[:n].numpy(), ds.test_y[:n].numpy()


def _given(**options) -> dict:
    """The options the user set (None means not given), so that the API refuses those that do not apply."""
    return {k: v for k, v in options.items() if v is not None}


def cmd_train(args) -> int:
    from pipeline.data.zoo import build_model
    from pipeline.training.ann import save_checkpoint, seed_everything
    ds = _dataset(args)
    seed_everything(args.seed)
    try:
        model = build_model(args.model, ds.input_shape, ds.num_classes)
    except ValueError as err:
        raise SpikeportError(f"{args.model} on {args.dataset}: {err}") from None
    history = api.train(model, ds, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                        device=args.device, progress=not args.quiet, state_path=args.state,
                        max_memory_gb=args.max_memory, augment=args.augment)
    path = save_checkpoint(args.out, model.cpu(), model_name=args.model, input_shape=ds.input_shape,
                           num_classes=ds.num_classes, extra={"history": history.epochs, "seed": args.seed,
                                                              "dataset": args.dataset, "augment": args.augment})
    print(f"test accuracy {100 * history.epochs[-1]['test_accuracy']:.2f}% after {args.epochs} epochs; wrote {path}")
    return 0


def cmd_convert(args) -> int:
    from pipeline.training.checkpoints import load_model
    ds = _dataset(args)
    model, _ = load_model(args.checkpoint, args.model, input_shape=ds.input_shape)
    calib = ds.train_x if args.calib_samples is None else ds.train_x[:args.calib_samples]
    graph = api.convert(model, calib, method=args.method, T=args.T, source=str(args.checkpoint), encoding=args.encoding,
                        progress=not args.quiet, **_given(percentile=args.percentile, granularity=args.granularity,
                                                          reset=args.reset))
    path = api.save(graph, args.out)
    print(f"converted with {args.method}: {len(graph.nodes)} nodes, {len(graph.edges)} edges; wrote {path}")
    return 0


def _add_from_arg(p) -> None:
    from pipeline.io.nirimport import AUTO, CONVENTIONS
    p.add_argument("--from", dest="convention", default=AUTO, choices=(AUTO, *CONVENTIONS),
                   help="the tool that wrote MODEL.nir (default: from the file's metadata or its writer's "
                   "fingerprint; a file showing neither is refused)")


def cmd_simulate(args) -> int:
    from pipeline import sharded
    from pipeline.io.atomic import write_json
    from pipeline.io.provenance import provenance
    from pipeline.training import distributed
    graph = api.load(args.model_nir, convention=args.convention)   # forks its HDF5 parser before gloo starts threads
    distributed.init_from_env("cpu")   # under torchrun (gloo) each process runs a share of the samples
    first = distributed.world()[0] == 0
    _, x, y = _test_data(args, graph)
    rows = []
    for T in args.T:
        # encoded once for all samples, so that a seeded encoding gives the same spikes however the samples are shared
        inputs = api.encoded(graph, x, T, args.encoding, args.seed)
        run = sharded.simulate(graph, inputs, T, backend=args.backend, progress=not args.quiet, max_T=args.max_T,
                               **({"device": args.device} if args.backend == "reference" else {}))
        rows.append({"backend": run.backend, "T": T, "accuracy": run.accuracy(y), "spikes_per_sample": run.spikes_per_sample,
                     "samples": len(x), "seconds": run.seconds, "approximate": run.approximate})
        if first:
            print(f"{run.backend} T={T}: accuracy {100 * rows[-1]['accuracy']:.2f}% on {len(x)} samples, "
                  f"{run.spikes_per_sample:.0f} spikes/sample, {run.seconds:.2f} s")
    if args.json and first:
        write_json(args.json, {"model": str(args.model_nir), "runs": rows, "environment": provenance(args.seed)})
    return 0


def cmd_energy(args) -> int:
    graph = api.load(args.model_nir)
    _, x, _ = _test_data(args, graph)
    report = api.energy(graph, x, target=args.target, T=args.T, data_movement=args.data_movement,
                        memory_level=args.memory_level, encoding=args.encoding, seed=args.seed)
    print(report.to_markdown())
    if args.plot:
        from pipeline.io.render import energy_plot
        title = f"energy per inference, {report.hwconfig}, T={args.T}" + \
            (", with data movement" if args.data_movement else "")
        print(f"wrote {energy_plot(args.plot, report.to_dict()['layers'], title)}")
    return 0


def cmd_sweep(args) -> int:
    from pipeline import sharded
    from pipeline.data.zoo import build_model
    from pipeline.training import distributed
    from pipeline.training.checkpoints import load_model
    from pipeline.reports.sweep import SweepConfig, Variant, run_sweep
    from pipeline.training.ann import seed_everything
    distributed.init_from_env("cpu")   # under torchrun (gloo) each process runs a share of every simulation
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if not methods:
        raise SpikeportError(f"--methods {args.methods!r} names no method; e.g. --methods maxnorm,dnisnm")
    for entry in methods:   # bad entries fail before the ANN trains
        Variant.parse(entry)
    ds = _dataset(args)
    seed_everything(args.seed)
    if args.checkpoint:
        ann, _ = load_model(args.checkpoint, input_shape=ds.input_shape)
    else:
        def trained():
            ann = build_model(args.model, ds.input_shape, ds.num_classes)
            api.train(ann, ds, epochs=args.epochs, seed=args.seed, device=args.device, progress=not args.quiet)
            return ann.cpu().eval()
        ann = sharded.from_first(trained)
    cfg = SweepConfig(out=Path(args.out), methods=methods,
                      T_values=tuple(args.T), method_epochs=args.method_epochs, seed=args.seed, device=args.device,
                      progress=not args.quiet, limit=args.limit, targets=_targets(args.targets),
                      encoding=args.encoding)
    if run_sweep(ann, ds, cfg):
        print(f"wrote {cfg.out / 'report.md'}, {cfg.out / 'results.json'}, {cfg.out / 'accuracy_vs_T.png'}")
    return 0


def _targets(text: str) -> tuple[str, ...]:
    from pipeline.hardware.hwconfig import load_hwconfig
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    if not names:
        raise SpikeportError(f"--targets {text!r} names no hwconfig; e.g. --targets cmos45nm,loihi")
    for name in names:   # bad names fail before the ANN trains
        load_hwconfig(name)
    return names


def cmd_export(args) -> int:
    from pipeline.io.atomic import write_nir
    from pipeline.io.nirexport import export_for
    graph, notes = export_for(api.load(args.model_nir), args.tool, approximate=args.approximate)
    for note in notes:
        print(f"{args.tool}: {note}")
    print(f"wrote {write_nir(args.out, graph)}")
    return 0


def cmd_parity(args) -> int:
    from pipeline.reports.parity import Tolerances, table, write_outputs
    graph = api.load(args.model_nir, convention=args.convention)
    _, x, y = _test_data(args, graph)
    tol = Tolerances(agreement=args.agreement, layer_rel=args.layer_tolerance, output_rel=args.output_tolerance)
    result = api.parity(graph, x, y, backends=[n.strip() for n in args.backends.split(",") if n.strip()], T=args.T,
                        approximate=args.approximate, tolerances=tol, progress=not args.quiet, encoding=args.encoding,
                        seed=args.seed)
    result["model"] = str(args.model_nir)
    print(table(result))
    paths = write_outputs(result, Path(args.out))
    print(f"wrote {paths[0]}, {paths[1]}")
    return 1 if any(row["status"] == "fail" for row in result["rows"]) else 0


def cmd_train_snn(args) -> int:
    from pipeline.data.zoo import build_model
    from pipeline.training import distributed
    from pipeline.training.ann import seed_everything
    from pipeline.spiking.train import branch_plot
    distributed.init_from_env(checks.device(args.device))
    ds = _dataset(args)
    seed_everything(args.seed)
    try:
        ann = build_model(args.model, ds.input_shape, ds.num_classes)
    except ValueError as err:
        raise SpikeportError(f"{args.model} on {args.dataset}: {err}") from None
    net = api.train_snn(ann, ds, args.method, T=args.T, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        seed=args.seed, device=args.device, progress=not args.quiet, state_path=args.state,
                        max_T=args.max_T, max_memory_gb=args.max_memory,
                        **_given(unit=args.unit, ata=args.ata, wft=args.wft, distill=args.distill, neuron=args.neuron))
    if distributed.world()[0] != 0:
        return 0
    last = net.history[-1]
    accs = ", ".join(f"{b} {100 * last[f'{b}_accuracy']:.2f}%" for b in ("ann", "snn") if f"{b}_accuracy" in last)
    path = api.save(net.export(ds.input_shape, source=f"spikeport train-snn --method {args.method}"), args.out)
    print(f"{args.method} T={args.T}: test accuracy {accs} after {args.epochs} epochs; wrote {path}")
    if args.plot:
        print(f"wrote {branch_plot(args.plot, net.history, f'{args.method}, T={args.T}')}")
    return 0


def cmd_fetch(args) -> int:
    from pipeline.data.datasets import FETCHED
    from pipeline.data.fetch import fetch
    for name in FETCHED if args.dataset == "all" else (args.dataset,):
        print(f"{name}: {fetch(name, progress=not args.quiet)}")
    return 0


def cmd_demo(args) -> int:
    from pipeline.reports.demo import DemoConfig, run_demo
    run_demo(DemoConfig(out=Path(args.out), method=args.method, epochs=args.epochs, lava_samples=args.lava_samples,
                        seed=args.seed, device=checks.device(args.device), progress=not args.quiet,
                        encoding=args.encoding))
    return 0


def cmd_quantize(args) -> int:
    graph = api.load(args.model_nir)
    ds = _dataset(args)
    checks.graph_for_dataset(graph, ds)
    q = api.quantize(graph, ds.train_x, target=args.target, weight_bits=args.weight_bits, input_bits=args.input_bits,
                     payload_bits=args.payload_bits, netx=args.netx)
    for name, layer in q.layers.items():
        print(f"{name}: {layer['weight_bits']}-bit mantissas in [{layer['mantissa_min']}, {layer['mantissa_max']}], "
              f"exponent {layer['weight_exp']}, {layer['clipped']} clipped")
    print(f"wrote {api.save(q.graph, args.out)}")
    if args.netx:
        from pipeline.hardware.deploy import netx_refusal
        why = netx_refusal(q.graph)
        if why is not None:
            print(f"note: the integers are in netx's formats, but lava-dl's netx cannot run this graph: {why}",
                  file=sys.stderr)
    return 0


def cmd_deploy(args) -> int:
    graph = api.load(args.model_nir)
    ds, x, y = _test_data(args, graph)
    bundle = api.deploy(graph, ds.train_x, x, y, args.out, target=args.target, T=args.T, progress=not args.quiet,
                        encoding=args.encoding, seed=args.seed)
    for row in bundle.accuracy:
        print(f"{row['weights']}: accuracy {100 * row['accuracy']:.2f}% on {len(x)} samples, T={args.T}")
    print("wrote " + ", ".join(str(p) for p in bundle.files.values()))
    return 0


COMMANDS = {"train": cmd_train, "convert": cmd_convert, "simulate": cmd_simulate, "energy": cmd_energy,
            "sweep": cmd_sweep, "demo": cmd_demo, "quantize": cmd_quantize, "deploy": cmd_deploy,
            "parity": cmd_parity, "train-snn": cmd_train_snn, "export": cmd_export, "fetch": cmd_fetch}


SET_OUTPUTS = {"sweep": "pipeline.reports.sweep", "deploy": "pipeline.hardware.deploy",
               "parity": "pipeline.reports.parity", "demo": "pipeline.reports.demo"}


def _inputs(args) -> list[str]:
    """The files a command reads (no output may replace them); --state is read and rewritten by the command."""
    paths = [getattr(args, name, None) for name in ("model_nir", "checkpoint", "data_root")]
    target = getattr(args, "target", None)
    return [p for p in paths if p] + ([target] if target and Path(target).exists() else [])


def _check_outputs(args) -> None:
    """Refuse, before any work, outputs that would replace an input, a device or a foreign folder."""
    from importlib import import_module

    from pipeline.io.atomic import check_outputs
    files = {f"--{name}": getattr(args, name, None) for name in ("json", "plot", "state")}
    if args.command in SET_OUTPUTS:
        check_outputs(files, ("--out", args.out, import_module(SET_OUTPUTS[args.command]).OUTPUTS))
    else:
        check_outputs({"--out": getattr(args, "out", None), **files})


def main(argv: list[str] | None = None) -> int:
    from pipeline.io.atomic import protect
    args = build_parser().parse_args(argv)
    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        checks.device(args.device)
        with protect(_inputs(args)):
            _check_outputs(args)
            code = COMMANDS[args.command](args)
        if AS_PROGRAM:   # done and written: Ctrl-C while the interpreter shuts down would only kill it by SIGINT
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        return code
    except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001  (the boundary: one line, never a traceback)
        if args.debug:
            raise
        message, code = _outcome(err)
        print(f"spikeport {args.command}: {message}", file=sys.stderr)
        return code


def _outcome(err: BaseException) -> tuple[str, int]:
    """The one line and exit code for an exception that reached the boundary: a user mistake (2), Ctrl-C
    (130), an operating-system error such as a full disk (2), or a bug in spikeport (1)."""
    if isinstance(err, USER_ERRORS):
        return f"error: {err}", EXIT_USER_ERROR
    if isinstance(err, KeyboardInterrupt):
        return "interrupted; nothing partial was written", EXIT_INTERRUPTED
    if isinstance(err, OSError):
        return f"error: {_os_error(err)}", EXIT_USER_ERROR
    first = str(err).splitlines()[0] if str(err) else ""
    return (f"internal error ({type(err).__name__}: {first}); this is a bug in spikeport: rerun with --debug and "
            "report the traceback"), EXIT_INTERNAL_ERROR


def _os_error(err: OSError) -> str:
    """One line for an operating-system error: what failed, on which file, and what to do."""
    import errno
    where = f" ({err.filename})" if err.filename else ""
    hint = {errno.ENOSPC: "free some disk space and rerun", errno.EDQUOT: "free some disk space and rerun",
            errno.EACCES: "choose a location you may write to", errno.EROFS: "choose a writable location",
            errno.EPERM: "choose a location you may write to"}.get(err.errno, "check the path and rerun")
    return f"{err.strerror or err}{where}: {hint}"


if __name__ == "__main__":
    sys.exit(main())
