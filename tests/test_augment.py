"""Training augmentation (pipeline.training.ann.augment): every augmented image is one of the crops of the
zero-padded image (or its mirror, with crop-flip), drawn from the seeded generator, every offset reachable."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.errors import SpikeportError
from pipeline.training.ann import CROP_PADDING, TrainConfig, augment, train_ann

N = 600


def images() -> torch.Tensor:
    """N distinct 2-channel 6x7 images with no left-right symmetry: pixel (i, c, r, k) = 1 + i + 7c + 3r + 5k^2."""
    i, c, r, k = np.meshgrid(np.arange(N), np.arange(2), np.arange(6), np.arange(7), indexing="ij")
    return torch.from_numpy((1 + i + 7 * c + 3 * r + 5 * k ** 2).astype(np.float32))


def windows(image: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    """Every crop of `image` (C, H, W) after CROP_PADDING zeros on each side, by its (top, left) offset."""
    p = CROP_PADDING
    padded = np.pad(image, ((0, 0), (p, p), (p, p)))
    h, w = image.shape[1:]
    return {(t, l): padded[:, t:t + h, l:l + w] for t in range(2 * p + 1) for l in range(2 * p + 1)}


def matches(x: torch.Tensor, out: torch.Tensor, flips: bool) -> tuple[set, int]:
    """(offsets seen, number of mirrored outputs); fails when an output is no crop (or mirrored crop)."""
    seen, mirrored = set(), 0
    for image, result in zip(x.numpy(), out.numpy()):
        found = [(key, False) for key, win in windows(image).items() if np.array_equal(win, result)]
        if flips:
            found += [(key, True) for key, win in windows(image).items() if np.array_equal(win[:, :, ::-1], result)]
        assert len(found) == 1, "not a crop of its own padded image"
        seen.add(found[0][0])
        mirrored += found[0][1]
    return seen, mirrored


def test_none_returns_the_batch_itself():
    x = images()
    assert augment(x, "none", torch.Generator().manual_seed(0)) is x


def test_crop_is_a_window_of_the_padded_image_at_every_offset():
    x = images()
    out = augment(x, "crop", torch.Generator().manual_seed(0))
    seen, mirrored = matches(x, out, flips=False)
    assert seen == set(windows(x[0].numpy())) and mirrored == 0   # all 25 offsets occur in 600 draws


def test_crop_flip_mirrors_about_half():
    x = images()
    out = augment(x, "crop-flip", torch.Generator().manual_seed(0))
    seen, mirrored = matches(x, out, flips=True)
    assert len(seen) == (2 * CROP_PADDING + 1) ** 2
    assert 240 <= mirrored <= 360   # Binomial(600, 1/2): 300 +- 60 is beyond 4.8 standard deviations


def test_same_seed_same_batch():
    x = images()
    a = augment(x, "crop-flip", torch.Generator().manual_seed(5))
    b = augment(x, "crop-flip", torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_unknown_augmentation_is_refused_before_training():
    x, y = torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    with pytest.raises(SpikeportError, match="unknown augmentation 'rotate'; choose one of: none, crop, crop-flip"):
        train_ann(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2)), x, y, x, y,
                  TrainConfig(epochs=1, augment="rotate"), progress=False)
