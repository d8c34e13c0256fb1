"""Repository-level pytest configuration.

Puts the repo root on sys.path (for `benchmarks.*`), and turns on JAX's persistent compilation cache
for the test run: many tests build the same tiny models in fresh objects, and identical programs then
compile once per run instead of once per test.
"""

from __future__ import annotations

import os
import tempfile

import jax

_CACHE = os.environ.get("WORLDFLUX_TEST_JAX_CACHE") or os.path.join(tempfile.gettempdir(), "worldflux-jax-test-cache")
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def pytest_addoption(parser) -> None:  # type: ignore[no-untyped-def]
    parser.addoption(
        "--heavy",
        action="store_true",
        default=False,
        help="also run the `heavy` proofs: multi-device / multi-process runs in subprocesses that take minutes "
        "each on a 2-core CPU (they compile several programs from scratch)",
    )


def pytest_xdist_auto_num_workers(config) -> int:  # type: ignore[no-untyped-def]
    """``-n auto``: one worker per CPU, at most 4 (each worker keeps its compiled programs, ~3 GB by the end)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, 4))


def pytest_collection_modifyitems(config, items) -> None:  # type: ignore[no-untyped-def]
    if config.getoption("--heavy") or os.environ.get("WORLDFLUX_HEAVY_TESTS") == "1":
        return
    import pytest

    skip = pytest.mark.skip(reason="heavy subprocess proof (minutes on a 2-core CPU): run with `pytest --heavy`")
    for item in items:
        if "heavy" in item.keywords:
            item.add_marker(skip)
