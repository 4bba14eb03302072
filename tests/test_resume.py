"""Resumable training: an interrupted and resumed run ends with the same weights, bit for bit."""
from __future__ import annotations

import pytest
import torch

import pipeline.training.ann as train_mod
from pipeline.errors import SpikeportError
from pipeline.data.zoo import build_model
from pipeline.training.ann import TrainConfig, seed_everything, train_ann


def _fresh(digits):
    seed_everything(0)
    return build_model("digits-cnn", digits.input_shape, digits.num_classes)


def _train(digits, model, cfg, **kw):
    n = 256  # a small slice keeps the test fast; the loop is the same
    return train_ann(model, digits.train_x[:n], digits.train_y[:n], digits.test_x[:64], digits.test_y[:64], cfg,
                     progress=False, **kw)


@pytest.mark.parametrize("augment", ["none", "crop-flip"])   # augmentation draws from the saved generator
def test_interrupted_run_resumes_to_identical_weights(digits, tmp_path, monkeypatch, augment):
    cfg = TrainConfig(epochs=4, seed=3, augment=augment)
    reference = _fresh(digits)
    expected = _train(digits, reference, cfg)

    calls = {"n": 0}
    real_evaluate = train_mod.evaluate

    def evaluate_then_crash(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed during epoch 3: the state file holds epoch 2
        return real_evaluate(*args, **kwargs)

    state = tmp_path / "state.pt"
    monkeypatch.setattr(train_mod, "evaluate", evaluate_then_crash)
    with pytest.raises(KeyboardInterrupt):
        _train(digits, _fresh(digits), cfg, state_path=state)
    monkeypatch.setattr(train_mod, "evaluate", real_evaluate)
    assert torch.load(state, weights_only=True)["epoch"] == 2

    torch.manual_seed(1234)  # the resumed run must not depend on the RNG state it starts with
    resumed_model = _fresh(digits)
    resumed = _train(digits, resumed_model, cfg, state_path=state)
    assert [e["epoch"] for e in resumed.epochs] == [1, 2, 3, 4]
    assert resumed.epochs == expected.epochs
    for (name, a), (_, b) in zip(reference.state_dict().items(), resumed_model.state_dict().items()):
        assert torch.equal(a, b), name


def test_state_from_other_settings_is_refused(digits, tmp_path):
    state = tmp_path / "state.pt"
    _train(digits, _fresh(digits), TrainConfig(epochs=1, seed=0), state_path=state)
    with pytest.raises(SpikeportError, match="other settings"):
        _train(digits, _fresh(digits), TrainConfig(epochs=2, seed=0), state_path=state)
    with pytest.raises(SpikeportError, match="other settings"):
        _train(digits, _fresh(digits), TrainConfig(epochs=1, seed=0, augment="crop"), state_path=state)


def test_corrupt_state_names_the_file(digits, tmp_path):
    state = tmp_path / "state.pt"
    state.write_bytes(b"not a torch file")
    with pytest.raises(SpikeportError, match=r"state\.pt cannot be read"):
        _train(digits, _fresh(digits), TrainConfig(epochs=1), state_path=state)
