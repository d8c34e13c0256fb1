"""`ModelOutput` / `WorldModelOutput` (reference §3.3) and `LossOutput` (§3.4)."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from worldflux.core import (
    LossOutput,
    ModalityKind,
    ModalitySpec,
    ModelOutput,
    PredictionSpec,
    ShapeMismatchError,
    State,
    WorldModelOutput,
)
from worldflux.core.output import DeferredLossOutput


def test_predictions_is_canonical_and_preds_is_a_read_write_alias():
    reward = torch.zeros(2, 1)
    out = ModelOutput(predictions={"reward": reward})
    assert out.preds is out.predictions and out.preds["reward"] is reward
    replacement = {"continue": torch.ones(2, 1)}
    out.preds = replacement
    assert out.predictions is replacement


def test_legacy_preds_keyword_is_used_when_predictions_is_empty():
    legacy = ModelOutput(preds={"obs": torch.zeros(2, 3)})
    assert list(legacy.predictions) == ["obs"]
    both = ModelOutput(predictions={"reward": torch.zeros(2, 1)}, preds={"obs": torch.zeros(2, 3)})
    assert list(both.predictions) == ["reward"]
    assert ModelOutput().predictions == {} and ModelOutput().aux == {}
    assert ModelOutput().state is None and ModelOutput().uncertainty is None


def test_items_iterates_predictions():
    out = ModelOutput(predictions={"obs": torch.zeros(2, 3), "reward": torch.zeros(2, 1)})
    assert [name for name, _ in out.items()] == ["obs", "reward"]


def test_world_model_output_is_a_model_output():
    out = WorldModelOutput(preds={"reward": torch.zeros(1, 1)})
    assert isinstance(out, ModelOutput) and "reward" in out.predictions


def test_validate_checks_prediction_and_state_batch_sizes():
    ModelOutput(
        predictions={"obs": torch.zeros(2, 3), "reward": torch.zeros(2, 1)},
        state=State(tensors={"latent": torch.zeros(2, 4)}),
    ).validate()
    with pytest.raises(
        ShapeMismatchError, match=r"Prediction 'reward' batch size mismatch \(expected \(2,\), got \(3,\)\)"
    ):
        ModelOutput(predictions={"obs": torch.zeros(2, 3), "reward": torch.zeros(3, 1)}).validate()
    with pytest.raises(ShapeMismatchError, match="state/predictions batch size mismatch"):
        ModelOutput(predictions={"obs": torch.zeros(2, 3)}, state=State(tensors={"z": torch.zeros(5, 1)})).validate()


def test_validate_requires_every_prediction_spec_key():
    spec = PredictionSpec(tensors={"reward": ModalitySpec(kind=ModalityKind.VECTOR, shape=(1,))})
    ModelOutput(predictions={"reward": torch.zeros(2, 1)}, prediction_spec=spec).validate()
    with pytest.raises(ShapeMismatchError, match="Prediction spec requires missing key: reward"):
        ModelOutput(predictions={"obs": torch.zeros(2, 1)}, prediction_spec=spec).validate()


def test_loss_output_items_yield_total_loss_first_then_components():
    loss = LossOutput(
        loss=torch.tensor(3.0),
        components={"reconstruction": torch.tensor(1.0), "kl": torch.tensor(2.0)},
        metrics={"reconstruction": 1.0, "kl": 2.0},
    )
    assert [name for name, _ in loss.items()] == ["loss", "reconstruction", "kl"]
    assert dict(loss.items())["loss"].item() == 3.0
    bare = LossOutput(loss=torch.tensor(0.5))
    assert bare.components == {} and bare.metrics == {} and list(dict(bare.items())) == ["loss"]


def test_deferred_loss_output_produces_each_field_once_on_its_first_read():
    calls = []
    loss, components = torch.tensor(3.0), {"a": torch.tensor(1.0), "b": torch.tensor(2.0)}

    def producer(name, value):
        def produce():
            calls.append(name)
            return value

        return produce

    out = DeferredLossOutput(
        producer("loss", loss), producer("components", components), producer("metrics", {"a": 1.0, "b": 2.0})
    )
    assert calls == [] and isinstance(out, LossOutput)
    assert out.metrics == {"a": 1.0, "b": 2.0} and calls == ["metrics"]
    assert out.loss is loss and out.loss is loss and calls == ["metrics", "loss"]
    assert out.components is components and calls == ["metrics", "loss", "components"]
    assert [k for k, _ in out.items()] == ["loss", "a", "b"] and len(calls) == 3
    with pytest.raises(AttributeError, match="no attribute 'other'"):
        _ = out.other


def test_deferred_loss_output_field_set_before_reading_wins():
    out = DeferredLossOutput(lambda: torch.tensor(1.0), dict, dict)
    out.loss = torch.tensor(5.0)
    assert float(out.loss) == 5.0 and out.components == {}


def test_deferred_loss_output_pickles_and_copies_as_a_plain_loss_output():
    out = DeferredLossOutput(lambda: torch.tensor(3.0), lambda: {"a": torch.tensor(3.0)}, lambda: {"a": 3.0})
    for clone in (pickle.loads(pickle.dumps(out)), copy.copy(out), copy.deepcopy(out)):
        assert type(clone) is LossOutput and float(clone.loss) == 3.0 and clone.metrics == {"a": 3.0}
