"""The ``worldflux`` command line: ``worldflux init``, ``train``, ``eval``, ``models``, ``doctor``, ``verify``
and ``config schema`` (also ``python -m worldflux``). See :mod:`worldflux.cli.app`."""

from __future__ import annotations

from .app import app, main

__all__ = ["app", "main"]
