"""Run every class of bad input, fault and interruption through the real `spikeport` CLI; write docs/reliability.md.

Per case: exit code, one-line error, traceback, hang or crash, output left or not, input changed or not; plus the
reader fuzz and kill runs. Usage: python -m benchmarks.reliability [--per-class N] [--fuzz-per-class N] [--kills N]
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch

from benchmarks.badinputs import nir_cases, read_isolated
from benchmarks.docs import machine
from benchmarks.faults import (FAULTS, FULL_DISK_BYTES, build_work, clean_outputs, make_root_files, mount_full, release,
                               snapshot)
from benchmarks.interrupts import (INTERRUPT_AFTER, LONG_COMMANDS, SHORT_AFTER, concurrent_sweeps,
                                  ctrl_c_while_parsing, interrupt, orphaned_parse_child)
from benchmarks.killruns import ROOT, run_kill_convert, run_kill_midwrite, run_kill_train
from pipeline.io.atomic import MARKER, set_temporaries, temporaries, write_text
from pipeline.data.zoo import build_model
from pipeline.training.ann import save_checkpoint

DOC = ROOT / "docs" / "reliability.md"
TIMEOUT = 300.0
TRAIN_EPOCHS = 40  # digits CNN epochs of the kill run: long enough for several kills 0-1 s apart

BAD_MODELS = '''
from torch import nn
def sigmoid():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Sigmoid(), nn.Linear(16, 10))
def maxpool():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 10))
def reflect_padding():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, padding_mode="reflect"), nn.ReLU(), nn.Flatten(),
                         nn.Linear(256, 10))
def upsample():
    return nn.Sequential(nn.Upsample(scale_factor=2), nn.Flatten(), nn.Linear(256, 10))
def gelu():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.GELU(), nn.Linear(16, 10))
'''


def run_cli(args: list[str], out: Path, workdir: Path, cwd: Path = ROOT) -> dict:
    """One CLI run: exit code, the last stderr line, whether a traceback appeared and whether a failed run
    left its output file (or a temporary of it)."""
    out.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": f"{workdir}:{ROOT}"}
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "pipeline.cli", *args, "--quiet"], cwd=cwd, capture_output=True,
                              text=True, timeout=TIMEOUT, env=env)
        code, err = proc.returncode, proc.stderr.strip()
    except subprocess.TimeoutExpired:
        code, err = None, f"no answer within {TIMEOUT:.0f} s"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return {"code": code, "message": lines[-1] if lines else "", "lines": len(lines), "traceback": "Traceback" in err,
            "left": code != 0 and (out.exists() or bool(temporaries(out))), "seconds": time.monotonic() - start}


def _checkpoint_cases(work: Path) -> list[tuple[str, str, list[str], Path]]:
    torch.manual_seed(0)
    good = save_checkpoint(work / "good.pt", build_model("digits-cnn", (1, 8, 8), 10), model_name="digits-cnn",
                           input_shape=(1, 8, 8), num_classes=10)
    raw = good.read_bytes()
    files = {f"truncated at {f:.0%}": raw[:int(len(raw) * f)] for f in (0.1, 0.5, 0.9, 0.999)}
    files.update({"empty file": b"", "text file": b"not a checkpoint\n"})
    state = torch.load(good, weights_only=True)
    variants = {"wrong architecture (resnet20)": {"model": "resnet20"}, "unknown model name": {"model": "mlp-x"},
                "no input_shape": {"input_shape": None}}
    for label, change in variants.items():
        torch.save({**{k: v for k, v in state.items() if k not in change or change[k] is not None},
                    **{k: v for k, v in change.items() if v is not None}}, work / f"{label}.pt")
    nan = {**state, "state_dict": {k: v.clone() for k, v in state["state_dict"].items()}}
    next(iter(nan["state_dict"].values())).view(-1)[0] = float("nan")
    torch.save(nan, work / "NaN weight.pt")
    torch.save({"a": 1}, work / "plain dict.pt")
    for label, data in files.items():
        (work / f"{label}.pt").write_bytes(data)
    labels = [*files, *variants, "NaN weight", "plain dict", "missing file"]
    out = work / "model.nir"
    return [("checkpoint", label, ["convert", "--checkpoint", str(work / f"{label}.pt"), "--out", str(out),
                                   "--calib-samples", "64"], out) for label in labels]


def _data_cases(work: Path) -> list[tuple[str, str, list[str], Path]]:
    (work / "a-file").write_text("x")
    (work / "empty").mkdir()
    (work / "bad-mnist").mkdir()
    for name, size in (("train-images-idx3-ubyte", 100), ("train-labels-idx1-ubyte", 8),
                       ("t10k-images-idx3-ubyte", 16), ("t10k-labels-idx1-ubyte", 8)):
        (work / "bad-mnist" / name).write_bytes(bytes(size))
    (work / "bad-cifar" / "cifar-10-batches-py").mkdir(parents=True)
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        (work / "bad-cifar" / "cifar-10-batches-py" / name).write_bytes(b"\x80\x04garbage")
    out = work / "ann.pt"
    roots = {"mnist, no --data-root": ["--dataset", "mnist"],
             "mnist, missing folder": ["--dataset", "mnist", "--data-root", str(work / "nowhere")],
             "mnist, root is a file": ["--dataset", "mnist", "--data-root", str(work / "a-file")],
             "mnist, empty folder": ["--dataset", "mnist", "--data-root", str(work / "empty")],
             "mnist, zeroed IDX files": ["--dataset", "mnist", "--data-root", str(work / "bad-mnist")],
             "cifar10, empty folder": ["--dataset", "cifar10", "--data-root", str(work / "empty")],
             "cifar10, garbage pickles": ["--dataset", "cifar10", "--data-root", str(work / "bad-cifar")],
             "unknown dataset name": ["--dataset", "imagenet"]}
    return [("data root", label, ["train", "--epochs", "1", "--out", str(out), *a], out) for label, a in roots.items()]


def _layer_cases(work: Path) -> list[tuple[str, str, list[str], Path]]:
    (work / "badmodels.py").write_text(BAD_MODELS)
    sys.path.insert(0, str(work))
    import badmodels  # noqa: E402  (written just above)
    out = work / "layer.nir"
    cases = []
    for name in ("sigmoid", "maxpool", "reflect_padding", "upsample", "gelu"):
        torch.save(getattr(badmodels, name)().state_dict(), work / f"{name}.pt")
        cases.append(("unsupported layer", name, ["convert", "--checkpoint", str(work / f"{name}.pt"), "--model",
                                                  f"badmodels:{name}", "--out", str(out)], out))
    return cases


def _hwconfig_cases(work: Path, model: Path) -> list[tuple[str, str, list[str], Path]]:
    files = {"invalid TOML": "[target\nname = 1", "no [target]": "[energy]\nmac_pj = 1.0\nac_pj = 0.1\n",
             "negative energy": '[target]\nname = "x"\ndescription = "y"\n[energy]\nmac_pj = -1.0\nac_pj = 0.1\n',
             "unknown section": '[target]\nname = "x"\ndescription = "y"\n[colour]\nred = 1\n'}
    cases = []
    out = work / "energy.png"
    for label, text in files.items():
        (work / f"{label}.toml").write_text(text)
        cases.append(("hwconfig", label, ["energy", str(model), "--target", str(work / f"{label}.toml"), "--T", "4",
                                          "--limit", "8", "--plot", str(out)], out))
    cases.append(("hwconfig", "unknown target name", ["energy", str(model), "--target", "tpu9", "--T", "4",
                                                       "--limit", "8", "--plot", str(out)], out))
    return cases


def _nir_cli_cases(work: Path, per_class: int) -> list[tuple[str, str, list[str], Path]]:
    by_kind = defaultdict(list)
    for case in nir_cases(work / "nir", per_class=max(per_class, 1), seed=0):
        by_kind[case.kind].append(case)
    out = work / "results.json"
    cases = [("NIR file: " + kind, c.label, ["simulate", str(c.path), "--T", "4", "--limit", "8", "--json", str(out)],
              out) for kind, cs in by_kind.items() for c in cs[:per_class]]
    cases.append(("NIR file: missing", "no such file", ["simulate", str(work / "none.nir"), "--json", str(out)], out))
    return cases


def _flag_cases(work: Path, model: Path) -> list[tuple[str, str, list[str], Path]]:
    out = work / "flags.json"
    return [("flag", label, ["simulate", str(model), *a, "--json", str(out)], out)
            for label, a in (("--T 0", ["--T", "0"]), ("--T -3", ["--T", "-3"]), ("--T x", ["--T", "x"]),
                             ("--backend nope", ["--backend", "nope"]))]


def _outcome(r: dict) -> str:
    if r["code"] is None:
        return "hang"
    if r["code"] < 0:
        return f"crash (signal {-r['code']})"
    if r["code"] == 0:
        return "valid input, exit 0"
    if r["code"] == 2 and r["lines"] == 1 and not r["traceback"]:
        return "one-line error, exit 2"
    if r["code"] == 2 and not r["traceback"]:
        return "argparse usage + error, exit 2"
    return f"exit {r['code']}, traceback {r['traceback']}, {r['lines']} lines"


def cli_table(cases, tmp_root: Path, log=print) -> tuple[str, list[dict]]:
    rows = defaultdict(list)
    for kind, label, args, out in cases:
        r = run_cli(args, out, out.parent)
        r["label"] = label
        rows[kind].append(r)
        log(f"{kind:>34} | {label:<32} | {_outcome(r)} | left={r['left']} | {r['message'][:110]}", flush=True)
    lines = ["| class of bad input | cases | outcome (cases) | output file left behind | example error (first failing case) |",
             "|---|---|---|---|---|"]
    flat = []
    for kind, rs in rows.items():
        outcomes = Counter(_outcome(r) for r in rs)
        first = next((r for r in rs if r["code"] != 0), rs[0])
        example = first["message"].replace(str(tmp_root), "<tmp>").replace("|", "\\|")
        example = example if len(example) <= 240 else example[:237] + "..."
        lines.append(f"| {kind} | {len(rs)} | {'; '.join(f'{k} ({v})' for k, v in outcomes.items())} | "
                     f"{sum(r['left'] for r in rs)} of {len(rs)} | `{example}` ({first['label']}) |")
        flat += [{**r, "kind": kind} for r in rs]
    return "\n".join(lines), flat


def fault_table(work: Path, log=print) -> tuple[str, dict]:
    """Every benchmarks.faults case in its own process: outcome, inputs changed, outputs left, per class."""
    build_work(work)
    abilities = {"root": make_root_files(work), "tmpfs": mount_full(work)}
    rows: dict[str, list[dict]] = defaultdict(list)
    try:
        for fault in FAULTS:
            if fault.needs and not abilities[fault.needs]:
                log(f"skipped (needs {fault.needs}): {fault.label}", flush=True)
                continue
            clean_outputs(fault, work)
            before = snapshot(work)
            r = run_cli(fault.argv(work), work / "none", work, cwd=work)
            left = [p for p in fault.output_paths(work) if p.exists() or temporaries(p) or set_temporaries(p)]
            if abilities["tmpfs"]:
                left += list((work / "full").iterdir())
            r.update(label=fault.label, left=bool(left), changed=snapshot(work) != before,
                     expected=r["code"] == fault.code and fault.message in r["message"])
            rows[fault.kind].append(r)
            log(f"{fault.kind:>34} | {fault.label:<40} | {_outcome(r)} | left={r['left']} changed={r['changed']} | "
                f"{r['message'][:100]}", flush=True)
    finally:
        release(work)
    lines = ["| class of fault | cases | outcome (cases) | its own message | input changed | output left | "
             "example (first case) |", "|---|---|---|---|---|---|---|"]
    for kind, rs in rows.items():
        outcomes = Counter(_outcome(r) for r in rs)
        example = rs[0]["message"].replace(str(work), "<tmp>").replace("|", "\\|")
        example = example if len(example) <= 200 else example[:197] + "..."
        lines.append(f"| {kind} | {len(rs)} | {'; '.join(f'{k} ({v})' for k, v in outcomes.items())} | "
                     f"{sum(r['expected'] for r in rs)} of {len(rs)} | {sum(r['changed'] for r in rs)} | "
                     f"{sum(r['left'] for r in rs)} | `{example}` ({rs[0]['label']}) |")
    skipped = [f.label for f in FAULTS if f.needs and not abilities[f.needs]]
    note = f"\n\nSkipped here (mknod/chattr or mount not allowed): {', '.join(skipped)}." if skipped else ""
    return "\n".join(lines) + note, {"rows": [r for rs in rows.values() for r in rs], "abilities": abilities}


def interruption_table(work: Path, tmp: Path, log=print) -> tuple[str, list[dict]]:
    """Ctrl-C and SIGKILL of every long command after a few seconds."""
    results = []
    for name in LONG_COMMANDS:
        for sig, label in ((signal.SIGINT, "Ctrl-C"), (signal.SIGKILL, "SIGKILL")):
            out = tmp / f"{name}-{label}"
            out.mkdir()
            r = interrupt(name, sig, work, out)
            lines = [ln for ln in r["stderr"].splitlines() if ln.strip()]
            sets_ok = all((p / MARKER).is_file() for p in r["visible"] if p.is_dir())
            partial = (sig == signal.SIGINT and r["code"] != 0 and bool(r["visible"] or r["hidden"])) or not sets_ok
            results.append({"command": name, "signal": label, "running": r["running"], "code": r["code"],
                            "lines": len(lines), "traceback": "Traceback" in r["stderr"], "partial": partial,
                            "changed": r["input_changed"], "hidden": len(r["hidden"]),
                            "message": lines[-1] if lines else ""})
            log(f"interrupt {name:>9} {label:<7}: {results[-1]}", flush=True)
    table = ["| command | Ctrl-C: exit, stderr | SIGKILL: exit | partial output | input changed | hidden temporaries "
             "after SIGKILL |", "|---|---|---|---|---|---|"]
    for name in LONG_COMMANDS:
        c, k = [r for r in results if r["command"] == name]
        ctrl = f"{c['code']}, {c['lines']} line(s)" + ("" if c["running"] else " (finished first)")
        table.append(f"| {name} | {ctrl} | {k['code']}{'' if k['running'] else ' (finished first)'} | "
                     f"{c['partial'] + k['partial']} | {c['changed'] + k['changed']} | {k['hidden']} |")
    return "\n".join(table), results


def fuzz_table(work: Path, per_class: int, seeds: range, log=print) -> str:
    counts: dict[str, Counter] = defaultdict(Counter)
    slowest = 0.0
    for seed in seeds:
        for case in nir_cases(work / f"fuzz-{seed}", per_class=per_class, seed=seed):
            start = time.monotonic()
            outcome, _ = read_isolated(case.path, timeout=10.0)
            slowest = max(slowest, time.monotonic() - start)
            counts[case.kind][outcome] += 1
    log(f"fuzz: {sum(sum(c.values()) for c in counts.values())} files, slowest {slowest:.2f} s", flush=True)
    lines = ["| class of damage | files | clear error | valid graph | unclear error / hang / crash |", "|---|---|---|---|---|"]
    for kind, c in counts.items():
        bad = c["unclear"] + c["hang"] + c["crash"]
        lines.append(f"| {kind} | {sum(c.values())} | {c['error']} | {c['graph']} | {bad} |")
    return "\n".join(lines) + f"\n\nSlowest single read: {slowest:.2f} s (time limit per file 10 s)."


VALIDATOR_SECTIONS = ("## Bad input through the CLI", "## Reader fuzz", "## Kill runs")


def _kept_sections(page: str) -> list[str]:
    """The validator sections of an existing page (for --faults-only), each as one block of text."""
    blocks = page.split("\n## ")
    return ["## " + b.strip() for b in blocks[1:] if any(("## " + b).startswith(t) for t in VALIDATOR_SECTIONS)]


def _validator_sections(work: Path, args) -> tuple[list[dict], list[str]]:
    """Bad input through the CLI, the reader fuzz and the kill runs: the rows and the page's sections."""
    model = work / "nir" / "good.nir"
    cases = _nir_cli_cases(work, args.per_class)
    cases += _checkpoint_cases(work) + _data_cases(work) + _layer_cases(work)
    cases += _hwconfig_cases(work, model) + _flag_cases(work, model)
    cli_md, flat = cli_table(cases, work)
    fuzz_md = fuzz_table(work, args.fuzz_per_class, range(args.fuzz_seeds))
    (work / "kill").mkdir()
    train = run_kill_train(work / "kill", epochs=TRAIN_EPOCHS, kills=args.kills, seed=0)
    convert = run_kill_convert(work / "kill", work / "good.pt", kills=2 * args.kills, seed=0)
    mid = run_kill_midwrite(work / "kill", kills=args.kills, seed=0)
    fine = ("one-line error, exit 2", "argparse usage + error, exit 2", "valid input, exit 0")
    bad = [r for r in flat if _outcome(r) not in fine or r["left"]]
    return flat, [
        f"## Bad input through the CLI ({len(flat)} cases, {len(bad)} with an unclear answer or a file left behind)",
        cli_md,
        "NIR damage classes: bit flips and truncations at many offsets of a valid file, datasets replaced by "
        "strings, complex numbers or wrong ranks, each group or dataset deleted in turn, garbage node types, "
        "NaN/Inf parameters, thresholds <= 0, dangling/cyclic edges, shape mismatches along edges, and broken "
        "spikeport metadata (benchmarks/badinputs.py). Some damage yields a *valid* graph: a flipped bit in a "
        "weight (HDF5 stores no checksum), or a deleted optional entry (spikeport metadata, `v_reset`); without "
        "its `spikeport` metadata a neuron falls back to core NIR semantics (reset to `v_reset`), as for any "
        "graph from another tool.",
        "## Reader fuzz (`pipeline.io.nirio.read_graph`, each file in a forked child with a time limit)",
        fuzz_md,
        "Finding: a file with 8 flipped bits (seed 3, case 55) makes h5py 3 loop forever reading `node/edges` "
        "(no answer after 60 s). `read_graph` now parses in a forked child with a time limit (30 s + 1 s/MB) "
        "and first walks every dataset's declared size, which reports that file's damaged heap at once.",
        "## Kill runs (SIGKILL at random points)",
        f"- `spikeport train --state S --out C` (digits CNN, {TRAIN_EPOCHS} epochs), each run killed 0-1 s after it saved "
        f"its first epoch: killed {train['kills']} times (state file at epoch {train['epochs_at_kill']} after "
        "each kill); every state file "
        "found was complete, the checkpoint never appeared early, and the resumed run's weights are "
        f"{'bit-identical' if train['identical'] else 'NOT identical'} to an uninterrupted run's.",
        f"- `spikeport convert` over an existing .nir, {2 * args.kills} runs with a SIGKILL due at a random point in "
        f"0.3-3 s: {convert['killed, previous kept']} killed runs left the previous graph, "
        f"{convert['killed, new complete']} were killed after their complete new graph was in place, "
        f"{convert['finished']} finished first (complete new graph); never a partial file.",
        f"- A 2 s atomic write killed mid-write {mid['killed mid-write']} times: the target kept its previous "
        "content each time; a dead writer's hidden temporary is removed by the next write to the same target "
        f"({mid['temporaries left by killed writers']} left after the last kill, then removed).",
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=3, help="NIR cases per damage class run through the CLI")
    parser.add_argument("--fuzz-per-class", type=int, default=40, help="bit-flip/truncation files per fuzz seed")
    parser.add_argument("--fuzz-seeds", type=int, default=2)
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per kill run")
    parser.add_argument("--faults-only", action="store_true", help="run only the faults, interruption, concurrent "
                        "writer and parser sections; keep the other sections of the current page as they are")
    args = parser.parse_args(argv)
    command = " ".join(["python -m benchmarks.reliability", *(argv if argv is not None else sys.argv[1:])])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.faults_only:
            flat, validator_sections = [], _kept_sections(DOC.read_text())
        else:
            flat, validator_sections = _validator_sections(work, args)
        (work / "faults").mkdir()
        faults_md, faults = fault_table(work / "faults")
        (work / "interrupt").mkdir()
        interrupt_md, interrupts = interruption_table(work / "faults", work / "interrupt")
        (work / "concurrent").mkdir()
        concurrent = concurrent_sweeps(work / "faults", work / "concurrent")
        (work / "orphan").mkdir()
        orphan = orphaned_parse_child(work / "orphan")
        parsing = ctrl_c_while_parsing(work / "orphan")
    every = flat + faults["rows"]
    parsing_lines = [ln for ln in parsing["stderr"].splitlines() if ln.strip()]
    totals = {"cases": len(every) + len(interrupts) + 3,
              "traceback": sum(r["traceback"] for r in every + interrupts) + ("Traceback" in parsing["stderr"]),
              "hang": sum(r["code"] is None for r in every + interrupts),
              "crash": sum(r["code"] is not None and r["code"] < 0 for r in every) +
              sum(r["signal"] == "Ctrl-C" and r["code"] is not None and r["code"] < 0 for r in interrupts),
              "internal error": sum(r["code"] == 1 for r in every),
              "partial output": sum(r["left"] for r in every) + sum(r["partial"] for r in interrupts) +
              int(concurrent["codes"] != [0, 2]),
              "destroyed input": sum(r.get("changed", False) for r in every) + sum(r["changed"] for r in interrupts),
              "orphaned parser": orphan["orphans"] + parsing["orphans"]}
    body = "\n\n".join([
        "# Reliability: what spikeport does with bad input, and when it is killed",
        f"Generated by `{command}` (machine: {machine()}, shared with other jobs while measured). "
        "Every case runs the real CLI (`python -m pipeline.cli`) in its own process; "
        "'output file left behind' counts failed cases after which the command's output file (`--out`, `--json` "
        "or `--plot`, deleted before each case) or a temporary of it exists. 'valid input, exit 0' is a damaged "
        "file that still holds a valid graph (see below).",
        ("Totals over the sections measured in this run (faults, interruptions, concurrent writers, parser; the "
         "validator sections below are kept from the previous full run): " if args.faults_only else
         "Totals over every section: ") + ", ".join(f"{k} {v}" for k, v in totals.items()) + ".",
        *validator_sections,
        "## Faults beyond the validators (benchmarks/faults.py)",
        f"{len(faults['rows'])} cases of issue 19, each in its own process: outputs onto an input (also through a "
        "hard link) or into a folder holding it, onto a device, FIFO, folder, `/proc` path, immutable folder or "
        f"under a file; a full disk (a {FULL_DISK_BYTES // 1024} KB tmpfs: HDF5, torch, PNG and JSON writes); "
        "option values; "
        "graphs, checkpoints and data sets that do not match; damaged training states, hwconfigs and fixed-point "
        "metadata; resource bounds. 'its own message' counts cases whose one line is the message written for "
        "that fault at its source (not the CLI's backstop); 'input changed' compares type and SHA-256 of every "
        "file in the work folder before and after; 'output left' counts outputs or temporaries left behind.",
        faults_md,
        "Disk full, the cause of the crash: HDF5 (through h5py) fails inside `H5Fclose` when a flush hits ENOSPC, "
        "leaves the file half-closed, and the library's own shutdown touches it again at interpreter exit: "
        "SIGSEGV (reproduced here: `convert` onto a 16 KB tmpfs exited with -11 before the fix). Every writer "
        "now serialises into memory (`nir.write`, `torch.save`, `savefig` and the netx export into a `BytesIO`), "
        "checks the free space of the target's device for that many bytes, and writes them with plain file I/O "
        "to the hidden temporary: a full disk is one line, exit 2, and no file.",
        "## Interruption of every long command",
        f"Each command started with a workload that runs longer than {INTERRUPT_AFTER:.0f} s (convert and quantize: "
        f"{SHORT_AFTER['convert']:.0f} s, they are short), then sent Ctrl-C "
        "(SIGINT) or SIGKILL. Partial output: after Ctrl-C anything written at all; after SIGKILL an output "
        "folder without its completion marker (a file can only appear whole, by `os.replace`). Hidden temporaries "
        "of a killed writer are removed by the next write to the same target (a killed set writer's lock is taken "
        "over the same way).",
        interrupt_md,
        "## Concurrent writers, orphaned parser",
        f"- Two `sweep` runs into one folder started together: exit codes {concurrent['codes']}; the refused one "
        f"said `{(concurrent['refused'] or ['nothing'])[0].replace(str(work), '<tmp>')}`; the folder holds "
        f"{', '.join(concurrent['files'])} (one run's set), hidden leftovers: {len(concurrent['hidden'])}.",
        f"- The CLI killed with SIGKILL while its forked parser reads a file declaring 900 MB: {orphan['children']} "
        f"parser child seen, {orphan['orphans']} alive 0.2 s later (the child asks the kernel for SIGKILL when "
        "its parent dies, `prctl(PR_SET_PDEATHSIG)`).",
        f"- Ctrl-C as a terminal sends it (SIGINT to the process group) while the parser reads that file: exit code "
        f"{parsing['code']}, {len(parsing_lines)} line(s) on stderr "
        f"(`{(parsing_lines or [''])[-1].replace(str(work), '<tmp>')}`), {parsing['orphans']} child left.",
        "## Totals",
        f"{totals['cases']} cases above (bad input, faults, interruptions, concurrent writers, parser): "
        + ", ".join(f"{k} {v}" for k, v in totals.items() if k != "cases") + ".",
        "## Regenerate",
        "```\nsudo .venv/bin/python -m benchmarks.reliability  # this page; root for mknod, chattr, tmpfs\n"
        ".venv/bin/python -m pytest -q tests/test_validation.py tests/test_fuzz_nir.py tests/test_invariants.py "
        "tests/test_kill.py tests/test_reproducibility.py tests/test_reliability_cli.py  # fast subset\n"
        ".venv/bin/python -m pytest -q --run-slow tests/test_fuzz_nir.py tests/test_kill.py "
        "tests/test_reliability_cli.py  # long fuzz, kill and interruption runs\n```",
    ])
    write_text(DOC, body + "\n")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
