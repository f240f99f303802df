"""Fixtures for the job API tests (the local host with queue workers running)."""
