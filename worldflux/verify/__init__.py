"""Model verification (reference ``worldflux.verify``).

* ``quick_verify(target, ...) -> QuickVerifyResult`` — load a saved model and check its imagination (finite,
  and non-inferior to a baseline when one is given); see ``worldflux.verify.model_check``.
* ``run_quick_checks(project) -> [(name, passed, detail)]`` — what ``worldflux verify --quick`` runs: build,
  train a few steps, save/load round trip; see ``worldflux.verify.quick``.
"""

from __future__ import annotations

from .model_check import PROTOCOL_VERSION, QuickVerifyResult, quick_verify
from .quick import run_quick_checks

__all__ = ["PROTOCOL_VERSION", "QuickVerifyResult", "quick_verify", "run_quick_checks"]
