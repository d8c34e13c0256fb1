"""``worldflux verify --quick`` runs ``worldflux.verify.run_quick_checks`` (the checks live in the ``verify``
package so that code can call them without the CLI)."""

from __future__ import annotations

from worldflux.verify.quick import run_quick_checks

__all__ = ["run_quick_checks"]
