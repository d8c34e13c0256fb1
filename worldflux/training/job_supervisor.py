"""Supervisor of one delegated training job (see ``worldflux.training.delegated``).

Run as a script by file path (``python .../job_supervisor.py JOB_DIR``) so that it starts without importing
``worldflux``: it reads ``JOB_DIR/job.json``, runs the job's command with stdout and stderr appended to its log
file, forwards SIGTERM / SIGINT to it (a signal that arrives before the command started stops the job before
it starts), and records ``child_pid``, ``started_at``, ``exit_code`` and ``ended_at`` in ``JOB_DIR/state.json``
(atomically; only this process writes that file).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

JOB_FILE = "job.json"
STATE_FILE = "state.json"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` atomically (temporary file in the same directory, then ``os.replace``)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def supervise(job_dir: Path) -> int:
    record = json.loads((job_dir / JOB_FILE).read_text(encoding="utf-8"))
    state: dict[str, Any] = {"child_pid": None, "started_at": None, "exit_code": None, "ended_at": None}
    received: list[int] = []
    child: subprocess.Popen[bytes] | None = None

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        if child is not None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    env = dict(os.environ)
    env.update(record.get("env") or {})
    env["PYTHONUNBUFFERED"] = "1"
    with open(record["log_path"], "ab", buffering=0) as log:
        if received:
            code = 128 + received[0]
        else:
            try:
                child = subprocess.Popen(record["command"], stdout=log, stderr=subprocess.STDOUT, env=env)
            except OSError as exc:
                log.write(f"cannot start {record['command'][0]!r}: {exc}\n".encode())
                code = 127
            else:
                state.update(child_pid=child.pid, started_at=time.time())
                write_json(job_dir / STATE_FILE, state)
                if received:  # a signal that arrived while the child was starting
                    child.send_signal(received[0])
                code = child.wait()
    state.update(exit_code=int(code), ended_at=time.time())
    write_json(job_dir / STATE_FILE, state)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: job_supervisor.py JOB_DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(supervise(Path(sys.argv[1])))
