"""``WorldFluxCloudClient``: JSON over HTTP(S) to a WorldFlux Cloud API (``/v1/jobs``, ``/v1/verify``).

Requests carry ``Authorization: Bearer <api key>`` when a key is set. Failures (HTTP errors, unreachable
host, a response that is not a JSON object) raise ``CloudAPIError`` naming the method, path and status.
``from_env()`` reads ``WORLDFLUX_CLOUD_API_URL`` (default ``https://api.worldflux.ai``),
``WORLDFLUX_CLOUD_API_KEY`` (else the stored key, ``worldflux.cloud.auth``) and ``WORLDFLUX_CLOUD_TIMEOUT_SEC``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib import error, parse, request

from worldflux.core.safe_io import write_json_atomic

from .auth import get_api_key, set_api_key

__all__ = ["DEFAULT_API_URL", "CloudAPIError", "WorldFluxCloudClient"]

DEFAULT_API_URL = "https://api.worldflux.ai"


class CloudAPIError(RuntimeError):
    """A WorldFlux Cloud request failed; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class WorldFluxCloudClient:
    """A small JSON-over-HTTP client (see the module docstring).

    Raises:
        ValueError: `base_url` is not an http(s) URL, or `timeout_sec` is not positive.
    """

    def __init__(self, *, base_url: str, api_key: str | None = None, timeout_sec: int = 30) -> None:
        parsed = parse.urlparse(str(base_url))
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if isinstance(timeout_sec, bool) or not isinstance(timeout_sec, int | float) or timeout_sec <= 0:
            raise ValueError(f"timeout_sec must be positive, got {timeout_sec!r}")
        self.base_url = str(base_url).rstrip("/")
        self.api_key = api_key
        self.timeout_sec = timeout_sec

    @classmethod
    def from_env(cls) -> WorldFluxCloudClient:
        """A client configured from the environment and the stored credentials."""
        return cls(
            base_url=os.environ.get("WORLDFLUX_CLOUD_API_URL", DEFAULT_API_URL),
            api_key=os.environ.get("WORLDFLUX_CLOUD_API_KEY") or get_api_key(),
            timeout_sec=int(os.environ.get("WORLDFLUX_CLOUD_TIMEOUT_SEC", "30")),
        )

    def login(self, *, api_key: str) -> None:
        """Use `api_key` and store it for later sessions."""
        set_api_key(api_key)
        self.api_key = api_key.strip()

    def request_json(
        self, method: str, path: str, *, payload: dict[str, Any] | None = None, query: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Send one request (`payload` as a JSON body, `query` as URL parameters); returns the JSON object."""
        url = f"{self.base_url}{path}"
        if query:
            url += "?" + parse.urlencode({k: v for k, v in query.items() if v is not None}, doseq=True)
        headers = {"Accept": "application/json"}
        body = None
        if payload is not None:
            body = json.dumps(payload).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        what = f"{method.upper()} {path}"
        req = request.Request(url, data=body, method=method.upper(), headers=headers)
        try:
            with request.urlopen(req, timeout=self.timeout_sec) as response:  # noqa: S310 - http(s) checked above
                raw = response.read().decode("utf-8")
        except error.HTTPError as exc:
            detail = exc.read().decode("utf-8", errors="replace") if exc.fp else str(exc)
            raise CloudAPIError(f"Cloud API request failed ({what}, status={exc.code}): {detail}", exc.code) from exc
        except (error.URLError, OSError) as exc:
            raise CloudAPIError(f"Cloud API request failed ({what}): {exc}") from exc
        try:
            parsed = json.loads(raw or "{}")
        except json.JSONDecodeError as exc:
            raise CloudAPIError(f"Cloud API returned invalid JSON for {what}: {exc}") from exc
        if not isinstance(parsed, dict):
            raise CloudAPIError(f"Cloud API returned a {type(parsed).__name__}, not a JSON object, for {what}")
        return parsed

    def create_training_job(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self.request_json("POST", "/v1/jobs", payload=payload)

    def list_jobs(self) -> list[dict[str, Any]]:
        jobs = self.request_json("GET", "/v1/jobs").get("jobs", [])
        return [job for job in jobs if isinstance(job, dict)] if isinstance(jobs, list) else []

    def get_job_logs(self, job_id: str, *, limit: int = 200) -> list[str]:
        logs = self.request_json("GET", f"/v1/jobs/{parse.quote(job_id)}/logs", query={"limit": limit}).get("logs")
        return [str(line) for line in logs] if isinstance(logs, list) else []

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self.request_json("DELETE", f"/v1/jobs/{parse.quote(job_id)}")

    def verify_cloud(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self.request_json("POST", "/v1/verify", payload=payload)

    def pull_job_artifacts(self, job_id: str, *, output_dir: str | os.PathLike[str]) -> dict[str, Any]:
        """Fetch the job's artifact index and save it as ``<output_dir>/<job_id>.artifacts.json``."""
        index = self.request_json("GET", f"/v1/jobs/{parse.quote(job_id)}/artifacts")
        path = write_json_atomic(Path(output_dir) / f"{job_id}.artifacts.json", index, sort_keys=True,
                                 trailing_newline=True)
        return {"manifest": str(path.resolve()), "artifact_index": index}
