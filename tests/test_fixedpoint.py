"""The integer arithmetic of backends/fixedpoint.py against Lava's own helper functions (weight clipping and
truncation, the Sparse model holding a convolution, the Conv model's convolution and 24-bit clamp), hand-worked
neuron steps, and a plain loop."""
from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings, strategies as st

import backends
from backends import fixedpoint as fx
from lava.proc.conv import utils as conv_utils
from lava.utils.weightutils import SignMode, clip_weights, determine_sign_mode, truncate_weights
from pipeline.hardware.quantize import quantize
from tests.graphs import mlp

REF = backends.get("reference")


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2 ** 31 - 1), st.sampled_from([2, 4, 6, 8]), st.integers(-8, 7), st.sampled_from([-1, 0, 1]))
def test_dense_matches_lavas_bit_accurate_weights_and_shift(seed, bits, exp, sign):
    rng = np.random.default_rng(seed)
    lo, hi = fx.mantissa_range(bits, "mixed" if sign == 0 else ("excitatory" if sign > 0 else "inhibitory"))
    m = rng.integers(lo, hi + 1, (5, 7))
    s = rng.integers(-3, 4, (4, 7))
    stored, k, mode = fx.dense_storage(m, bits)
    # what PyDenseModelBitAcc does to the weights it is given, then its accumulate-and-shift
    lava_w = truncate_weights(clip_weights(stored, determine_sign_mode(stored), num_bits=8),
                              determine_sign_mode(stored), bits)
    np.testing.assert_array_equal(lava_w, stored)
    assert SignMode[mode.upper()] == determine_sign_mode(stored) or not m.any()
    acc = lava_w @ s.T
    lava = (np.left_shift(acc, exp - k) if exp - k > 0 else np.right_shift(acc, k - exp)).T
    np.testing.assert_array_equal(fx.dense_accumulate(stored, exp - k, s), lava)
    np.testing.assert_array_equal(fx.dense_accumulate(stored, exp - k, s), np.floor(s @ m.T * 2.0 ** exp))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2 ** 31 - 1), st.sampled_from([2, 4, 6, 8]), st.integers(-8, 7), st.sampled_from([-1, 0, 1]))
def test_conv_matches_lavas_bit_accurate_sparse_holding_the_convolution(seed, bits, exp, sign):
    """The reference's Conv2d against what PySparseModelBitAcc does with the matrix Lava's own conv_to_sparse
    builds from the torch-order kernel (asymmetric kernel, stride, padding, non-square input): clip and truncate
    the stored weights, int32 product, shift by weight_exp; and against the closed form floor(conv(s, m) 2^E)."""
    from scipy.sparse import csr_matrix
    rng = np.random.default_rng(seed)
    lo, hi = fx.mantissa_range(bits, "mixed" if sign == 0 else ("excitatory" if sign > 0 else "inhibitory"))
    m = rng.integers(lo, hi + 1, (4, 3, 2, 3))           # torch (C_out, C_in, kH, kW)
    s = rng.integers(-3, 4, (1, 3, 6, 5))
    kw = {"stride": (2, 1), "padding": (1, 0), "dilation": (1, 1), "groups": 1}
    stored, k, mode = fx.dense_storage(m, bits)
    ours = fx.shift(fx.conv_accumulate(stored, s, kw), exp - k)[0]
    out_xyc = ours.T.shape                                # Lava's (X, Y, C) layout of tensors
    kernel = stored.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :]  # Lava (C_out, kW, kH, C_in), flipped
    dst, src, wgt = conv_utils.conv_to_sparse((5, 6, 3), out_xyc, kernel, (1, 2), (0, 1), (1, 1), 1)
    matrix = csr_matrix((wgt, (dst, src)), shape=(int(np.prod(out_xyc)), s.size)).astype(np.int32)
    lava_w = truncate_weights(clip_weights(matrix, SignMode[mode.upper()], num_bits=8), SignMode[mode.upper()], bits)
    acc = lava_w.dot(s[0].T.reshape(-1).astype(np.int32))
    lava = np.left_shift(acc, exp - k) if exp - k > 0 else np.right_shift(acc, k - exp)
    np.testing.assert_array_equal(ours.T.reshape(-1), lava)
    closed = torch.nn.functional.conv2d(torch.tensor(s, dtype=torch.float64), torch.tensor(m, dtype=torch.float64),
                                        **kw)[0].numpy()
    np.testing.assert_array_equal(ours, np.floor(closed * 2.0 ** exp))


def test_lavas_conv_process_gives_the_same_integers_below_the_quantizers_bound():
    """conv='conv': PyConvModelFixed's convolution and 24-bit clamp equal the Sparse integers while every sum
    stays below fixedpoint.CONV_LIMIT (2^23, which the quantizer guarantees); beyond it Conv wraps, Sparse not."""
    rng = np.random.default_rng(1)
    m = rng.integers(-128, 128, (4, 3, 3, 3))            # torch (C_out, C_in, kH, kW)
    kw = {"stride": (1, 1), "padding": (1, 1), "dilation": (1, 1), "groups": 1}
    lava_w = m.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :]    # Lava (C_out, kW, kH, C_in), flipped
    for top, wraps in ((fx.CONV_LIMIT // (27 * 128) - 1, False), (200 * 255, True)):
        s = rng.integers(0, top + 1, (1, 3, 6, 5))
        ours = fx.conv_accumulate(m, s, kw)[0]
        lava = conv_utils.signed_clamp(conv_utils.conv(s[0].transpose(2, 1, 0), lava_w.astype(np.int64), (3, 3),
                                                       (1, 1), (1, 1), (1, 1), 1), bits=24).transpose(2, 1, 0)
        assert np.abs(ours).max() < fx.CONV_LIMIT or wraps
        assert np.array_equal(ours, lava) != wraps


def test_wraps_and_shifts_by_hand():
    # Lava's LIF current wrap keeps +2^23 and maps -2^23 to +2^23
    assert fx.wrap_current(np.array([2 ** 23, 2 ** 23 + 1, -2 ** 23, 7])).tolist() == [2 ** 23, -2 ** 23 + 1, 2 ** 23, 7]
    assert fx.shift(np.array([-5, 5]), -1).tolist() == [-3, 2]   # arithmetic right shift rounds toward -inf
    assert fx.shift(np.array([-5, 5]), 2).tolist() == [-20, 20]


def _params(kind, reset, vth, bias=0, v_init=0):
    one = np.ones(1, np.int64)
    return fx.NeuronParams(kind, reset, vth * one, 0 * one, bias * one, v_init * one)


def test_neuron_steps_by_hand():
    # IF, reset by subtraction, vth = 2 -> threshold 128 in v units; input a -> u = 64 a; bias 10
    p = _params("IF", "subtract", 2, bias=10)
    state, out = fx.neuron_init(p, 1), []
    for a in (1, 1, 0, 3):
        state, z = fx.neuron_step(p, state, np.array([[a]]))
        out.append((int(state.v[0, 0]), int(z[0, 0])))
    # 0+64+10=74; 74+74=148>=128 -> 20; 20+10=30; 30+192+10=232 -> 104
    assert out == [(74, 0), (20, 1), (30, 0), (104, 1)]
    # signed neuron with memory, vth = 1 (64): +1 while m = 0 is allowed, -1 only while m > 0
    p = _params("IF", "signed-memory", 1)
    state, out = fx.neuron_init(p, 1), []
    for a in (1, -2, -2, -1):
        state, z = fx.neuron_step(p, state, np.array([[a]]))
        out.append((int(state.v[0, 0]), int(state.m[0, 0]), int(z[0, 0])))
    # 64 -> +1 (v 0, m 1); -128 -> -1 (v -64, m 0); -192: m = 0 -> no spike; -256: none
    assert out == [(0, 1, 1), (-64, 0, -1), (-192, 0, 0), (-256, 0, 0)]
    # the state saturates at +-(2^23 - 1)
    p = _params("I", "zero", 0, bias=2 ** 23 - 10)
    _, y = fx.neuron_step(p, fx.neuron_init(p, 1), np.array([[1]]))
    assert int(y[0, 0]) == 2 ** 23 - 1


def test_fixed_point_run_equals_a_plain_integer_loop():
    rng = np.random.default_rng(3)
    g = mlp(rng.normal(0, 0.6, (5, 3)), rng.normal(0, 0.2, 5), rng.normal(0, 0.6, (2, 5)), rng.normal(0, 0.1, 2))
    x = rng.uniform(0, 1, (8, 3))
    q = quantize(g, "loihi2", x).graph
    T = 12
    run = REF.run(q, x, T, fixed_point=True, record=True)
    meta = {n: q.nodes[n].metadata["spikeport"]["fixed_point"] for n in ("fc1", "fc2", "if1", "out")}
    fmt = q.metadata["spikeport"]["fixed_point"]
    xi = np.clip(np.rint(x / fmt["input_scale"]), 0, 255).astype(np.int64)
    ints = {n: np.rint(q.nodes[n].weight / meta[n]["weight_step"]).astype(np.int64) for n in ("fc1", "fc2")}
    u1, u2 = meta["if1"]["unit"], meta["out"]["unit"]
    vth = np.rint(q.nodes["if1"].v_threshold / u1).astype(np.int64) * 64
    b1 = np.rint(q.nodes["fc1"].bias * 64 / u1).astype(np.int64)
    b2 = np.rint(q.nodes["fc2"].bias * 64 / u2).astype(np.int64)
    limit = 2 ** 23 - 1
    for i in range(len(x)):
        v1, v2 = np.zeros(5, np.int64), np.zeros(2, np.int64)
        for t in range(T):
            a = np.floor((ints["fc1"] @ xi[i]) * 2.0 ** meta["fc1"]["weight_exp"]).astype(np.int64)
            v1 = np.clip(v1 + a * 64 + b1, -limit, limit)
            z = (v1 >= vth).astype(np.int64)
            v1 = v1 - vth * z
            assert np.array_equal(run.spikes["if1"][i, t], z)
            a2 = np.floor((ints["fc2"] @ z) * 2.0 ** meta["fc2"]["weight_exp"]).astype(np.int64)
            v2 = np.clip(v2 + a2 * 64 + b2, -limit, limit)
        np.testing.assert_allclose(run.outputs[i], v2 * u2 / 64, rtol=1e-12)


def test_cuba_decays_by_hand():
    # dv = 2048 halves v, rounding toward zero: 101 -> 50, -101 -> -50 (not -51); du = 1023 keeps 3/4 of u
    p = fx.NeuronParams("IF", "zero", np.array([100]), np.array([0]), np.array([0]), np.array([0]),
                        du=np.array([1023]), dv=np.array([2048]))
    assert fx.decay(np.array([101, -101]), 2048).tolist() == [50, -50]
    state = fx.NeuronState(np.array([[400]]), np.array([[101]]))
    state, z = fx.neuron_step(p, state, np.array([[2]]))
    # u = 400 * 3072 / 4096 + 2 * 64 = 300 + 128 = 428; v = 101 // 2 + 428 = 478, below 100 << 6
    assert (int(state.u[0, 0]), int(state.v[0, 0]), int(z[0, 0])) == (428, 478, 0)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2 ** 31 - 1))
def test_neuron_step_equals_lavas_own_bit_accurate_lif_model(seed):
    """fixedpoint.neuron_step with reset to zero against lava-nc's PyLifModelBitAcc itself (its subthreshold
    dynamics, spike and reset methods called step by step), for random 12-bit decays, biases, thresholds and
    inputs large enough to reach the 24-bit wrap and clip."""
    import backends.lava  # noqa: F401  (its import carries lava-nc's Python 3.11 fix)
    from lava.proc.lif.models import PyLifModelBitAcc
    rng = np.random.default_rng(seed)
    n = 6
    du, dv, vth = int(rng.integers(0, 4096)), int(rng.integers(0, 4096)), int(rng.integers(0, 2 ** 17))
    mant, exp = rng.integers(-4096, 4096, n), rng.integers(0, 8, n)
    lava = PyLifModelBitAcc({})
    lava.u, lava.v = np.zeros(n, np.int32), np.zeros(n, np.int32)
    lava.du, lava.dv, lava.vth = du, dv, vth
    lava.bias_mant, lava.bias_exp = mant.astype(np.int16), exp.astype(np.int16)
    lava.scale_bias()
    lava.scale_threshold()
    zero = np.zeros(n, np.int64)
    p = fx.NeuronParams("IF", "zero", np.full(n, vth), zero, mant << exp, zero, du=np.full(n, du), dv=np.full(n, dv))
    state = fx.neuron_init(p, 1)
    scale = 2 ** int(rng.integers(0, 18))
    for _ in range(30):
        a = rng.integers(-scale, scale + 1, n)
        lava.subthr_dynamics(a.astype(np.int32))
        spikes = lava.spiking_activation()
        lava.reset_voltage(spikes)
        state, z = fx.neuron_step(p, state, a[None])
        np.testing.assert_array_equal(z[0], spikes.astype(np.int64))
        np.testing.assert_array_equal(state.u[0], lava.u)
        np.testing.assert_array_equal(state.v[0], lava.v)


def test_pooling_is_the_sum_lavas_conv_computes_with_a_kernel_of_ones():
    import nir
    rng = np.random.default_rng(4)
    s = rng.integers(0, 2, (1, 3, 7, 6))
    node = nir.AvgPool2d(kernel_size=np.array([2, 3]), stride=np.array([2, 1]), padding=np.array([1, 0]))
    kw = fx.pool_kwargs(node, 3)
    kernel = kw.pop("kernel")
    ours = fx.conv_accumulate(np.ones((3, 1, *kernel), np.int64), s, kw)[0]
    lava = conv_utils.conv(s[0].transpose(2, 1, 0), np.ones((3, kernel[1], kernel[0], 1), np.int64), kernel[::-1],
                           (1, 2), (0, 1), (1, 1), 3)
    np.testing.assert_array_equal(ours, lava.transpose(2, 1, 0))
    # and the average torch takes (padding counted), times the kernel area
    import torch
    avg = torch.nn.functional.avg_pool2d(torch.tensor(s, dtype=torch.float64), (2, 3), (2, 1), (1, 0))[0].numpy()
    np.testing.assert_allclose(ours, avg * 6, rtol=0, atol=1e-12)
