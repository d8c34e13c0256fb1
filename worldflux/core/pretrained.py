"""The checkpoint half of ``WorldModel``: ``save_pretrained``, ``from_pretrained``, ``push_to_hub`` and the loader of
``save_pretrained`` directories (``load_pretrained_directory``). File reading and writing live in
``worldflux.core.pretrained_io``.

``PretrainedMixin`` is one of ``WorldModel``'s bases (``worldflux.core.model``).
"""

from __future__ import annotations

import datetime
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worldflux.core.pretrained_io import (
    SAFETENSORS_FILE,
    read_config,
    read_meta,
    read_weights,
    save_pretrained_files,
    weights_file,
)

from .exceptions import CheckpointError, ConfigurationError

if TYPE_CHECKING:
    from .model import WorldModel

__all__ = ["PretrainedMixin", "load_pretrained_directory"]

SAVE_FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.pt"
META_FILE = "worldflux_meta.json"
_API_VERSIONS = ("v0.2", "v3")


def _model_class(model_type: str) -> Any:
    from .model import _model_class as lookup

    return lookup(model_type)


def _registered() -> list[str]:
    from .model import WorldModel

    return sorted(WorldModel._registry)


class PretrainedMixin:
    """Saving and loading methods of ``WorldModel`` (see the module docstring)."""

    # -- checkpoints ----------------------------------------------------------------------------------
    def save_pretrained(self, path: str) -> None:
        """Save model weights and config using a unified directory layout.

        Writes (each file atomically: a temporary file then ``os.replace``) ``config.json``
        (``config.to_dict()``, indent 2), ``model.safetensors`` and ``model.pt`` (the ``state_dict()`` with
        safetensors and with ``torch.save``, loadable with ``torch.load(..., weights_only=True)``) and
        ``worldflux_meta.json`` (``save_format_version``, ``worldflux_version``, ``api_version``, ``model_type``,
        ``contract_fingerprint``, ``created_at_utc``, ``weights_sha256``; indent 2, sorted keys, trailing
        newline). See ``worldflux.core.pretrained_io``.
        """
        meta = {
            "save_format_version": SAVE_FORMAT_VERSION,
            "worldflux_version": _worldflux_version(),
            "api_version": self._get_api_version(),
            "model_type": self.config.model_type,
            "contract_fingerprint": self.contract_fingerprint(),
            "created_at_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        save_pretrained_files(path, config=self.config.to_dict(), state_dict=self.state_dict(), meta=meta)

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs: Any) -> WorldModel:
        """Load a model from a ``save_pretrained`` directory (ours or the reference's), or build one from a
        ``"type:size"`` id / Hugging Face repo id (``"owner/name[@rev]"``, needs ``huggingface_hub``).

        Extra kwargs are ignored for local directories; for ``"type:size"`` ids they override config fields.

        Raises:
            CheckpointError: a corrupt or incompatible directory (the message names the path and the problem).
            TypeError: the loaded model is not an instance of the calling class.
        """
        path = Path(os.fspath(name_or_path))
        if path.is_dir():
            model = load_pretrained_directory(path, expected_class=cls)
        else:
            model = _from_model_id(str(name_or_path), **kwargs)
        if not isinstance(model, cls):
            raise TypeError(
                f"{cls.__name__}.from_pretrained({str(name_or_path)!r}) produced a {type(model).__name__}, "
                f"not a {cls.__name__}"
            )
        return model

    def push_to_hub(
        self,
        repo_id: str,
        *,
        token: str | None = None,
        private: bool | None = None,
        commit_message: str | None = None,
    ) -> str:
        """Upload ``save_pretrained`` files to the Hugging Face Hub; returns the commit URL.

        Raises:
            ImportError: ``huggingface_hub`` is not installed.
        """
        try:
            import huggingface_hub
        except ImportError as exc:
            raise ImportError("push_to_hub needs huggingface_hub: pip install huggingface_hub") from exc
        api = huggingface_hub.HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            info = api.upload_folder(
                repo_id=repo_id, folder_path=tmp, commit_message=commit_message or "Upload WorldFlux model"
            )
        return str(getattr(info, "commit_url", info))


def _worldflux_version() -> str:
    import worldflux

    return str(getattr(worldflux, "__version__", "0.1.1.dev0"))


def load_pretrained_directory(
    path: str | os.PathLike[str], expected_class: type[WorldModel] | None = None
) -> WorldModel:
    """Load a ``save_pretrained`` directory (ours or the reference's) into its model class.

    Steps: read ``config.json`` and build the config of its ``model_type``; check ``worldflux_meta.json`` when
    present (``save_format_version`` in {None, 1, "1"}, ``model_type`` equal to the config's,
    ``contract_fingerprint`` equal to the rebuilt model's, computed from the config alone); load
    ``model.safetensors`` (preferred) or ``model.pt`` (``torch.load(weights_only=True)``), verified against
    ``weights_sha256`` when the meta file lists it, strictly (every tensor present, none unknown, shapes equal);
    restore ``_wf_api_version`` from the meta file. No random initialization happens. File reading:
    ``worldflux.core.pretrained_io``.

    Raises:
        CheckpointError: any missing, unreadable or inconsistent file, naming `path` and the problem.
        TypeError: `expected_class` is given and the directory holds another model type.
    """
    root = Path(path)
    config_path = root / CONFIG_FILE
    data = read_config(root)
    model_type = str(data["model_type"])
    model_cls = _model_class(model_type)
    if model_cls is None:
        raise CheckpointError(
            f"Cannot load {root}: model_type {model_type!r} is not registered (known: {_registered()})"
        )
    if expected_class is not None and not issubclass(model_cls, expected_class):
        raise TypeError(
            f"{expected_class.__name__}.from_pretrained({str(root)!r}): the directory holds a {model_type!r} model "
            f"({model_cls.__name__}), not a {expected_class.__name__}"
        )
    try:
        config = model_cls.config_class().from_dict(data)
    except (ConfigurationError, TypeError, ValueError) as exc:
        raise CheckpointError(f"Invalid {config_path}: {exc}") from exc

    meta_path = root / META_FILE
    meta = read_meta(root)
    if meta:
        version = meta.get("save_format_version")
        if version not in (None, 1, "1"):
            raise CheckpointError(
                f"Unsupported save_format_version {version!r} in {meta_path} (supported: 1); the checkpoint is "
                "not compatible with the current runtime."
            )
        meta_type = meta.get("model_type")
        if meta_type is not None and meta_type != config.model_type:
            raise CheckpointError(
                f"model_type mismatch in {root}: {META_FILE} says {meta_type!r} but {CONFIG_FILE} says "
                f"{config.model_type!r}; the checkpoint is not compatible with the current runtime."
            )
        fingerprint = meta.get("contract_fingerprint")
        if fingerprint is not None:
            expected = model_cls.fingerprint_for_config(config)
            if fingerprint != expected:
                raise CheckpointError(
                    f"contract_fingerprint mismatch in {meta_path}: saved {fingerprint}, rebuilt model has "
                    f"{expected}; the checkpoint is not compatible with the current runtime."
                )

    weights_path = weights_file(root)
    state_dict = read_weights(root, meta)
    try:
        model = model_cls._from_state_dict(config, state_dict)
    except (CheckpointError, ValueError, TypeError) as exc:
        raise CheckpointError(f"Cannot load {weights_path}: {exc}") from exc
    api_version = meta.get("api_version")
    if api_version in _API_VERSIONS:
        model._wf_api_version = api_version
    return model


def _from_model_id(name: str, **kwargs: Any) -> WorldModel:
    """A fresh model for a "type:size" id or alias (kwargs override config fields), or a Hub repo id."""
    from worldflux.core.config import config_from_id, resolve_alias

    resolved = resolve_alias(name)
    if ":" in resolved:
        config = config_from_id(resolved, **kwargs)
        model_cls = _model_class(config.model_type)
        if model_cls is None:
            raise ValueError(
                f"No world model is registered for model_type {config.model_type!r} (known: "
                f"{_registered()})"
            )
        return model_cls(config)
    parts = resolved.split("@", 1)[0].split("/")
    if len(parts) == 2 and all(parts):
        return _from_hub(resolved, **kwargs)
    raise CheckpointError(
        f"Cannot load {name!r}: not an existing directory, a 'type:size' id (e.g. 'dreamerv3:size12m') or a "
        "Hugging Face repo id ('owner/name')"
    )


def _from_hub(repo: str, **kwargs: Any) -> WorldModel:
    try:
        import huggingface_hub
    except ImportError as exc:
        raise ImportError(
            f"Loading {repo!r} from the Hugging Face Hub needs huggingface_hub: pip install huggingface_hub"
        ) from exc
    repo_id, _, revision = repo.partition("@")
    hub_keys = ("token", "cache_dir", "local_files_only", "force_download")
    local = huggingface_hub.snapshot_download(
        repo_id,
        revision=kwargs.get("revision") or revision or "main",
        allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, SAFETENSORS_FILE, META_FILE],
        **{k: kwargs[k] for k in hub_keys if k in kwargs},
    )
    return load_pretrained_directory(local)
