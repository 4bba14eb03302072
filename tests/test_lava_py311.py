"""Tests of backends/lava/py311.py, the import-time fix that lets lava-nc 0.10.0 run on Python 3.11,
and of backends/lava/startmethod.py, which lets Lava import after the start method was fixed.

They check the source rewrite on known snippets, the loud failure on an unexpected file, and that a
small Lava network then compiles, runs and spikes exactly as computed by hand.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.lava import py311

pytestmark = pytest.mark.lava

SNIPPET = '''from dataclasses import dataclass, InitVar


@dataclass
class ByteEncoder:
    base: int = 0


@dataclass
class CoreEncoder:
    x: ByteEncoder = ByteEncoder()
    y: ByteEncoder = ByteEncoder()
    p: ByteEncoder = ByteEncoder()


@dataclass
class ChipEncoder:
    x: ByteEncoder = ByteEncoder()
    y: ByteEncoder = ByteEncoder()
    z: ByteEncoder = ByteEncoder()


@dataclass
class AxonEncoder:
    hi: ByteEncoder = ByteEncoder()
    lo: ByteEncoder = ByteEncoder()
'''


def test_patch_rewrites_every_default_and_keeps_line_numbers():
    patched = py311.patch_source(SNIPPET)
    assert patched.count("field(default_factory=ByteEncoder)") == 8
    assert "= ByteEncoder()" not in patched
    assert "from dataclasses import dataclass, InitVar, field\n" in patched
    assert len(patched.splitlines()) == len(SNIPPET.splitlines())
    namespace: dict = {}
    exec(compile(patched, "<patched>", "exec"), namespace)
    core = namespace["CoreEncoder"]
    assert core().x is not core().x
    assert core().x == namespace["ByteEncoder"]()


def test_patch_is_a_no_op_when_upstream_is_fixed():
    fixed = SNIPPET.replace("ByteEncoder = ByteEncoder()", "ByteEncoder = None")
    assert py311.patch_source(fixed) is None


@pytest.mark.parametrize("source, found", [
    (SNIPPET.replace("    lo: ByteEncoder = ByteEncoder()\n", ""), "found 7 such fields"),
    (SNIPPET + "    extra: ByteEncoder = ByteEncoder()\n", "found 9 such fields"),
    (SNIPPET.replace("from dataclasses import dataclass, InitVar", "import dataclasses"), "0 such lines"),
])
def test_unexpected_shape_fails_loudly_naming_the_module(source, found):
    with pytest.raises(ImportError, match="lava.magma.compiler.var_model") as err:
        py311.patch_source(source)
    assert found in str(err.value)
    assert "expected 8 fields" in str(err.value)
    assert err.value.name == "lava.magma.compiler.var_model"


def test_install_is_idempotent_and_skipped_before_3_11(monkeypatch):
    others = [f for f in sys.meta_path if not isinstance(f, py311.VarModelFinder)]
    monkeypatch.setattr(sys, "meta_path", list(others))
    monkeypatch.setattr(sys, "version_info", (3, 10, 14))
    assert py311.install() is False
    assert sys.meta_path == others
    monkeypatch.setattr(sys, "version_info", (3, 11, 7))
    assert py311.install() is True
    assert py311.install() is True
    assert sum(isinstance(f, py311.VarModelFinder) for f in sys.meta_path) == 1
    assert isinstance(sys.meta_path[0], py311.VarModelFinder)


def test_finder_leaves_other_modules_alone():
    assert py311.VarModelFinder().find_spec("lava.magma.compiler.compiler", None) is None


def test_var_model_imports_with_fresh_defaults():
    import lava.magma.compiler.var_model as var_model

    assert var_model.CoreEncoder().x is not var_model.CoreEncoder().x
    assert var_model.AxonEncoder().hi is not var_model.AxonEncoder().hi
    assert var_model.__file__.endswith("lava/magma/compiler/var_model.py")
    if sys.version_info >= (3, 11):
        assert isinstance(var_model.__loader__, py311._PatchedLoader)


def test_tiny_lava_network_spikes_as_computed_by_hand():
    """RingBuffer -> Dense -> LIF -> sink on Loihi2SimCfg, against Lava's LIF equations in numpy.

    Lava's float LIF: u = u (1 - du) + a; v = v (1 - dv) + u + bias; spike where v > vth, then v = 0.
    Dense sends at step t the weighted input it received at step t - 1 (zero at the first step).
    """
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF

    steps = 12
    x = np.array([[1, 0, 1, 1, 0, 1, 1, 1, 0, 0, 1, 1],
                  [0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1]], dtype=float)
    w = np.array([[0.5, 0.25], [0.75, -0.25], [0.25, 0.5]])
    du, dv, bias, vth = 0.5, 0.25, np.array([0.125, 0.0, 0.25]), 0.75

    source = Source(data=x)
    dense = Dense(weights=w, num_message_bits=24)
    lif = LIF(shape=(3,), du=du, dv=dv, bias_mant=bias, vth=vth)
    sink = Sink(shape=(3,), buffer=steps)
    source.s_out.connect(dense.s_in)
    dense.a_out.connect(lif.a_in)
    lif.s_out.connect(sink.a_in)
    try:
        sink.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="floating_pt"))
        got = sink.data.get()
    finally:
        sink.stop()

    u, v = np.zeros(3), np.zeros(3)
    want = np.zeros((3, steps))
    for t in range(steps):
        a = w @ x[:, t - 1] if t > 0 else np.zeros(3)
        u = u * (1 - du) + a
        v = v * (1 - dv) + u + bias
        want[:, t] = v > vth
        v[v > vth] = 0
    assert want.sum() > 5
    np.testing.assert_array_equal(got, want)


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=120)


def test_lava_imports_after_the_start_method_was_fixed_to_fork():
    """Training code can fix the start method first; Lava's own set_start_method('fork') must not fail."""
    done = _python("import multiprocessing as mp; mp.set_start_method('fork'); import backends.lava; print('ok')")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_lava_refuses_a_start_method_other_than_fork_by_name():
    done = _python("import multiprocessing as mp; mp.set_start_method('spawn'); import backends.lava")
    assert done.returncode != 0
    assert "ImportError: lava.magma.runtime.message_infrastructure.multiprocessing" in done.stderr
    assert "'fork'" in done.stderr and "'spawn'" in done.stderr
