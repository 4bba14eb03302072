"""Hardware targets: load and validate one `hwconfigs/<name>.toml` into a frozen `HwConfig`.

A target is a TOML file whose every number carries its published source in a comment; the schema is `SCHEMA`.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import SpikeportError

HWCONFIG_DIR = Path(__file__).resolve().parents[2] / "hwconfigs"

NUMBER, INTEGER, STRING = "a number", "a positive integer", "a non-empty string"
SIGNED_INTEGER, BOOLEAN = "an integer", "true or false"
REQUIRED, OPTIONAL = True, False

# section -> key -> (kind, required). Sections other than [target] are optional; within a present
# section the required keys must be there. Numbers are energies in pJ and must be >= 0.
SCHEMA: dict[str, dict[str, tuple[str, bool]]] = {
    "target": {"name": (STRING, REQUIRED), "description": (STRING, REQUIRED)},
    "energy": {"mac_pj": (NUMBER, REQUIRED), "ac_pj": (NUMBER, REQUIRED), "neuron_update_pj": (NUMBER, OPTIONAL)},
    "arithmetic": {
        f"{fmt}_{op}_pj": (NUMBER, OPTIONAL) for fmt in ("int8", "int32", "fp16", "fp32") for op in ("add", "mult")
    },
    "memory": {
        "access_bits": (INTEGER, OPTIONAL), "cache_8kb_read_pj": (NUMBER, OPTIONAL),
        "cache_32kb_read_pj": (NUMBER, OPTIONAL), "cache_1mb_read_pj": (NUMBER, OPTIONAL),
        "dram_access_min_pj": (NUMBER, OPTIONAL), "dram_access_max_pj": (NUMBER, OPTIONAL),
    },
    # number formats of a fixed-point target (what `spikeport quantize` maps a graph to)
    "formats": {"weight_bits": (INTEGER, OPTIONAL), "state_bits": (INTEGER, OPTIONAL),
                "threshold_bits": (INTEGER, OPTIONAL), "weight_exp_min": (SIGNED_INTEGER, OPTIONAL),
                "weight_exp_max": (SIGNED_INTEGER, OPTIONAL), "bias_mant_bits": (INTEGER, OPTIONAL),
                "bias_exp_max": (SIGNED_INTEGER, OPTIONAL)},
    "cores": {
        "cores_per_chip": (INTEGER, OPTIONAL), "neurons_per_chip": (INTEGER, OPTIONAL),
        "synapses_per_chip": (INTEGER, OPTIONAL), "neurons_per_core": (INTEGER, OPTIONAL),
        "synapses_per_core": (INTEGER, OPTIONAL), "axons_per_core": (INTEGER, OPTIONAL),
        "conv_weight_sharing": (BOOLEAN, OPTIONAL),
    },
}
# bounds of the number formats: a sign bit plus one magnitude bit at least, exponents a float64 can scale by
FORMAT_RANGES = {"weight_bits": (2, 32), "state_bits": (2, 64), "threshold_bits": (1, 64), "bias_mant_bits": (2, 64),
                 "weight_exp_min": (-64, 64), "weight_exp_max": (-64, 64), "bias_exp_max": (0, 64)}
FIXED_POINT_FORMATS = ("weight_bits", "state_bits", "threshold_bits", "weight_exp_min", "weight_exp_max",
                       "bias_mant_bits", "bias_exp_max")


class HwConfigError(SpikeportError, ValueError):
    """A hwconfig cannot be found or breaks the schema; the one-line message names the file and the key."""


@dataclass(frozen=True)
class Energy:
    """Energy per operation in pJ: one multiply-accumulate, one accumulate, optionally one neuron update."""

    mac_pj: float
    ac_pj: float
    neuron_update_pj: float | None = None


@dataclass(frozen=True)
class HwConfig:
    """One validated target. `energy` is None for a target without published per-operation energies."""

    name: str
    description: str
    path: Path
    energy: Energy | None
    arithmetic: dict[str, float]
    memory: dict[str, float]
    formats: dict[str, int]
    cores: dict[str, int]

    def fixed_point_formats(self) -> dict[str, int]:
        """The [formats] a quantizer needs; an error naming the first missing key if this is no fixed-point target."""
        for key in FIXED_POINT_FORMATS:
            if key not in self.formats:
                raise HwConfigError(f"{self.path}: target {self.name!r} has no key 'formats.{key}', so it cannot be "
                                    f"a quantization target (use one with [formats], e.g. loihi2)")
        return dict(self.formats)


def available_targets() -> list[str]:
    """Names of the targets shipped in `hwconfigs/` (the file names without `.toml`)."""
    return sorted(p.stem for p in HWCONFIG_DIR.glob("*.toml"))


def load_hwconfig(name_or_path: str | Path) -> HwConfig:
    """Load a target by bare name (`"cmos45nm"` -> `hwconfigs/cmos45nm.toml`) or by path to a TOML file."""
    path = _resolve(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise HwConfigError(f"{path}: not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise HwConfigError(f"{path}: not UTF-8 text (byte {err.start}); save the TOML file as UTF-8") from None
    except OSError as err:
        raise HwConfigError(f"{path}: cannot be read ({err.strerror}); give the path of a .toml file") from None
    tables = _validate(path, data)
    energy = tables.get("energy")
    return HwConfig(
        name=tables["target"]["name"],
        description=tables["target"]["description"],
        path=path,
        energy=Energy(**energy) if energy is not None else None,
        arithmetic=dict(tables.get("arithmetic", {})),
        memory=dict(tables.get("memory", {})),
        formats=dict(tables.get("formats", {})),
        cores=dict(tables.get("cores", {})),
    )


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".toml") or "/" in text or "\\" in text:
        path = Path(name_or_path)
        if not path.is_file():
            raise HwConfigError(f"{path}: no such hwconfig file")
        return path.resolve()
    path = HWCONFIG_DIR / f"{text}.toml"
    if not path.is_file():
        raise HwConfigError(
            f"unknown hwconfig target {text!r}; available: {', '.join(available_targets())} "
            f"(or give a path to a .toml file)"
        )
    return path


def _validate(path: Path, data: dict) -> dict[str, dict]:
    """Check `data` against `SCHEMA`; return the validated tables."""
    for section, table in data.items():
        if section not in SCHEMA:
            raise HwConfigError(f"{path}: unknown section [{section}]; known: {', '.join(SCHEMA)}")
        if not isinstance(table, dict):
            raise HwConfigError(f"{path}: key '{section}' must be a table [{section}]")
    if "target" not in data:
        raise HwConfigError(f"{path}: missing key 'target.name' (no [target] table)")
    for section, table in data.items():
        _validate_table(path, section, table)
    formats = data.get("formats", {})
    if formats.get("weight_exp_min", 0) > formats.get("weight_exp_max", 0):
        raise HwConfigError(f"{path}: key 'formats.weight_exp_min' ({formats['weight_exp_min']}) is above "
                            f"'formats.weight_exp_max' ({formats['weight_exp_max']})")
    if data["target"]["name"] != path.stem:
        raise HwConfigError(
            f"{path}: key 'target.name' is {data['target']['name']!r} but the file is {path.name}; they must match"
        )
    return data


def _validate_table(path: Path, section: str, table: dict) -> None:
    spec = SCHEMA[section]
    for key in table:
        if key not in spec:
            raise HwConfigError(f"{path}: unknown key '{section}.{key}'; known: {', '.join(spec)}")
    for key, (kind, required) in spec.items():
        if key in table:
            _check_value(path, f"{section}.{key}", kind, table[key])
        elif required:
            raise HwConfigError(f"{path}: missing key '{section}.{key}'")


def _check_value(path: Path, key: str, kind: str, value) -> None:
    ok = {
        NUMBER: isinstance(value, (int, float)) and not isinstance(value, bool),
        INTEGER: isinstance(value, int) and not isinstance(value, bool),
        SIGNED_INTEGER: isinstance(value, int) and not isinstance(value, bool),
        BOOLEAN: isinstance(value, bool),
        STRING: isinstance(value, str) and bool(value.strip()),
    }[kind]
    if not ok:
        raise HwConfigError(f"{path}: key '{key}' must be {kind}, got {type(value).__name__} {value!r}")
    if kind == NUMBER and not (math.isfinite(value) and value >= 0):
        raise HwConfigError(f"{path}: key '{key}' must be finite and >= 0 (an energy in pJ), got {value!r}")
    if kind == INTEGER and value < 1:
        raise HwConfigError(f"{path}: key '{key}' must be {kind}, got {value!r}")
    section, _, name = key.partition(".")
    if section == "formats" and not FORMAT_RANGES[name][0] <= value <= FORMAT_RANGES[name][1]:
        lo, hi = FORMAT_RANGES[name]
        raise HwConfigError(f"{path}: key '{key}' must be in [{lo}, {hi}], got {value!r}")
