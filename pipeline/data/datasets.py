"""Datasets as tensors: the embedded sklearn digits, MNIST and Fashion-MNIST (IDX, fetched into a cache or
from --data-root), CIFAR-10/100 (python pickles, --data-root), a seeded synthetic CIFAR-size set; float32 (N, C, H, W) in [0, 1].
"""
from __future__ import annotations

import gzip
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from pipeline.errors import SpikeportError

DATASET_NAMES = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "synthetic-cifar")
FETCHED = ("mnist", "fashion-mnist")  # fetched into the cache when no --data-root is given

DIGITS_TEST_FRACTION = 0.2  # of 1797 images: 360 test, 1437 train
SYNTHETIC_TRAIN_SIZE = 2000
SYNTHETIC_TEST_SIZE = 500
SYNTHETIC_BLEND = (0.3, 0.6)  # weight of the random distractor field
SYNTHETIC_NOISE = 0.15  # standard deviation of the pixel noise

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CIFAR100_DIR = "cifar-100-python"
CIFAR100_FILES = ("train", "test")
CIFAR_PIXELS = 3 * 32 * 32

# The only globals a CIFAR pickle needs (numpy arrays; _codecs.encode is how a protocol-2 pickle
# written by Python 3 stores bytes); anything else is refused, not executed.
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class DataError(SpikeportError, ValueError):
    """A data set is missing, malformed or unknown; the one-line message names the file and layout."""


@dataclass
class Dataset:
    """Train and test images (N, C, H, W) float32 in [0, 1] with int64 labels in [0, num_classes)."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.train_x.shape[1:])


def load_dataset(name: str = "digits", data_root: str | Path | None = None, seed: int = 0,
                 cache_dir: str | Path | None = None, progress: bool = False) -> Dataset:
    """Load a data set by name (see DATASET_NAMES); mnist/fashion-mnist/cifar10/cifar100 read from `data_root`.

    Without `data_root`, mnist and fashion-mnist are fetched once into the cache (`pipeline.data.fetch`;
    `cache_dir`, else $SPIKEPORT_CACHE, else the XDG cache folder) and read from there, with a progress bar
    while fetching when `progress`. `seed` fixes the digits train/test split and the synthetic-cifar samples;
    the on-disk sets have their own fixed splits and ignore it.
    """
    if name == "digits":
        return load_digits(seed)
    if name == "synthetic-cifar":
        return synthetic_cifar(seed=seed)
    loaders = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist, "cifar10": load_cifar10,
               "cifar100": load_cifar100}
    if name not in loaders:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    if data_root is None and name in FETCHED:
        from pipeline.data.fetch import fetch
        return loaders[name](fetch(name, cache_dir=cache_dir, progress=progress))
    if data_root is None:
        raise DataError(f"dataset {name!r} is read from disk: --data-root is required")
    root = Path(data_root).expanduser()
    if root.exists() and not root.is_dir():
        raise DataError(f"--data-root {root} is a file, not a folder; pass the folder that holds the {name} files")
    return loaders[name](root)


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False,
            seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y) mini-batches; with `shuffle`, in an order fixed by `seed`. The last may be short."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(x) != len(y):
        raise ValueError(f"{len(x)} inputs but {len(y)} labels")
    if shuffle:
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    else:
        order = torch.arange(len(x))
    for start in range(0, len(x), batch_size):
        index = order[start:start + batch_size]
        yield x[index], y[index]


def _tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as float32 and labels as int64 tensors (uint8 images are divided by 255)."""
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / np.float32(255)
    images = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return images, torch.from_numpy(np.array(y, dtype=np.int64))


# --- digits ----------------------------------------------------------------------------------------

def load_digits(seed: int = 0) -> Dataset:
    """sklearn's 8x8 digits, pixels / 16, split by sklearn's train_test_split(test_size=0.2,
    stratify=labels, random_state=seed): 1437 train / 360 test, the same split for the same seed."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    images = bunch.images.reshape(-1, 1, 8, 8) / 16.0
    x_train, x_test, y_train, y_test = train_test_split(
        images, bunch.target, test_size=DIGITS_TEST_FRACTION, stratify=bunch.target,
        random_state=seed)
    return Dataset("digits", *_tensors(x_train, y_train), *_tensors(x_test, y_test), num_classes=10)


# --- MNIST and Fashion-MNIST (the same IDX files) -----------------------------------------------------

def load_mnist(root: Path) -> Dataset:
    """MNIST from IDX files (each optionally .gz) in `root` or in torchvision's `root`/MNIST/raw/."""
    return _load_idx_set(Path(root), "mnist", "MNIST")


def load_fashion_mnist(root: Path) -> Dataset:
    """Fashion-MNIST from IDX files named as MNIST's (each optionally .gz) in `root` or in torchvision's
    `root`/FashionMNIST/raw/."""
    return _load_idx_set(Path(root), "fashion-mnist", "FashionMNIST")


def _load_idx_set(root: Path, name: str, torchvision_dir: str) -> Dataset:
    folder = root / torchvision_dir / "raw" if (root / torchvision_dir / "raw").is_dir() else root
    paths = [_find_idx_file(root, folder, file, name, torchvision_dir) for file in MNIST_FILES]
    x_train, y_train = _idx_pair(paths[0], paths[1])
    x_test, y_test = _idx_pair(paths[2], paths[3])
    return Dataset(name, *_tensors(x_train, y_train), *_tensors(x_test, y_test), num_classes=10)


def _find_idx_file(root: Path, folder: Path, file: str, name: str, torchvision_dir: str) -> Path:
    for directory in (folder, root):
        for candidate in (directory / file, directory / f"{file}.gz"):
            if candidate.is_file():
                return candidate
    raise DataError(f"{name} not found: {folder / file}(.gz) is missing; expected under --data-root (or its "
                    f"{torchvision_dir}/raw/): {', '.join(MNIST_FILES)} (each optionally .gz)")


def _idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 1, 28, 28) and labels (N,) from matching IDX files."""
    images = _read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = _read_idx(labels_path, IDX_LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise DataError(f"corrupt IDX file {images_path}: images are "
                        f"{images.shape[1]}x{images.shape[2]}, expected 28x28")
    if len(images) != len(labels):
        raise DataError(f"IDX count mismatch: {images_path} holds {len(images)} images but "
                        f"{labels_path} holds {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DataError(f"corrupt IDX file {labels_path}: label {labels.max()} outside 0..9")
    return images[:, None, :, :], labels


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse one IDX file: big-endian int32 magic, then one big-endian int32 per dimension, then
    exactly prod(dims) unsigned bytes."""
    raw = _read_bytes(path)
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise DataError(f"corrupt IDX file {path}: {len(raw)} bytes, shorter than its "
                        f"{header}-byte header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"corrupt IDX file {path}: magic 0x{found:08x}, expected 0x{magic:08x}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    if min(dims) < 0:
        raise DataError(f"corrupt IDX file {path}: negative dimension in {dims}")
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(f"corrupt IDX file {path}: dimensions {dims} need {expected} data bytes, "
                        f"found {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"cannot read {path}: {error}") from error


# --- CIFAR -----------------------------------------------------------------------------------------

def load_cifar10(root: Path) -> Dataset:
    """CIFAR-10 python batches from `root`/cifar-10-batches-py/ or from `root` itself."""
    folder = _cifar_folder(Path(root), CIFAR10_DIR, CIFAR10_FILES, "CIFAR-10")
    parts = [_cifar_batch(folder / name, b"labels", 10) for name in CIFAR10_FILES]
    x_train = np.concatenate([x for x, _ in parts[:5]])
    y_train = np.concatenate([y for _, y in parts[:5]])
    return Dataset("cifar10", *_tensors(x_train, y_train), *_tensors(*parts[5]), num_classes=10)


def load_cifar100(root: Path) -> Dataset:
    """CIFAR-100 (fine labels) from `root`/cifar-100-python/{train,test} or from `root` itself."""
    folder = _cifar_folder(Path(root), CIFAR100_DIR, CIFAR100_FILES, "CIFAR-100")
    train = _cifar_batch(folder / "train", b"fine_labels", 100)
    test = _cifar_batch(folder / "test", b"fine_labels", 100)
    return Dataset("cifar100", *_tensors(*train), *_tensors(*test), num_classes=100)


def _cifar_folder(root: Path, subdir: str, files: tuple[str, ...], label: str) -> Path:
    """`root`/`subdir` when it exists, else `root` when it holds the batches; check every file."""
    folder = root / subdir if (root / subdir).is_dir() or not (root / files[-1]).is_file() else root
    for name in files:
        if not (folder / name).is_file():
            raise DataError(f"{label} not found: {folder / name} is missing; expected under "
                            f"--data-root: {subdir}/{{{','.join(files)}}}")
    return folder


class _NumpyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _cifar_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch: b"data" uint8 (N, 3072) as R, G, B planes of 32x32 rows, returned as
    uint8 (N, 3, 32, 32); labels (N,)."""
    try:
        with open(path, "rb") as handle:
            batch = _NumpyUnpickler(handle, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as error:
        raise DataError(f"corrupt CIFAR file {path}: cannot unpickle ({error})") from error
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise DataError(f"corrupt CIFAR file {path}: expected a dict with keys b'data' and "
                        f"{label_key!r}")
    data = np.asarray(batch[b"data"])
    try:
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (ValueError, TypeError) as error:
        raise DataError(f"corrupt CIFAR file {path}: labels are not integers ({error})") from error
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_PIXELS:
        raise DataError(f"corrupt CIFAR file {path}: data is {data.dtype} {data.shape}, expected "
                        f"uint8 (N, {CIFAR_PIXELS})")
    if labels.shape != (len(data),):
        raise DataError(f"corrupt CIFAR file {path}: {len(data)} images but labels of shape "
                        f"{labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"corrupt CIFAR file {path}: labels outside 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels


# --- synthetic CIFAR-size set ----------------------------------------------------------------------

def synthetic_cifar(n_train: int = SYNTHETIC_TRAIN_SIZE, n_test: int = SYNTHETIC_TEST_SIZE,
                    seed: int = 0, num_classes: int = 10) -> Dataset:
    """Seeded 3x32x32 images for end-to-end runs of CIFAR-size networks without CIFAR on disk.

    Each class is a smooth template (a sum of random low-frequency 2-D cosines per colour channel).
    A sample is its class template, circularly shifted by up to 4 pixels and scaled in contrast,
    blended with a random smooth distractor field of the same kind, plus Gaussian pixel noise,
    clipped to [0, 1]. Same seed, same data set.
    """
    rng = np.random.default_rng(seed)
    templates = _smooth_fields(rng, num_classes)
    x_train, y_train = _synthetic_samples(rng, templates, n_train)
    x_test, y_test = _synthetic_samples(rng, templates, n_test)
    return Dataset("synthetic-cifar", *_tensors(x_train, y_train), *_tensors(x_test, y_test),
                   num_classes=num_classes)


def _smooth_fields(rng: np.random.Generator, count: int, waves: int = 3) -> np.ndarray:
    """(count, 3, 32, 32) sums of `waves` random 2-D cosines of frequency 0..3, scaled to [-1, 1]."""
    grid = np.arange(32) * (2 * np.pi / 32)
    rows, cols = np.meshgrid(grid, grid, indexing="ij")
    freq_y, freq_x = rng.integers(0, 4, size=(2, count, 3, waves, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(count, 3, waves, 1, 1))
    amplitude = rng.uniform(0.5, 1.0, size=(count, 3, waves, 1, 1))
    fields = (amplitude * np.cos(freq_y * rows + freq_x * cols + phase)).sum(axis=2)
    return fields / np.maximum(np.abs(fields).max(axis=(1, 2, 3), keepdims=True), 1e-9)


def _synthetic_samples(rng: np.random.Generator, templates: np.ndarray,
                       n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, len(templates), size=n)
    shifts = rng.integers(-4, 5, size=(n, 2))
    signal = np.stack([np.roll(templates[k], tuple(s), axis=(1, 2)) for k, s in zip(labels, shifts)])
    contrast = rng.uniform(0.6, 1.0, size=(n, 1, 1, 1))
    blend = rng.uniform(SYNTHETIC_BLEND[0], SYNTHETIC_BLEND[1], size=(n, 1, 1, 1))
    mixed = (1 - blend) * contrast * signal + blend * _smooth_fields(rng, n)
    images = 0.5 + 0.4 * mixed + rng.normal(0, SYNTHETIC_NOISE, size=signal.shape)
    return np.clip(images, 0.0, 1.0), labels
