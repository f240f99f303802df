"""Function keys as Azure enforces them: ``x-functions-key`` header or ``code`` query parameter.

ANONYMOUS needs no key; FUNCTION accepts a function key or the master key;
ADMIN accepts only the master key. With no key configured at all the host is
open, like ``func start``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

import azure.functions as func

from core.settings import LocalHostSettings


@dataclass(frozen=True)
class KeyRing:
    master_key: str | None
    function_keys: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: LocalHostSettings) -> KeyRing:
        master = settings.local_host_master_key.get_secret_value() if settings.local_host_master_key else None
        keys = tuple(k.strip() for k in settings.local_host_function_keys.split(",") if k.strip())
        return cls(master or None, keys)

    @property
    def enforced(self) -> bool:
        return bool(self.master_key or self.function_keys)

    def allows(self, auth_level: func.AuthLevel, presented: str | None) -> bool:
        """Whether a request presenting ``presented`` may call a function of ``auth_level``."""
        if not self.enforced or auth_level == func.AuthLevel.ANONYMOUS:
            return True
        if not presented:
            return False
        given = presented.encode()  # bytes: compare_digest refuses non-ASCII str
        if self.master_key and hmac.compare_digest(given, self.master_key.encode()):
            return True
        if auth_level == func.AuthLevel.ADMIN:
            return False
        return any(hmac.compare_digest(given, key.encode()) for key in self.function_keys)


def presented_key(headers: dict[str, str], query: dict[str, str]) -> str | None:
    """The key a request presents: the header wins over the query parameter."""
    return headers.get("x-functions-key") or query.get("code")
