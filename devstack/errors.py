"""The devstack's one error."""

from __future__ import annotations


class StackError(RuntimeError):
    """A step of the local stack cannot be done; the message says what to do."""
