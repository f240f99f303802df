"""Azure identity: one credential per process, and cached access tokens for it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

STORAGE_SCOPE = "https://storage.azure.com/.default"


@lru_cache(maxsize=4)
def get_credential(client_id: str | None = None) -> Any:
    """Managed identity when a client id is given, else the default chain (CLI, env, managed identity)."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if client_id:
        return ManagedIdentityCredential(client_id=client_id)
    return DefaultAzureCredential()


def token_provider(credential: Any, scope: str, refresh_margin_s: float = 300.0) -> Callable[[], str]:
    """A thread-safe callable returning a token for ``scope``, renewed shortly before it expires."""
    lock = threading.Lock()
    cached: dict[str, Any] = {"token": None, "expires_on": 0.0}

    def get() -> str:
        with lock:
            if cached["token"] is None or cached["expires_on"] - refresh_margin_s < time.time():
                token = credential.get_token(scope)
                cached["token"], cached["expires_on"] = token.token, float(token.expires_on)
            return str(cached["token"])

    return get
