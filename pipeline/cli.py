"""The `spikeport` command line: train, convert, simulate, energy, sweep, demo, quantize, deploy, parity,
train-snn (python -m pipeline.cli).

User mistakes end in one line on stderr and exit code 2; `--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import backends
from backends.graph import GraphError
from backends.nirext import ExtensionError, fixed_point
from pipeline.errors import SpikeportError

EXIT_USER_ERROR = 2


USER_ERRORS = (SpikeportError, GraphError, ExtensionError, backends.Unsupported)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits", help="digits (embedded, default), mnist, cifar10, cifar100, "
                   "synthetic-cifar")
    p.add_argument("--data-root", default=None, help="folder with the dataset files (mnist, cifar10, cifar100)")
    p.add_argument("--seed", type=int, default=0, help="seed for data split, initialisation and shuffling")
    p.add_argument("--limit", type=int, default=None, help="use only the first N test samples")


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return n


def build_parser() -> argparse.ArgumentParser:
    from pipeline.convert import BALANCED_RESETS, method_names
    from pipeline.models import MODEL_NAMES

    parser = argparse.ArgumentParser(prog="spikeport", description="Convert PyTorch networks to spiking networks, "
                                     "export them as NIR, and run them on several simulators.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    common.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda")
    common.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", parents=[common], help="train an ANN from the model zoo and write a checkpoint")
    p.add_argument("--model", default="digits-cnn", choices=MODEL_NAMES)
    p.add_argument("--epochs", type=_positive, default=30)
    p.add_argument("--batch-size", type=_positive, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--out", default="out/ann.pt", help="checkpoint path (written atomically)")
    p.add_argument("--state", default=None, metavar="PATH",
                   help="training state saved after every epoch; an existing one is resumed (same settings)")
    _add_data_args(p)

    p = sub.add_parser("convert", parents=[common], help="convert a trained ANN into a spiking NIR graph")
    p.add_argument("--checkpoint", required=True, help="checkpoint from `spikeport train`, or a state_dict with --model")
    p.add_argument("--model", default=None, help="package.module:factory building your own torch model")
    p.add_argument("--method", default="robustnorm", choices=method_names())
    p.add_argument("--percentile", type=float, default=99.9, help="percentile for robustnorm")
    p.add_argument("--granularity", default="layer", choices=["layer", "channel", "neuron"],
                   help="one threshold scale per layer, channel or neuron (maxnorm, robustnorm)")
    p.add_argument("--reset", default=None, choices=BALANCED_RESETS,
                   help="IF reset (maxnorm, robustnorm): subtract (default) or zero (core NIR, runs on Norse and netx)")
    p.add_argument("--T", type=_positive, default=None, help="time budget, for methods whose graph depends on it")
    p.add_argument("--calib-samples", type=_positive, default=None, help="training samples used for calibration")
    p.add_argument("--out", default="out/model.nir")
    _add_data_args(p)

    p = sub.add_parser("simulate", parents=[common], help="run a NIR file on a backend and report accuracy")
    p.add_argument("model_nir", metavar="MODEL.nir")
    p.add_argument("--backend", default="reference", choices=backends.names())
    p.add_argument("--T", type=_positive, nargs="+", default=[32], help="time steps (several allowed)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    _add_data_args(p)

    p = sub.add_parser("energy", parents=[common], help="estimated energy per inference of a NIR file on a hardware target")
    p.add_argument("model_nir", metavar="MODEL.nir")
    p.add_argument("--target", default="cmos45nm", help="hwconfig name (hwconfigs/NAME.toml) or path")
    p.add_argument("--T", type=_positive, default=32)
    p.add_argument("--data-movement", action="store_true",
                   help="add the data-movement term (Joint A-SNN Sec. 5.4), in separate columns")
    p.add_argument("--memory-level", default="cache_8kb",
                   choices=("cache_8kb", "cache_32kb", "cache_1mb", "dram_min", "dram_max"),
                   help="memory level of the hwconfig [memory] table that prices data movement")
    p.add_argument("--plot", default=None, metavar="PATH", help="also write a per-layer stacked bar plot (PNG)")
    _add_data_args(p)

    p = sub.add_parser("sweep", parents=[common], help="conversion methods x time steps on one model: table, JSON, plot")
    p.add_argument("--checkpoint", default=None, help="ANN checkpoint from `spikeport train` (default: train --model)")
    p.add_argument("--model", default="digits-cnn", choices=MODEL_NAMES, help="zoo model trained when no checkpoint")
    p.add_argument("--epochs", type=_positive, default=30, help="ANN training epochs when no checkpoint")
    p.add_argument("--methods", default="maxnorm,robustnorm",
                   help="comma-separated METHOD[:GRANULARITY][:RESET] entries, e.g. "
                   "maxnorm:channel,maxnorm:zero,dnisnm")
    p.add_argument("--T", type=_positive, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128])
    p.add_argument("--method-epochs", type=_positive, default=10, help="fine-tuning epochs for methods that train")
    p.add_argument("--out", default="out/sweep")
    _add_data_args(p)

    p = sub.add_parser("quantize", parents=[common], help="quantize a NIR file to a fixed-point target's formats")
    p.add_argument("model_nir", metavar="MODEL.nir")
    p.add_argument("--target", default="loihi2", help="hwconfig name (hwconfigs/NAME.toml) or path, with [formats]")
    p.add_argument("-o", "--out", default="out/model.q.nir", help="quantized NIR file (written atomically)")
    p.add_argument("--weight-bits", type=_positive, default=None, help="weight mantissa bits (default: the target's)")
    p.add_argument("--input-bits", type=_positive, default=8, help="integer width of the direct input")
    p.add_argument("--payload-bits", type=_positive, default=8, help="integer width of graded spike payloads")
    _add_data_args(p)

    p = sub.add_parser("deploy", parents=[common], help="quantized NIR, resource map and accuracy/energy report "
                       "for a fixed-point target")
    p.add_argument("model_nir", metavar="MODEL.nir")
    p.add_argument("--target", default="loihi2", help="hwconfig name (hwconfigs/NAME.toml) or path, with [formats]")
    p.add_argument("--out", default="out/deploy", help="output folder")
    p.add_argument("--T", type=_positive, default=32)
    _add_data_args(p)

    p = sub.add_parser("parity", parents=[common], help="one NIR file on several backends, compared with the "
                       "reference layer by layer: table, JSON, plot")
    p.add_argument("model_nir", metavar="MODEL.nir")
    p.add_argument("--backends", default="reference,lava,norse,netx", help="comma-separated backend names")
    p.add_argument("--T", type=_positive, default=32)
    p.add_argument("--from", dest="convention", default="spikeport",
                   choices=("spikeport", "norse", "snntorch", "sinabs"), help="the tool that wrote MODEL.nir")
    p.add_argument("--approximate", action="store_true",
                   help="run backends that cannot honour the graph anyway; their differences are labelled")
    p.add_argument("--agreement", type=float, default=0.99, help="minimum prediction agreement with the reference")
    p.add_argument("--layer-tolerance", type=float, default=0.05, help="maximum relative spike-count difference per layer")
    p.add_argument("--output-tolerance", type=float, default=0.05,
                   help="maximum |output difference| relative to the largest reference output")
    p.add_argument("--out", default="out/parity", help="folder for parity.json and parity_layers.png")
    _add_data_args(p)

    p = sub.add_parser("train-snn", parents=[common], help="train a spiking network directly (snn2ann, joint-asnn, "
                       "stbp) and export it as NIR; runs data-parallel under torchrun")
    p.add_argument("--method", default="snn2ann", choices=["snn2ann", "joint-asnn", "stbp"])
    p.add_argument("--model", default="digits-cnn", choices=MODEL_NAMES, help="architecture (a chain model)")
    p.add_argument("--T", type=_positive, default=4, help="time steps")
    p.add_argument("--epochs", type=_positive, default=20)
    p.add_argument("--batch-size", type=_positive, default=64)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the method's)")
    p.add_argument("--unit", default="stsu", choices=["stsu", "resu", "none"], help="snn2ann spike mapping unit")
    p.add_argument("--no-ata", action="store_true", help="snn2ann without adaptive threshold adjustment")
    p.add_argument("--no-wft", action="store_true", help="joint-asnn without weight factorization")
    p.add_argument("--no-distill", action="store_true", help="joint-asnn without KLD and L2 distillation")
    p.add_argument("--neuron", default="if", choices=["if", "lif"], help="stbp neuron (joint-asnn is LIF)")
    p.add_argument("--state", default=None, metavar="PATH", help="training state saved every epoch; resumed if present")
    p.add_argument("--plot", default=None, metavar="PATH", help="write ANN/SNN validation accuracy per epoch (PNG)")
    p.add_argument("--out", default="out/model.nir")
    _add_data_args(p)

    p = sub.add_parser("demo", parents=[common], help="train, convert, simulate on reference and Lava, energy, report")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--epochs", type=_positive, default=30)
    p.add_argument("--method", default="robustnorm", choices=method_names())
    p.add_argument("--lava-samples", type=_positive, default=None, help="test samples run on Lava (default all)")
    p.add_argument("--seed", type=int, default=0)
    return parser


def _test_data(args):
    from pipeline.data import load_dataset
    ds = load_dataset(args.dataset, data_root=args.data_root, seed=args.seed)
    n = len(ds.test_x) if args.limit is None else min(args.limit, len(ds.test_x))
    return ds, ds.test_x[:n].numpy(), ds.test_y[:n].numpy()


def cmd_train(args) -> int:
    from pipeline.data import load_dataset
    from pipeline.models import build_model
    from pipeline.train import TrainConfig, save_checkpoint, seed_everything, train_ann
    ds = load_dataset(args.dataset, data_root=args.data_root, seed=args.seed)
    seed_everything(args.seed)
    model = build_model(args.model, ds.input_shape, ds.num_classes)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device)
    history = train_ann(model, ds.train_x, ds.train_y, ds.test_x, ds.test_y, cfg, progress=not args.quiet,
                        state_path=args.state)
    path = save_checkpoint(args.out, model.cpu(), model_name=args.model, input_shape=ds.input_shape,
                           num_classes=ds.num_classes, extra={"history": history.epochs, "seed": args.seed,
                                                              "dataset": args.dataset})
    print(f"test accuracy {100 * history.epochs[-1]['test_accuracy']:.2f}% after {args.epochs} epochs; wrote {path}")
    return 0


def cmd_convert(args) -> int:
    from pipeline.atomic import write_nir
    from pipeline.convert import convert
    from pipeline.data import load_dataset
    from pipeline.modelio import load_model
    model, state = load_model(args.checkpoint, args.model)
    ds = load_dataset(args.dataset, data_root=args.data_root, seed=args.seed)
    calib = ds.train_x if args.calib_samples is None else ds.train_x[:args.calib_samples]
    options = {"percentile": args.percentile} if args.method == "robustnorm" else {}
    if args.method in ("maxnorm", "robustnorm"):
        options["granularity"] = args.granularity
    if args.T is not None:
        options["T"] = args.T
    graph = convert(model, ds.input_shape, calib, method=args.method, source=str(args.checkpoint),
                    progress=not args.quiet, reset=args.reset, **options)
    path = write_nir(args.out, graph)
    print(f"converted with {args.method}: {len(graph.nodes)} nodes, {len(graph.edges)} edges; wrote {path}")
    return 0


def cmd_simulate(args) -> int:
    from pipeline.atomic import write_json
    from pipeline.nirio import read_graph
    from pipeline.provenance import provenance
    graph = read_graph(args.model_nir)
    _, x, y = _test_data(args)
    backend = backends.get(args.backend)
    # a quantized graph runs in integers on the reference too, as Lava runs it on its fixed_pt models
    options = {"fixed_point": True} if args.backend == "reference" and fixed_point(
        "graph", graph.metadata, "graph") is not None else {}
    rows = []
    for T in args.T:
        run = backend.run(graph, x, T, progress=not args.quiet, **options)
        rows.append({"backend": run.backend, "T": T, "accuracy": run.accuracy(y), "spikes_per_sample": run.spikes_per_sample,
                     "samples": len(x), "seconds": run.seconds, "approximate": run.approximate})
        print(f"{run.backend} T={T}: accuracy {100 * rows[-1]['accuracy']:.2f}% on {len(x)} samples, "
              f"{run.spikes_per_sample:.0f} spikes/sample, {run.seconds:.2f} s")
    if args.json:
        write_json(args.json, {"model": str(args.model_nir), "runs": rows, "environment": provenance(args.seed)})
    return 0


def cmd_energy(args) -> int:
    from pipeline.energy import energy_report
    from pipeline.hwconfig import load_hwconfig
    from pipeline.nirio import read_graph
    graph = read_graph(args.model_nir)
    hw = load_hwconfig(args.target)
    _, x, _ = _test_data(args)
    run = backends.get("reference").run(graph, x, args.T, progress=not args.quiet)
    report = energy_report(graph, run, hw, args.T, data_movement=args.data_movement, memory_level=args.memory_level)
    print(report.to_markdown())
    if args.plot:
        from pipeline.report import energy_plot
        title = f"energy per inference, {hw.name}, T={args.T}" + (", with data movement" if args.data_movement else "")
        print(f"wrote {energy_plot(args.plot, report.to_dict()['layers'], title)}")
    return 0


def cmd_sweep(args) -> int:
    from pipeline.data import load_dataset
    from pipeline.modelio import load_model
    from pipeline.models import build_model
    from pipeline.sweep import SweepConfig, Variant, run_sweep
    from pipeline.train import TrainConfig, seed_everything, train_ann
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    for entry in methods:   # bad entries fail before the ANN trains
        Variant.parse(entry)
    ds = load_dataset(args.dataset, data_root=args.data_root, seed=args.seed)
    seed_everything(args.seed)
    if args.checkpoint:
        ann, _ = load_model(args.checkpoint)
    else:
        ann = build_model(args.model, ds.input_shape, ds.num_classes)
        train_ann(ann, ds.train_x, ds.train_y, ds.test_x, ds.test_y,
                  TrainConfig(epochs=args.epochs, seed=args.seed, device=args.device), progress=not args.quiet)
        ann = ann.cpu().eval()
    cfg = SweepConfig(out=Path(args.out), methods=methods,
                      T_values=tuple(args.T), method_epochs=args.method_epochs, seed=args.seed, device=args.device,
                      progress=not args.quiet, limit=args.limit)
    run_sweep(ann, ds, cfg)
    print(f"wrote {cfg.out / 'report.md'}, {cfg.out / 'results.json'}, {cfg.out / 'accuracy_vs_T.png'}")
    return 0


def cmd_parity(args) -> int:
    from pipeline.nirio import read_graph
    from pipeline.parity import Tolerances, run_parity, table, write_outputs
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    unknown = [n for n in names if n not in backends.names()]
    if unknown or not names:
        raise SpikeportError(f"unknown backend(s) {unknown or names}; choose from: {', '.join(backends.names())}")
    graph = read_graph(args.model_nir, args.convention)
    _, x, y = _test_data(args)
    tol = Tolerances(agreement=args.agreement, layer_rel=args.layer_tolerance, output_rel=args.output_tolerance)
    result = run_parity(graph, x, y, names, args.T, approximate=args.approximate, tol=tol, progress=not args.quiet)
    result["model"] = str(args.model_nir)
    print(table(result))
    paths = write_outputs(result, Path(args.out))
    print(f"wrote {paths[0]}, {paths[1]}")
    return 1 if any(row["status"] == "fail" for row in result["rows"]) else 0


def cmd_train_snn(args) -> int:
    from pipeline import distributed
    from pipeline.atomic import write_nir
    from pipeline.convert import get_method
    from pipeline.data import load_dataset
    from pipeline.models import build_model
    from pipeline.spiking_train import branch_plot
    from pipeline.train import seed_everything
    distributed.init_from_env(args.device)
    ds = load_dataset(args.dataset, data_root=args.data_root, seed=args.seed)
    seed_everything(args.seed)
    try:
        ann = build_model(args.model, ds.input_shape, ds.num_classes)
    except ValueError as err:
        raise SpikeportError(f"{args.model} on {args.dataset}: {err}") from None
    options = {"snn2ann": {"unit": args.unit, "ata": not args.no_ata},
               "joint-asnn": {"wft": not args.no_wft, "distill": not args.no_distill},
               "stbp": {"neuron": args.neuron}}[args.method]
    if args.lr is not None:
        options["lr"] = args.lr
    net = get_method(args.method).train(ann, ds, args.epochs, seed=args.seed, device=args.device,
                                        progress=not args.quiet, T=args.T, batch_size=args.batch_size,
                                        state_path=args.state, **options)
    if distributed.world()[0] != 0:
        return 0
    last = net.history[-1]
    accs = ", ".join(f"{b} {100 * last[f'{b}_accuracy']:.2f}%" for b in ("ann", "snn") if f"{b}_accuracy" in last)
    path = write_nir(args.out, net.export(ds.input_shape, source=f"spikeport train-snn --method {args.method}"))
    print(f"{args.method} T={args.T}: test accuracy {accs} after {args.epochs} epochs; wrote {path}")
    if args.plot:
        print(f"wrote {branch_plot(args.plot, net.history, f'{args.method}, T={args.T}')}")
    return 0


def cmd_demo(args) -> int:
    from pipeline.demo import DemoConfig, run_demo
    run_demo(DemoConfig(out=Path(args.out), method=args.method, epochs=args.epochs, lava_samples=args.lava_samples,
                        seed=args.seed, device=args.device, progress=not args.quiet))
    return 0


def cmd_quantize(args) -> int:
    from pipeline.atomic import write_nir
    from pipeline.nirio import read_graph
    from pipeline.quantize import quantize
    graph = read_graph(args.model_nir)
    ds, _, _ = _test_data(args)
    q = quantize(graph, args.target, ds.train_x.numpy(), weight_bits=args.weight_bits, input_bits=args.input_bits,
                 payload_bits=args.payload_bits)
    for name, layer in q.layers.items():
        print(f"{name}: {layer['weight_bits']}-bit mantissas in [{layer['mantissa_min']}, {layer['mantissa_max']}], "
              f"exponent {layer['weight_exp']}, {layer['clipped']} clipped")
    print(f"wrote {write_nir(args.out, q.graph)}")
    return 0


def cmd_deploy(args) -> int:
    from pipeline.deploy import deploy
    from pipeline.nirio import read_graph
    graph = read_graph(args.model_nir)
    ds, x, y = _test_data(args)
    bundle = deploy(graph, args.target, args.out, ds.train_x.numpy(), x, y, T=args.T, progress=not args.quiet)
    for row in bundle.accuracy:
        print(f"{row['weights']}: accuracy {100 * row['accuracy']:.2f}% on {len(x)} samples, T={args.T}")
    print("wrote " + ", ".join(str(p) for p in bundle.files.values()))
    return 0


COMMANDS = {"train": cmd_train, "convert": cmd_convert, "simulate": cmd_simulate, "energy": cmd_energy,
            "sweep": cmd_sweep, "demo": cmd_demo, "quantize": cmd_quantize, "deploy": cmd_deploy,
            "parity": cmd_parity, "train-snn": cmd_train_snn}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as err:
        if args.debug:
            raise
        print(f"spikeport {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
