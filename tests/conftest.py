"""Shared fixtures: real PostgreSQL (tests/plugins/postgres.py) and Azurite (tests/plugins/azurite.py)."""

pytest_plugins = ["tests.plugins.postgres", "tests.plugins.azurite", "tests.plugins.app", "tests.plugins.pgbouncer"]
