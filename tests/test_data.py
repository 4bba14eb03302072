"""Tests for pipeline.data.datasets: MNIST IDX and CIFAR pickle files written here in their on-disk formats,
the digits split, the synthetic CIFAR-size set, mini-batching and the error messages."""
from __future__ import annotations

import datetime
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.data.datasets import DataError, batches, load_dataset, synthetic_cifar

MNIST_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


# --- MNIST -----------------------------------------------------------------------------------------

def idx_bytes(magic: int, array: np.ndarray) -> bytes:
    """An IDX file by the format's definition: big-endian magic, big-endian int32 dims, raw bytes."""
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def mnist_images(n: int, offset: int) -> np.ndarray:
    """Pixel (i, r, c) = (offset + i*784 + r*28 + c) mod 256."""
    return ((offset + np.arange(n * 28 * 28)) % 256).reshape(n, 28, 28).astype(np.uint8)


TRAIN_LABELS = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
TEST_LABELS = np.array([9, 2, 6], dtype=np.uint8)


def write_mnist(folder: Path, gz: bool | tuple[bool, ...] = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    contents = [idx_bytes(0x803, mnist_images(5, 0)), idx_bytes(0x801, TRAIN_LABELS),
                idx_bytes(0x803, mnist_images(3, 7)), idx_bytes(0x801, TEST_LABELS)]
    compress = gz if isinstance(gz, tuple) else (gz,) * 4
    for name, data, zipped in zip(MNIST_NAMES, contents, compress):
        if zipped:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


@pytest.mark.parametrize("layout", ["plain", "gz", "mixed", "torchvision"])
def test_mnist_loads_exact_pixels_and_labels(tmp_path, layout):
    if layout == "torchvision":
        write_mnist(tmp_path / "MNIST" / "raw", gz=True)
    else:
        write_mnist(tmp_path, gz={"plain": False, "gz": True, "mixed": (True, False, False, True)}[layout])
    ds = load_dataset("mnist", data_root=tmp_path)
    assert ds.train_x.shape == (5, 1, 28, 28) and ds.test_x.shape == (3, 1, 28, 28)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    assert ds.train_y.tolist() == [3, 1, 4, 1, 5] and ds.test_y.tolist() == [9, 2, 6]
    # (i, r, c) -> value by the formula of mnist_images, divided by 255
    assert ds.train_x[2, 0, 10, 17].item() == pytest.approx(((2 * 784 + 10 * 28 + 17) % 256) / 255)
    assert ds.train_x[0, 0, 0, 255 % 28].item() == pytest.approx((255 % 28) / 255)
    assert ds.test_x[1, 0, 27, 3].item() == pytest.approx(((7 + 784 + 27 * 28 + 3) % 256) / 255)
    assert ds.train_x.min().item() == 0.0 and ds.train_x.max().item() == 1.0


def test_mnist_missing_file_names_path_and_layout(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as error:
        load_dataset("mnist", data_root=tmp_path)
    message = str(error.value)
    assert str(tmp_path / "t10k-labels-idx1-ubyte") in message
    assert all(name in message for name in MNIST_NAMES)
    assert "\n" not in message


def test_mnist_empty_root_names_first_file(tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_dataset("mnist", data_root=tmp_path / "nowhere")


def test_mnist_wrong_magic_names_file(tmp_path):
    write_mnist(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes((0x801).to_bytes(4, "big") + bad.read_bytes()[4:])  # a labels magic
    with pytest.raises(DataError, match="magic") as error:
        load_dataset("mnist", data_root=tmp_path)
    assert str(bad) in str(error.value)


@pytest.mark.parametrize("cut", [1, 3920, 3930])
def test_mnist_truncated_file_names_file(tmp_path, cut):
    write_mnist(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-cut])
    with pytest.raises(DataError) as error:
        load_dataset("mnist", data_root=tmp_path)
    assert str(bad) in str(error.value)


def test_mnist_corrupt_gzip_names_file(tmp_path):
    write_mnist(tmp_path, gz=True)
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(b"this is not gzip data")
    with pytest.raises(DataError) as error:
        load_dataset("mnist", data_root=tmp_path)
    assert str(bad) in str(error.value)


def test_mnist_count_mismatch(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(0x801, TRAIN_LABELS[:4]))
    with pytest.raises(DataError, match="5 images .* 4 labels"):
        load_dataset("mnist", data_root=tmp_path)


# --- CIFAR -----------------------------------------------------------------------------------------

def cifar_data(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 str (SHORT_BINSTRING/BINSTRING), as in the CIFAR files as shipped."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def write_batch(path: Path, data: np.ndarray, labels: list[int], label_key: bytes,
                style: str = "py2") -> None:
    """style: "py2" (as shipped), or a Python 3 pickle of protocol "2" or "5"."""
    batch = {b"batch_label": b"test", b"data": data, label_key: labels,
             b"filenames": [b"x.png"] * len(data)}
    with open(path, "wb") as handle:
        if style == "py2":
            Py2Pickler(handle, protocol=2).dump(batch)
        else:
            pickle.dump(batch, handle, protocol=int(style))


def write_cifar10(folder: Path) -> dict[str, tuple[np.ndarray, list[int]]]:
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for index, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        data, labels = cifar_data(2, index), [index, (index + 3) % 10]
        write_batch(folder / name, data, labels, b"labels", style=("py2", "2", "5")[index % 3])
        written[name] = (data, labels)
    return written


def marked_image() -> np.ndarray:
    """R plane 255, G plane 0 except one 200 at row 3 col 7, B plane 128."""
    image = np.zeros(3072, dtype=np.uint8)
    image[:1024] = 255
    image[1024 + 3 * 32 + 7] = 200
    image[2048:] = 128
    return image


def test_cifar10_pixel_order_and_labels(tmp_path):
    written = write_cifar10(tmp_path / "cifar-10-batches-py")
    ds = load_dataset("cifar10", data_root=tmp_path)
    assert ds.train_x.shape == (10, 3, 32, 32) and ds.test_x.shape == (2, 3, 32, 32)
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10
    assert ds.train_y.tolist() == [0, 3, 1, 4, 2, 5, 3, 6, 4, 7]
    assert ds.test_y.tolist() == [5, 8]
    data3, _ = written["data_batch_3"]
    for k, r, c in [(0, 0, 0), (0, 5, 9), (1, 31, 0), (2, 17, 30), (2, 31, 31)]:
        # image 1 of batch 3 is training sample 2*2 + 1 = 5
        assert ds.train_x[5, k, r, c].item() == pytest.approx(data3[1, k * 1024 + r * 32 + c] / 255)
    test_data, _ = written["test_batch"]
    assert ds.test_x[0, 1, 2, 3].item() == pytest.approx(test_data[0, 1024 + 2 * 32 + 3] / 255)


def test_cifar10_channel_planes(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    write_batch(folder / "test_batch", marked_image()[None], [7], b"labels")
    ds = load_dataset("cifar10", data_root=folder)  # data_root at the folder itself
    image = ds.test_x[0]
    assert torch.all(image[0] == 1.0)
    assert image[1, 3, 7].item() == pytest.approx(200 / 255)
    assert image[1].sum().item() == pytest.approx(200 / 255)  # nowhere else, e.g. not at (7, 3)
    assert torch.allclose(image[2], torch.full((32, 32), 128 / 255))


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    train, test = cifar_data(4, 0), np.stack([marked_image(), cifar_data(1, 1)[0]])
    write_batch(folder / "train", train, [0, 99, 42, 7], b"fine_labels")
    write_batch(folder / "test", test, [55, 1], b"fine_labels")
    ds = load_dataset("cifar100", data_root=tmp_path)
    assert ds.num_classes == 100 and ds.train_x.shape == (4, 3, 32, 32)
    assert ds.train_y.tolist() == [0, 99, 42, 7] and ds.test_y.tolist() == [55, 1]
    assert ds.train_x[3, 2, 8, 1].item() == pytest.approx(train[3, 2048 + 8 * 32 + 1] / 255)
    assert ds.test_x[0, 1, 3, 7].item() == pytest.approx(200 / 255)


def test_cifar_missing_batch_names_path_and_layout(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    (folder / "data_batch_4").unlink()
    with pytest.raises(DataError) as error:
        load_dataset("cifar10", data_root=tmp_path)
    message = str(error.value)
    assert str(folder / "data_batch_4") in message
    assert "cifar-10-batches-py" in message and "test_batch" in message and "data_batch_1" in message


def test_cifar100_missing_names_layout(tmp_path):
    with pytest.raises(DataError) as error:
        load_dataset("cifar100", data_root=tmp_path)
    assert str(tmp_path / "cifar-100-python" / "train") in str(error.value)
    assert "cifar-100-python/{train,test}" in str(error.value)


def test_cifar_corrupt_pickle_names_file(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    (folder / "data_batch_2").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError) as error:
        load_dataset("cifar10", data_root=tmp_path)
    assert str(folder / "data_batch_2") in str(error.value)


def test_cifar_pickle_with_foreign_objects_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": datetime.date(2020, 1, 1)}))
    with pytest.raises(DataError, match="refusing to load datetime.date"):
        load_dataset("cifar10", data_root=tmp_path)


def test_cifar_wrong_data_shape(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    write_batch(folder / "test_batch", np.zeros((2, 1024), dtype=np.uint8), [0, 1], b"labels")
    with pytest.raises(DataError, match="expected uint8"):
        load_dataset("cifar10", data_root=tmp_path)


# --- names and arguments ---------------------------------------------------------------------------

def test_unknown_name_lists_valid_names():
    with pytest.raises(DataError) as error:
        load_dataset("imagenet")
    assert all(name in str(error.value)
               for name in ["digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "synthetic-cifar"])


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_disk_sets_need_data_root(name):
    with pytest.raises(DataError, match="--data-root is required"):
        load_dataset(name)


# --- digits ----------------------------------------------------------------------------------------

def sorted_rows(x: torch.Tensor) -> np.ndarray:
    rows = x.reshape(len(x), -1).numpy()
    return rows[np.lexsort(rows.T[::-1])]


def test_digits_split():
    from sklearn.datasets import load_digits

    ds = load_dataset()
    assert ds.name == "digits" and ds.input_shape == (1, 8, 8) and ds.num_classes == 10
    assert len(ds.train_x) == len(ds.train_y) == 1437 and len(ds.test_x) == len(ds.test_y) == 360
    assert ds.train_x.min().item() == 0.0 and ds.train_x.max().item() == 1.0
    assert ds.test_x.min().item() >= 0.0 and ds.test_x.max().item() <= 1.0
    # train + test is exactly sklearn's set (as a multiset of images), pixels / 16
    everything = torch.cat([ds.train_x, ds.test_x])
    reference = torch.from_numpy(load_digits().data.astype(np.float32) / 16)
    assert np.array_equal(sorted_rows(everything), sorted_rows(reference))
    # stratified: each class has 20% of its images in test, rounded either way
    class_sizes = np.bincount(load_digits().target)
    test_counts = np.bincount(ds.test_y.numpy(), minlength=10)
    assert np.all(test_counts > 0)
    assert np.all(np.abs(test_counts - 0.2 * class_sizes) <= 1)


def test_digits_split_follows_seed():
    first, again, other = load_dataset(seed=0), load_dataset(seed=0), load_dataset(seed=1)
    assert torch.equal(first.test_x, again.test_x) and torch.equal(first.train_y, again.train_y)
    assert not torch.equal(first.test_x, other.test_x)


# --- synthetic CIFAR-size set ----------------------------------------------------------------------

def test_synthetic_cifar_shapes_and_determinism():
    ds = load_dataset("synthetic-cifar")
    assert ds.train_x.shape == (2000, 3, 32, 32) and ds.test_x.shape == (500, 3, 32, 32)
    assert ds.train_x.dtype == torch.float32 and ds.num_classes == 10
    assert 0.0 <= ds.train_x.min().item() and ds.train_x.max().item() <= 1.0
    assert set(ds.train_y.tolist()) == set(range(10)) == set(ds.test_y.tolist())
    small = synthetic_cifar(n_train=20, n_test=10, seed=3)
    again = synthetic_cifar(n_train=20, n_test=10, seed=3)
    other = synthetic_cifar(n_train=20, n_test=10, seed=4)
    assert torch.equal(small.train_x, again.train_x) and torch.equal(small.test_y, again.test_y)
    assert not torch.equal(small.train_x, other.train_x)


def test_synthetic_cifar_classes_are_separable():
    """Nearest class mean on the training set beats chance (10%) by far on the test set."""
    ds = synthetic_cifar(n_train=1000, n_test=200, seed=0)
    means = torch.stack([ds.train_x[ds.train_y == k].mean(0) for k in range(10)]).flatten(1)
    predicted = torch.cdist(ds.test_x.flatten(1), means).argmin(1)
    assert (predicted == ds.test_y).float().mean().item() > 0.5


# --- batches ---------------------------------------------------------------------------------------

def test_batches_cover_every_sample_once():
    x, y = torch.arange(10.0).reshape(10, 1), torch.arange(10)
    plain = list(batches(x, y, 4))
    assert [len(b) for b, _ in plain] == [4, 4, 2]
    assert torch.cat([b for _, b in plain]).tolist() == list(range(10))
    shuffled = [b for _, b in batches(x, y, 4, shuffle=True, seed=5)]
    assert sorted(torch.cat(shuffled).tolist()) == list(range(10))
    assert torch.cat(shuffled).tolist() != list(range(10))
    assert all(torch.equal(xb[:, 0].long(), yb) for xb, yb in batches(x, y, 3, shuffle=True, seed=1))
    again = [b for _, b in batches(x, y, 4, shuffle=True, seed=5)]
    assert all(torch.equal(a, b) for a, b in zip(shuffled, again))
    with pytest.raises(ValueError, match="10 inputs but 9 labels"):
        next(batches(x, y[:9], 4))
