from __future__ import annotations

import azure.functions as func
import pytest

from core.settings import LocalHostSettings
from triggers.localhost.keys import KeyRing, presented_key

A, F, ADM = func.AuthLevel.ANONYMOUS, func.AuthLevel.FUNCTION, func.AuthLevel.ADMIN


def ring(master: str | None = "m-key", functions: str = "f-key,f-key-2") -> KeyRing:
    return KeyRing.from_settings(LocalHostSettings(local_host_master_key=master, local_host_function_keys=functions))


def test_no_keys_configured_means_open() -> None:
    open_ring = ring(None, "")
    assert not open_ring.enforced
    assert open_ring.allows(ADM, None) and open_ring.allows(F, None)


@pytest.mark.parametrize(
    ("level", "key", "allowed"),
    [
        (A, None, True),
        (F, None, False),
        (F, "wrong", False),
        (F, "f-key", True),
        (F, "f-key-2", True),
        (F, "m-key", True),
        (ADM, "f-key", False),
        (ADM, None, False),
        (ADM, "m-key", True),
    ],
)
def test_azure_key_semantics(level: func.AuthLevel, key: str | None, allowed: bool) -> None:
    assert ring().allows(level, key) is allowed


def test_only_master_key_configured_still_enforces_function_level() -> None:
    master_only = ring("m-key", "")
    assert not master_only.allows(F, None)
    assert master_only.allows(F, "m-key")


def test_header_wins_over_query() -> None:
    assert presented_key({"x-functions-key": "h"}, {"code": "q"}) == "h"
    assert presented_key({}, {"code": "q"}) == "q"
    assert presented_key({}, {}) is None
