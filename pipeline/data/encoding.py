"""Input encodings: what a spiking network receives at each of T steps from an image batch (N, *shape).

`direct` keeps the analog image (N, *shape); `rate`, `latency` and `event` give seeded, compact int8 spike
trains (N, T, ...) that every backend accepts (backends/inputs.py); docs/nir-extensions.md, "Encodings".
"""
from __future__ import annotations

import numpy as np

from backends.nirext import ENCODINGS
from pipeline.errors import SpikeportError

# event encoding (DVS model of Orchard et al. 2015, N-MNIST): a triangle of three saccades, repeated
SACCADE_AMPLITUDE = 1.0     # pixels per saccade
STEPS_PER_SACCADE = 2       # time steps per saccade: one cycle of the triangle is 3 x this
EVENT_THRESHOLD = 0.15      # contrast threshold C on log intensity
LOG_EPSILON = 0.1           # log(I + eps): keeps the log finite on black pixels (I in [0, 1])
CALIBRATION_CYCLES = 4      # cycles of the saccade path whose mean event rate calibration sees


def check(encoding: str) -> str:
    """`encoding` if spikeport knows it, else a SpikeportError listing the choices."""
    if encoding not in ENCODINGS:
        raise SpikeportError(f"unknown encoding {encoding!r}; choose one of: {', '.join(ENCODINGS)}")
    return encoding


def _unit_range(x: np.ndarray, encoding: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.size and float(np.abs(x).max()) > 1:
        raise SpikeportError(f"{encoding} encoding needs intensities in [-1, 1] (spike probability or latency), "
                             f"found |x| up to {float(np.abs(x).max()):g}; scale the data to [0, 1]")
    return x


def rate(x, T: int, seed: int = 0) -> np.ndarray:
    """Bernoulli rate coding (the Poisson-like input of Diehl et al. 2015, "Fast-classifying, high-accuracy
    spiking deep networks ..."; no section cited: the paper is not in /work/shared/papers): at each step an input of intensity |x| <= 1 spikes with probability |x|, with the sign of x.
    Returns int8 (N, T, *shape) in {-1, 0, 1}; the mean over steps converges to x."""
    x = _unit_range(x, "rate")
    rng = np.random.default_rng(seed)
    out = np.empty((len(x), T, *x.shape[1:]), np.int8)
    sign = np.sign(x).astype(np.int8)
    for t in range(T):   # one step at a time: the float draws never exceed one step's size
        out[:, t] = (rng.random(x.shape) < np.abs(x)) * sign
    return out


def latency(x, T: int) -> np.ndarray:
    """Time-to-first-spike coding: one spike per non-zero input, at step round((1 - |x|) (T - 1)), so larger
    values spike earlier (|x| = 1 at step 0) and zero never spikes; int8 (N, T, *shape) with the sign of x."""
    x = _unit_range(x, "latency")
    when = np.rint((1.0 - np.abs(x)) * (T - 1)).astype(np.int64)
    out = np.zeros((len(x), T, *x.shape[1:]), np.int8)
    n_idx, *pos = np.nonzero(x)
    out[(n_idx, when[(n_idx, *pos)], *pos)] = np.sign(x[(n_idx, *pos)]).astype(np.int8)
    return out


def saccade_path(T: int, amplitude: float = SACCADE_AMPLITUDE, steps: int = STEPS_PER_SACCADE) -> np.ndarray:
    """(T, 2) image offsets (dy, dx) in pixels: the three saccades of N-MNIST's recording (Orchard et al. 2015:
    the sensor moves along a triangle) repeated, `steps` steps per saccade, starting at 0."""
    corners = amplitude * np.array([[0.0, 0.0], [1.0, 0.5], [0.0, 1.0], [0.0, 0.0]])
    cycle = [corners[k] + (corners[k + 1] - corners[k]) * j / steps for k in range(3) for j in range(steps)]
    return np.array([cycle[t % len(cycle)] for t in range(T)])


def shifted(images: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """`images` (N, H, W) moved by (dy, dx) pixels (bilinear interpolation, zeros enter from outside)."""
    n, h, w = images.shape
    pad = int(np.ceil(max(abs(dy), abs(dx)))) + 1
    big = np.zeros((n, h + 2 * pad, w + 2 * pad))
    big[:, pad:pad + h, pad:pad + w] = images
    y0, x0 = int(np.floor(dy)), int(np.floor(dx))
    fy, fx = dy - y0, dx - x0

    def window(oy, ox):   # out[i, j] = in[i - oy, j - ox]
        return big[:, pad - oy:pad - oy + h, pad - ox:pad - ox + w]
    return ((1 - fy) * (1 - fx) * window(y0, x0) + (1 - fy) * fx * window(y0, x0 + 1)
            + fy * (1 - fx) * window(y0 + 1, x0) + fy * fx * window(y0 + 1, x0 + 1))


def dvs_events(frames: np.ndarray, threshold: float = EVENT_THRESHOLD, eps: float = LOG_EPSILON) -> np.ndarray:
    """ON/OFF events of a DVS pixel array watching `frames` (N, T, H, W) of intensities: each pixel keeps the
    log intensity at its last event (at first, that of frame 0) and at step t emits k = trunc((L_t - L_ref) / C)
    events, ON if k > 0, OFF if k < 0, moving its reference by k C (the DVS pixel of Lichtsteiner et al. 2008
    that recorded N-MNIST, Orchard et al. 2015). Returns int8 counts (N, T, 2, H, W), channel 0 ON, channel 1 OFF."""
    logs = np.log(np.asarray(frames, np.float64) + eps)
    ref = logs[:, 0].copy()
    out = np.zeros((logs.shape[0], logs.shape[1], 2, *logs.shape[2:]), np.int8)
    for t in range(logs.shape[1]):
        k = np.trunc((logs[:, t] - ref) / threshold)
        ref += k * threshold
        out[:, t, 0] = np.maximum(k, 0)
        out[:, t, 1] = np.maximum(-k, 0)
    return out


def event(x, T: int) -> np.ndarray:
    """N-MNIST-style event tensors (N, T, 2, H, W) int8 from images (N, C, H, W) in [0, 1] (channels averaged
    to grey): the image moved along `saccade_path(T)` seen by `dvs_events`. Deterministic."""
    x = np.asarray(x, np.float64)
    if x.ndim != 4:
        raise SpikeportError(f"event encoding needs images (N, C, H, W), got shape {x.shape}")
    grey = _unit_range(x, "event").mean(1)
    frames = np.stack([shifted(grey, dy, dx) for dy, dx in saccade_path(T)], 1)
    return dvs_events(frames)


def input_shape(encoding: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Per-step input shape a graph needs under `encoding` for images of per-sample `shape`."""
    if check(encoding) == "event":
        if len(shape) != 3:
            raise SpikeportError(f"event encoding needs images (C, H, W), got per-sample shape {shape}")
        return (2, *shape[1:])
    return tuple(shape)


def encode(x, encoding: str, T: int, seed: int = 0) -> np.ndarray:
    """Images `x` (N, *shape) as `encoding` delivers them for T steps: direct (N, *shape) float32, else int8
    (N, T, *per-step shape); `seed` drives `rate` only (the others are deterministic)."""
    check(encoding)
    if encoding == "direct":
        return np.asarray(x, np.float32)
    if encoding == "rate":
        return rate(x, T, seed)
    if encoding == "latency":
        return latency(x, T)
    return event(x, T)


def calibration_input(x, encoding: str, T: int = 32, seed: int = 0) -> np.ndarray:
    """What a converted network's ANN should see for `encoding`: the per-step mean of the encoded input (rates
    are what the SNN's first layer integrates). direct and rate: x itself (rate's exact expectation); latency:
    sign(x) / T; event: the mean event counts over CALIBRATION_CYCLES cycles of the saccade path (float32)."""
    check(encoding)
    x = np.asarray(x, np.float32)
    if encoding in ("direct", "rate"):
        return x
    if encoding == "latency":
        return (np.sign(_unit_range(x, "latency")) / T).astype(np.float32)
    steps = CALIBRATION_CYCLES * 3 * STEPS_PER_SACCADE
    return event(x, steps).mean(1, dtype=np.float32)
