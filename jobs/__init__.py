"""Job types and task handlers: one module per job type, registered in ``registry`` and checked on import."""

from core.registry import Registry

registry = Registry()

from jobs import diamond, hello_world  # noqa: E402  (modules register themselves on import)

registry.check()

__all__ = ["diamond", "hello_world", "registry"]
