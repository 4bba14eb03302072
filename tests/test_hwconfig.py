"""Tests of the hardware targets: every number in a hwconfig cites its source, and broken files fail on
load with one line naming the file and the key."""
from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from pipeline.hardware.hwconfig import HwConfigError, available_targets, load_hwconfig

HWCONFIGS = Path(__file__).resolve().parents[1] / "hwconfigs"
CMOS45NM = HWCONFIGS / "cmos45nm.toml"
ASSIGNMENT = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=\s*([^#]*?)\s*(#.*)?$")
# A source is a name followed by a year ("Horowitz ISSCC 2014", "Intel 2021") or a version ("lava-nc 0.10.0").
SOURCE = re.compile(r"\b[A-Za-z][A-Za-z-]+\b.*(\b(19|20)\d\d\b|\b\d+\.\d+\.\d+\b)")


def _is_number(text: str) -> bool:
    try:
        float(text.replace("_", ""))
    except ValueError:
        return False
    return True


def _unsourced_numbers(path: Path) -> list[str]:
    """`key = number` lines whose own comment, or the comment line just above, names no source."""
    lines = path.read_text(encoding="utf-8").splitlines()
    missing = []
    for i, line in enumerate(lines):
        match = ASSIGNMENT.match(line)
        if not match or not _is_number(match.group(2)):
            continue
        previous = lines[i - 1].strip() if i else ""
        comments = [match.group(3) or "", previous if previous.startswith("#") else ""]
        if not any(SOURCE.search(c) for c in comments):
            missing.append(f"{path.name}:{i + 1}: {line.strip()}")
    return missing


@pytest.mark.parametrize("path", sorted(HWCONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_every_number_cites_its_source(path):
    assert _unsourced_numbers(path) == []


def test_the_source_check_catches_a_bare_number(tmp_path):
    bare = tmp_path / "bare.toml"
    bare.write_text('[energy]\nmac_pj = 4.6  # Horowitz ISSCC 2014\nac_pj = 0.9\n')
    assert _unsourced_numbers(bare) == ["bare.toml:3: ac_pj = 0.9"]


def test_cmos45nm_holds_the_papers_constants():
    hw = load_hwconfig("cmos45nm")
    raw = tomllib.loads(CMOS45NM.read_text())
    assert (hw.energy.mac_pj, hw.energy.ac_pj) == (raw["energy"]["mac_pj"], raw["energy"]["ac_pj"]) == (4.6, 0.9)
    assert hw.arithmetic["fp32_mult_pj"] + hw.arithmetic["fp32_add_pj"] == pytest.approx(hw.energy.mac_pj)
    assert hw.energy.neuron_update_pj == raw["energy"]["neuron_update_pj"]
    assert hw.energy.neuron_update_pj == pytest.approx(3 * hw.arithmetic["fp32_add_pj"])  # docs/energy.md


def test_name_and_path_load_the_same_target():
    assert load_hwconfig("cmos45nm") == load_hwconfig(CMOS45NM) == load_hwconfig(str(CMOS45NM))
    assert {"cmos45nm", "loihi", "loihi2"} <= set(available_targets())


def test_loihi2_has_formats_and_no_energy_table():
    hw = load_hwconfig("loihi2")
    assert hw.energy is None and hw.formats["weight_bits"] == 8 and hw.cores["cores_per_chip"] == 128


def test_hwconfig_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_hwconfig("cmos45nm").name = "other"


def test_unknown_target_lists_available_ones():
    with pytest.raises(HwConfigError) as err:
        load_hwconfig("tpu9000")
    assert "tpu9000" in str(err.value) and all(name in str(err.value) for name in available_targets())


BROKEN = {
    "missing key": (lambda t: t.replace("ac_pj = 0.9", ""), "energy.ac_pj"),
    "negative energy": (lambda t: t.replace("mac_pj = 4.6", "mac_pj = -4.6"), "energy.mac_pj"),
    "string energy": (lambda t: t.replace("mac_pj = 4.6", 'mac_pj = "4.6"'), "energy.mac_pj"),
    "boolean energy": (lambda t: t.replace("ac_pj = 0.9", "ac_pj = true"), "energy.ac_pj"),
    "float bit width": (lambda t: t.replace("access_bits = 64", "access_bits = 64.0"), "memory.access_bits"),
    "misspelt key": (lambda t: t.replace("ac_pj = 0.9", "ac_pJ = 0.9"), "energy.ac_pJ"),
    "unknown section": (lambda t: t + "\n[power]\nwatts = 1.0\n", "[power]"),
    "missing target name": (lambda t: t.replace('name = "cmos45nm"', ""), "target.name"),
    "name differs from file": (lambda t: t.replace('name = "cmos45nm"', 'name = "other"'), "target.name"),
    "not TOML": (lambda t: t + "\nmac_pj = = 1\n", "not valid TOML"),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_broken_file_names_the_file_and_key(tmp_path, case):
    edit, key = BROKEN[case]
    path = tmp_path / "cmos45nm.toml"
    path.write_text(edit(CMOS45NM.read_text()))
    with pytest.raises(HwConfigError) as err:
        load_hwconfig(path)
    message = str(err.value)
    assert key in message and str(path) in message and "\n" not in message


LOIHI2 = HWCONFIGS / "loihi2.toml"
BROKEN_FORMATS = {
    "float exponent": (lambda t: t.replace("weight_exp_min = -8", "weight_exp_min = -8.0"), "formats.weight_exp_min"),
    "exponent range upside down": (lambda t: t.replace("weight_exp_max = 7", "weight_exp_max = -9"),
                                   "formats.weight_exp_min"),
    "zero threshold bits": (lambda t: t.replace("threshold_bits = 17", "threshold_bits = 0"), "formats.threshold_bits"),
    "sharing as a number": (lambda t: t.replace("conv_weight_sharing = true", "conv_weight_sharing = 1"),
                            "cores.conv_weight_sharing"),
    "misspelt core key": (lambda t: t.replace("neurons_per_core =", "neuron_per_core ="), "cores.neuron_per_core"),
}


@pytest.mark.parametrize("case", BROKEN_FORMATS, ids=list(BROKEN_FORMATS))
def test_broken_fixed_point_target_names_the_key(tmp_path, case):
    edit, key = BROKEN_FORMATS[case]
    path = tmp_path / "loihi2.toml"
    path.write_text(edit(LOIHI2.read_text()))
    with pytest.raises(HwConfigError) as err:
        load_hwconfig(path)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_fixed_point_targets_and_a_float_target():
    for name in ("loihi", "loihi2"):
        fmt = load_hwconfig(name).fixed_point_formats()
        assert (fmt["weight_bits"], fmt["state_bits"], fmt["threshold_bits"]) == (8, 24, 17)
    assert load_hwconfig("loihi").energy.ac_pj == 23.6   # Davies 2018 Table 2, simulated
    with pytest.raises(HwConfigError, match="no key 'formats.weight_bits'"):
        load_hwconfig("cmos45nm").fixed_point_formats()
