"""Import-time fix that lets lava-nc 0.10.0 run on Python 3.11, without editing site-packages.

`lava.magma.compiler.var_model` gives dataclass fields `ByteEncoder()` instances as defaults, which
Python 3.11 rejects ("mutable default"); a `sys.meta_path` finder loads that one module from a patched
copy of its source that uses `field(default_factory=ByteEncoder)` instead (DESIGN.md, "Environment facts").
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys
from pathlib import Path

MODULE = "lava.magma.compiler.var_model"
EXPECTED_DEFAULTS = 8  # CoreEncoder x/y/p, ChipEncoder x/y/z, AxonEncoder hi/lo in lava-nc 0.10.0
IMPORT_LINE = "from dataclasses import dataclass, InitVar"
_DEFAULT = re.compile(r"^(?P<head>[ \t]+\w+: ByteEncoder = )ByteEncoder\(\)[ \t]*$", re.MULTILINE)


def patch_source(source: str) -> str | None:
    """`source` of var_model with its ByteEncoder defaults made immutable; None if none are left.

    Line numbers are preserved, so tracebacks point at the real file. Raises ImportError naming the
    module when the file does not have the shape this fix was written for.
    """
    found = len(_DEFAULT.findall(source))
    if found == 0:
        return None
    imports = [line for line in source.splitlines() if line.strip() == IMPORT_LINE]
    if found != EXPECTED_DEFAULTS or len(imports) != 1:
        raise ImportError(
            f"{MODULE}: cannot apply spikeport's Python 3.11 fix: expected {EXPECTED_DEFAULTS} fields "
            f"'<name>: ByteEncoder = ByteEncoder()' and one line '{IMPORT_LINE}', found {found} such "
            f"fields and {len(imports)} such lines; this lava-nc version is not the 0.10.0 the fix "
            "was written for",
            name=MODULE,
        )
    patched = _DEFAULT.sub(r"\g<head>field(default_factory=ByteEncoder)", source)
    return re.sub(rf"^{re.escape(IMPORT_LINE)}[ \t]*$", IMPORT_LINE + ", field", patched, flags=re.MULTILINE)


class _PatchedLoader(importlib.machinery.SourceFileLoader):
    """Loads the module from patched source; never reads or writes the bytecode cache of the original."""

    def __init__(self, fullname: str, path: str, source: str) -> None:
        super().__init__(fullname, path)
        self._patched = source

    def get_code(self, fullname: str):
        return compile(self._patched, self.path, "exec", dont_inherit=True)


class VarModelFinder(importlib.abc.MetaPathFinder):
    """Finds `lava.magma.compiler.var_model` and hands it to `_PatchedLoader` when it needs the fix."""

    def find_spec(self, fullname, path, target=None):
        if fullname != MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not spec.origin:
            return None
        patched = patch_source(Path(spec.origin).read_text(encoding="utf-8"))
        if patched is None:
            return None  # upstream already fixed: the normal import machinery loads it
        loader = _PatchedLoader(fullname, spec.origin, patched)
        return importlib.util.spec_from_file_location(fullname, spec.origin, loader=loader)


def needed() -> bool:
    """Whether this interpreter rejects mutable dataclass defaults (Python 3.11 and later)."""
    return sys.version_info >= (3, 11)


def install() -> bool:
    """Put the finder first on `sys.meta_path` (once); return whether it is active."""
    if not needed():
        return False
    if not any(isinstance(f, VarModelFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, VarModelFinder())
    return True
