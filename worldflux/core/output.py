"""Model output and loss containers."""

from __future__ import annotations

from collections.abc import Callable, ItemsView
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from .deferred import produce_field
from .exceptions import ShapeMismatchError
from .spec import PredictionSpec, SequenceLayout
from .state import State

__all__ = ["DeferredLossOutput", "LossOutput", "ModelOutput", "WorldModelOutput"]


@dataclass(init=False)
class ModelOutput:
    """Standardized model output: ``predictions`` maps names to tensors [B, ...].

    ``preds`` is a read/write alias of ``predictions``; the constructor also accepts the legacy keyword
    ``preds=`` (used when ``predictions`` is empty or None).

    Example:
        >>> out = ModelOutput(preds={"reward": torch.zeros(2, 1)})
        >>> out.predictions["reward"].shape
        torch.Size([2, 1])
    """

    predictions: dict[str, Tensor] = field(default_factory=dict)
    state: State | None = None
    uncertainty: Tensor | None = None
    aux: dict[str, Any] = field(default_factory=dict)
    prediction_spec: PredictionSpec | None = None
    sequence_layout: SequenceLayout | None = None

    def __init__(
        self,
        predictions: dict[str, Tensor] | None = None,
        state: State | None = None,
        uncertainty: Tensor | None = None,
        aux: dict[str, Any] | None = None,
        prediction_spec: PredictionSpec | None = None,
        sequence_layout: SequenceLayout | None = None,
        preds: dict[str, Tensor] | None = None,
    ) -> None:
        self.predictions = dict(predictions or preds or {})
        self.state = state
        self.uncertainty = uncertainty
        self.aux = dict(aux or {})
        self.prediction_spec = prediction_spec
        self.sequence_layout = sequence_layout

    @property
    def preds(self) -> dict[str, Tensor]:
        """Backward-compatible alias for ``predictions``."""
        return self.predictions

    @preds.setter
    def preds(self, value: dict[str, Tensor]) -> None:
        self.predictions = value

    def items(self) -> ItemsView[str, Tensor]:
        """Iterate over ``(name, prediction)`` pairs."""
        return self.predictions.items()

    def validate(self) -> None:
        """Check that predictions share dim 0, that ``state`` has the same batch size, and that every
        ``prediction_spec`` key is present.

        Raises:
            ShapeMismatchError: naming the offending prediction/key.
        """
        batch: int | None = None
        for name, tensor in self.predictions.items():
            if tensor.dim() == 0:
                raise ShapeMismatchError(f"Prediction '{name}' is a scalar; expected a leading batch axis")
            if batch is None:
                batch = int(tensor.shape[0])
            elif int(tensor.shape[0]) != batch:
                raise ShapeMismatchError(
                    f"Prediction '{name}' batch size mismatch", expected=(batch,), got=(int(tensor.shape[0]),)
                )
        if batch is not None and self.state is not None and self.state.tensors:
            state_batch = self.state.batch_size
            if state_batch != batch:
                raise ShapeMismatchError(
                    "ModelOutput state/predictions batch size mismatch", expected=(batch,), got=(state_batch,)
                )
        if self.prediction_spec is not None:
            for key in self.prediction_spec.tensors:
                if key not in self.predictions:
                    raise ShapeMismatchError(
                        f"Prediction spec requires missing key: {key} (present: {sorted(self.predictions)})"
                    )


class WorldModelOutput(ModelOutput):
    """Universal-API name of ``ModelOutput`` (identical behaviour)."""


@dataclass
class LossOutput:
    """Standardized loss container: scalar ``loss``, named ``components`` and float ``metrics``."""

    loss: Tensor
    components: dict[str, Tensor] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    def items(self) -> ItemsView[str, Tensor]:
        """Compatibility helper for iterating over losses: ``("loss", loss)`` then the components."""
        return {"loss": self.loss, **self.components}.items()


class DeferredLossOutput(LossOutput):
    """A ``LossOutput`` whose fields are produced on first access, each by its own function.

    ``WorldModel.loss`` returns one so that the call returns as soon as the computation is dispatched.
    Handing a result to torch (a view of its buffer) and reading float metrics both wait for the computation;
    doing that eagerly would serialise a caller's next dispatch (a rollout, the next batch) behind the
    loss. Reading ``loss``, ``components`` or ``metrics`` gives exactly what a ``LossOutput`` holds; a field
    never read is never built (reading ``loss`` alone skips the per-term views and the float metrics).
    Pickling or copying yields a plain ``LossOutput``.

    Args:
        loss: returns the scalar loss; called once, on the first access of ``loss``.
        components: returns the named terms; called once, on the first access of ``components``.
        metrics: returns the float metrics; called once, on the first access of ``metrics``.
    """

    def __init__(
        self,
        loss: Callable[[], Tensor],
        components: Callable[[], dict[str, Tensor]],
        metrics: Callable[[], dict[str, float]],
    ) -> None:
        self.__dict__["_producers"] = {"loss": loss, "components": components, "metrics": metrics}

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not set yet, i.e. the fields before their first access.
        return produce_field(self, name)

    def __reduce__(self) -> tuple[type[LossOutput], tuple[Any, ...]]:
        return LossOutput, (self.loss, self.components, self.metrics)
