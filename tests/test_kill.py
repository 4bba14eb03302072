"""Kill tests: `spikeport train --state` and `spikeport convert` killed with SIGKILL at random points leave the
previous good file or none, never a partial one, and a resumed training ends bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import pytest
import torch

from benchmarks.killruns import run_kill_convert, run_kill_midwrite, run_kill_train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from pipeline.data.zoo import build_model
    from pipeline.training.ann import save_checkpoint
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("kill") / "ann.pt"
    return save_checkpoint(path, build_model("digits-cnn", (1, 8, 8), 10), model_name="digits-cnn",
                           input_shape=(1, 8, 8), num_classes=10)


def test_killed_training_resumes_bit_identical(tmp_path):
    result = run_kill_train(tmp_path, epochs=10, kills=1, seed=0)
    assert result["kills"] >= 1 and result["identical"], result


def test_killed_writer_leaves_the_previous_file(tmp_path):
    assert run_kill_midwrite(tmp_path, kills=3, seed=0)["killed mid-write"] == 3


def test_killed_convert_leaves_the_previous_or_a_complete_file(tmp_path, checkpoint):
    outcomes = run_kill_convert(tmp_path, checkpoint, kills=1, seed=0)
    assert sum(outcomes.values()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_killed_training_many_times(tmp_path, seed):
    result = run_kill_train(tmp_path, epochs=60, kills=6, seed=seed, window=0.4)
    assert result["kills"] >= 3 and result["identical"], result


@pytest.mark.slow
def test_killed_convert_many_times(tmp_path, checkpoint):
    outcomes = run_kill_convert(tmp_path, checkpoint, kills=10, seed=1)
    assert sum(outcomes.values()) == 10
