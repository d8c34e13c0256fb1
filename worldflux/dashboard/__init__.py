"""The local training dashboard: a web page on loopback with live loss curves, throughput, episode returns,
the current phase, recent environment frames and imagined-vs-real traces.

    state = DashboardState(title="demo")
    server = DashboardServer(state, port=8765)           # http://127.0.0.1:8765/
    trainer = Trainer(model, config, callbacks=[DashboardCallback(state)])

``worldflux train`` sets this up from the ``[visualization]`` and ``[gameplay]`` sections of worldflux.toml.
"""

from __future__ import annotations

from .callback import DashboardCallback
from .server import LOOPBACK_HOSTS, DashboardServer, free_port
from .state import PHASES, DashboardState

__all__ = ["DashboardCallback", "DashboardServer", "DashboardState", "LOOPBACK_HOSTS", "PHASES", "free_port"]
