"""World-model classes. Attribute access imports the model module on demand, so importing
``worldflux.models`` (or its ``registry``) does not build anything::

    from worldflux.models import DreamerV3WorldModel, TDMPC2WorldModel
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DiffusionWorldModel",
    "DreamerV3WorldModel",
    "JEPABaseWorldModel",
    "TDMPC2WorldModel",
    "TokenWorldModel",
    "VJEPA2WorldModel",
]

_EXPORTS = {
    "DreamerV3WorldModel": "worldflux.models.dreamer",
    "TDMPC2WorldModel": "worldflux.models.tdmpc2",
    "JEPABaseWorldModel": "worldflux.models.experimental",
    "VJEPA2WorldModel": "worldflux.models.experimental",
    "TokenWorldModel": "worldflux.models.experimental",
    "DiffusionWorldModel": "worldflux.models.experimental",
    "DiTSkeletonWorldModel": "worldflux.models.skeletons",
    "SSMSkeletonWorldModel": "worldflux.models.skeletons",
    "Renderer3DSkeletonWorldModel": "worldflux.models.skeletons",
    "PhysicsSkeletonWorldModel": "worldflux.models.skeletons",
    "GANSkeletonWorldModel": "worldflux.models.skeletons",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'worldflux.models' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
