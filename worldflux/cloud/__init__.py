"""WorldFlux Cloud interfaces (reference ``worldflux.cloud``): project cloud defaults, local credentials and a
JSON-over-HTTP API client. (The reference's ``ModalBackend``, which launches jobs on Modal, is not provided.)"""

from __future__ import annotations

from .auth import credentials_path, get_api_key, load_credentials, save_credentials, set_api_key
from .client import CloudAPIError, WorldFluxCloudClient
from .config import CloudConfig, FlywheelConfig

__all__ = [
    "CloudAPIError",
    "CloudConfig",
    "FlywheelConfig",
    "WorldFluxCloudClient",
    "credentials_path",
    "get_api_key",
    "load_credentials",
    "save_credentials",
    "set_api_key",
]
