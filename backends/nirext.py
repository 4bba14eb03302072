"""Reader and writer of spikeport's NIR metadata extension (docs/nir-extensions.md, schema version 3).

Every backend reads neuron semantics through `neuron_semantics`, so no backend invents defaults.
"""
from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np

from backends.result import Unsupported

KEY = "spikeport"
VERSION = 3   # 2 adds the `fixed_point` keys of quantized graphs, 3 the spike encodings; older files read unchanged
ENCODINGS = ("direct", "rate", "latency", "event")   # version 3; versions 1-2 know only "direct"
NEURON_TYPES = (nir.IF, nir.LIF, nir.CubaLIF, nir.I, nir.LI)
SPIKING_TYPES = (nir.IF, nir.LIF, nir.CubaLIF)
RESETS = ("zero", "subtract", "signed-memory")
SIGNED = "signed-memory"  # the signed neuron with memory of DNISNM (Wang et al. 2024, Eq. 19-23); IF only
_NEURON_KEYS = {"version", "reset", "v_init", "lava_cuba"}
# Lava's bit-accurate CUBA decays (12-bit iDecay/vDecay, rounding toward zero) on a LIF/CubaLIF imported from
# lava-dl netx; only a backend that passes it in `honours` to `neuron_semantics` runs such a node
LAVA_CUBA = "lava_cuba"
_GRAPH_KEYS = {"version", "method", "encoding", "dt", "source"}
FIXED = "fixed_point"   # version >= 2: integer formats of a quantized graph (docs/nir-extensions.md)
# node kind -> the keys its `fixed_point` table must hold
FIXED_KEYS = {
    "graph": {"target", "input_scale", "input_bits", "input_signed"},
    "weighted": {"weight_exp", "weight_bits", "weight_step"},
    "neuron": {"unit"},
    "scale": {"unit"},
}


class ExtensionError(ValueError):
    """Metadata under the `spikeport` key does not follow docs/nir-extensions.md."""


class NotHonoured(ExtensionError, Unsupported):
    """Valid metadata whose semantics the calling backend does not compute: a refusal naming the node."""


@dataclass(frozen=True)
class NeuronSemantics:
    """What a neuron node does beyond core NIR: reset mode, spike condition, initial potential."""

    reset: str
    v_init: np.ndarray | None
    lava_cuba: tuple[int, int] | None = None   # (iDecay, vDecay) of Lava's fixed-point CUBA neuron

    @property
    def fires_at_equality(self) -> bool:
        """Reset by subtraction (and the signed neuron with memory) fires on v >= threshold; NIR's reset to
        v_reset fires on v > threshold."""
        return self.reset in ("subtract", SIGNED)

    @property
    def signed(self) -> bool:
        """The signed neuron with memory: spikes +1 / -1, reset by subtraction, negative only with memory > 0."""
        return self.reset == SIGNED


def node_shape(node: nir.NIRNode) -> tuple[int, ...]:
    """Shape of a neuron node's state (the shape of its parameter arrays)."""
    for attr in ("v_threshold", "r", "tau"):
        if hasattr(node, attr):
            return tuple(np.shape(getattr(node, attr)))
    raise ExtensionError(f"{type(node).__name__} is not a neuron node")


def _check_version(where: str, meta) -> None:
    if not isinstance(meta, dict):
        raise ExtensionError(f"{where}: metadata['{KEY}'] is a {type(meta).__name__}, not a group of keys "
                             "(docs/nir-extensions.md); re-export the graph")
    version = meta.get("version")
    if version is None:
        raise ExtensionError(f"{where}: metadata['{KEY}'] has no 'version'")
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise ExtensionError(f"{where}: invalid NIR extension version {version!r}") from None
    if version > VERSION:
        raise ExtensionError(
            f"{where}: NIR extension version {version} is newer than this spikeport "
            f"understands ({VERSION}); upgrade spikeport to read this file"
        )
    if version < 1:
        raise ExtensionError(f"{where}: invalid NIR extension version {version!r}")


def neuron_semantics(name: str, node: nir.NIRNode, honours: tuple[str, ...] = ()) -> NeuronSemantics:
    """Checked semantics of neuron node `name`; core NIR (reset to v_reset, v(0)=0) when no metadata.
    Optional semantics (LAVA_CUBA) raise ExtensionError naming the node unless the caller `honours` them."""
    meta = (node.metadata or {}).get(KEY)
    if meta is None:
        return NeuronSemantics(reset="zero", v_init=None)
    where = f"node {name!r}"
    _check_version(where, meta)
    unknown = set(meta) - _NEURON_KEYS - _fixed_allowed(meta)
    if unknown:
        raise ExtensionError(f"{where}: unknown metadata key(s) {sorted(unknown)} under '{KEY}'")
    reset = str(meta.get("reset", "zero"))
    if reset not in RESETS:
        raise ExtensionError(f"{where}: reset must be one of {RESETS}, got {reset!r}")
    if reset == "subtract" and not isinstance(node, SPIKING_TYPES):
        raise ExtensionError(f"{where}: reset 'subtract' given for non-spiking {type(node).__name__}")
    if reset == SIGNED and not isinstance(node, nir.IF):
        raise ExtensionError(f"{where}: reset '{SIGNED}' (signed neuron with memory) is defined for IF nodes only, "
                             f"not {type(node).__name__}")
    v_init = meta.get("v_init")
    if v_init is not None:
        try:
            v_init = np.asarray(v_init, dtype=np.float64)
        except (TypeError, ValueError):
            raise ExtensionError(f"{where}: v_init is not numeric; re-export the graph") from None
        shape = node_shape(node)
        if v_init.shape != shape:
            raise ExtensionError(f"{where}: v_init has shape {v_init.shape}, node has {shape}")
        if not np.all(np.isfinite(v_init)):
            raise ExtensionError(f"{where}: v_init has non-finite (NaN/Inf) values; re-export the graph")
    return NeuronSemantics(reset=reset, v_init=v_init, lava_cuba=_lava_cuba(where, node, meta, reset, honours))


def _lava_cuba(where: str, node: nir.NIRNode, meta: dict, reset: str, honours: tuple[str, ...]):
    table = meta.get(LAVA_CUBA)
    if table is None:
        return None
    if LAVA_CUBA not in honours:
        raise NotHonoured(f"{where}: Lava's 12-bit CUBA decays ('{LAVA_CUBA}', imported from lava-dl netx) are "
                             "not computed by this backend (its LIF/CubaLIF decay in floating point); run it on "
                             "the reference or Lava backend")
    if not isinstance(node, (nir.LIF, nir.CubaLIF)) or reset != "zero":
        raise ExtensionError(f"{where}: '{LAVA_CUBA}' is defined for LIF/CubaLIF with reset 'zero' only")
    try:
        i_decay, v_decay = int(table["i_decay"]), int(table["v_decay"])
    except (KeyError, TypeError, ValueError):
        raise ExtensionError(f"{where}: '{LAVA_CUBA}' must hold integers i_decay and v_decay") from None
    if not (0 <= i_decay <= 4096 and 0 <= v_decay <= 4096):
        raise ExtensionError(f"{where}: '{LAVA_CUBA}' decays must be in 0..4096, got {i_decay}, {v_decay}")
    return i_decay, v_decay


def _fixed_allowed(meta: dict) -> set[str]:
    return {FIXED} if int(meta["version"]) >= 2 else set()


def fixed_point(where: str, metadata: dict | None, kind: str) -> dict | None:
    """The checked `fixed_point` table of a node or graph (`kind` as in `FIXED_KEYS`); None if unquantized."""
    meta = (metadata or {}).get(KEY)
    if meta is None or FIXED not in meta:
        return None
    _check_version(where, meta)
    if int(meta["version"]) < 2:
        raise ExtensionError(f"{where}: '{FIXED}' needs extension version 2, the metadata says {meta['version']}")
    if not isinstance(meta[FIXED], dict):
        raise ExtensionError(f"{where}: '{FIXED}' must be a table of {sorted(FIXED_KEYS[kind])}, got "
                             f"{type(meta[FIXED]).__name__} {str(meta[FIXED])[:40]!r}; re-quantize the graph")
    table = dict(meta[FIXED])
    missing, unknown = FIXED_KEYS[kind] - set(table), set(table) - FIXED_KEYS[kind]
    if missing or unknown:
        raise ExtensionError(f"{where}: '{FIXED}' must hold exactly {sorted(FIXED_KEYS[kind])}; "
                             f"missing {sorted(missing)}, unknown {sorted(unknown)}")
    for key, value in table.items():
        array = np.asarray(value)
        if key != "target" and (array.dtype.kind not in "biuf" or not np.isfinite(array.astype(np.float64)).all()):
            raise ExtensionError(f"{where}: '{FIXED}.{key}' must be a finite number, got {str(value)[:40]!r}; "
                                 "re-quantize the graph")
    return table


def with_fixed_point(metadata: dict | None, table: dict) -> dict:
    """`metadata` with `table` under `spikeport.fixed_point` (version raised to 2; other keys kept)."""
    out = dict(metadata or {})
    meta = dict(out.get(KEY, {}))
    meta["version"] = VERSION
    meta[FIXED] = dict(table)
    out[KEY] = meta
    return out


def neuron_metadata(reset: str = "subtract", v_init: np.ndarray | None = None,
                    lava_cuba: tuple[int, int] | None = None) -> dict:
    """The `metadata` dict for a neuron node with the given semantics."""
    meta: dict = {"version": VERSION, "reset": reset}
    if v_init is not None:
        meta["v_init"] = np.asarray(v_init, dtype=np.float32)
    if lava_cuba is not None:
        meta[LAVA_CUBA] = {"i_decay": int(lava_cuba[0]), "v_decay": int(lava_cuba[1])}
    return {KEY: meta}


def graph_info(graph: nir.NIRGraph) -> dict:
    """Checked graph-level extension metadata, with defaults filled in."""
    meta = (graph.metadata or {}).get(KEY)
    if meta is None or (isinstance(meta, dict) and not meta):
        meta = {}
    else:
        _check_version("graph", meta)
        unknown = set(meta) - _GRAPH_KEYS - _fixed_allowed(meta)
        if unknown:
            raise ExtensionError(f"graph: unknown metadata key(s) {sorted(unknown)} under '{KEY}'")
    encoding = str(meta.get("encoding", "direct"))
    known = ENCODINGS if int(meta.get("version", VERSION)) >= 3 else ("direct",)
    if encoding not in known:
        raise ExtensionError(f"graph: encoding {encoding!r} is not one of {', '.join(known)} "
                             f"(extension version {meta.get('version', VERSION)})")
    try:
        dt = float(meta.get("dt", 1e-3))
    except (TypeError, ValueError):
        raise ExtensionError(f"graph: time step dt must be a number, got {meta.get('dt')!r}") from None
    if not np.isfinite(dt) or dt <= 0:
        raise ExtensionError(f"graph: time step dt must be finite and > 0, got {dt!r}")
    return {"dt": dt, "method": str(meta.get("method", "")), "encoding": encoding}


def with_encoding(metadata: dict | None, encoding: str) -> dict:
    """`metadata` with `spikeport.encoding` set (version raised to 3; other keys kept)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    out = dict(metadata or {})
    out[KEY] = {**dict(out.get(KEY, {})), "version": VERSION, "encoding": encoding}
    return out


def graph_metadata(method: str, source: str = "", dt: float | None = None, encoding: str = "direct") -> dict:
    """The graph-level `metadata` dict written by the converter."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    meta: dict = {"version": VERSION, "method": method, "encoding": encoding}
    if source:
        meta["source"] = source
    if dt is not None:
        meta["dt"] = float(dt)
    return {KEY: meta}
