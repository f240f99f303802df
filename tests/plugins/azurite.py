"""Real Azurite for the tests: installed with npm once (``.local/azurite``), started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.azurite import running_azurite


@pytest.fixture(scope="session")
def azurite_connection_string() -> Iterator[str]:
    """The full connection string of a session-wide Azurite blob service on a free loopback port."""
    with running_azurite() as connection_string:
        yield connection_string
