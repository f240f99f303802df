"""The one error tree of geoetl.

::

    GeoetlError                      root; never retried unless a subclass says so
    ├── InvalidInput                 bad input: permanent, never retried (HTTP 400)
    │   ├── InvalidBlobName
    │   ├── InvalidSetting
    │   └── InvalidMessage           a queue message no worker can use (dead-lettered)
    ├── NotFound                     (HTTP 404)
    │   ├── BlobNotFound
    │   ├── ContainerNotFound
    │   └── RouteNotFound
    ├── Conflict                     (HTTP 409)
    ├── Forbidden                    disabled or refused operation (HTTP 403)
    └── RetryableError               transient: worth another attempt
        ├── LeaseExpired             a task's worker stopped renewing its lease
        └── ServiceUnavailable       a dependency is down (HTTP 503)
            ├── DatabaseUnavailable
            ├── DatabaseBusy         timeout, deadlock, serialization conflict
            └── StorageUnavailable

Each class's docstring is its default message. Errors are translated once at
each boundary: database and SDK errors into these in ``infrastructure``, these
into HTTP responses in ``triggers``.
"""

from __future__ import annotations

from typing import Any


class GeoetlError(Exception):
    """An unexpected error occurred."""

    code = "internal_error"
    retryable = False

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__class__.__doc__ or self.code).strip()
        self.details = details
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        """The ``{"code", "message", "details"}`` body used by the API and job records."""
        return {"code": self.code, "message": self.message, "details": self.details}


class InvalidInput(GeoetlError):
    """The input is invalid."""

    code = "invalid_input"


class InvalidBlobName(InvalidInput):
    """The blob name is not allowed."""

    code = "invalid_blob_name"


class InvalidSetting(InvalidInput):
    """A setting has an invalid value."""

    code = "invalid_setting"


class NotFound(GeoetlError):
    """The requested resource does not exist."""

    code = "not_found"


class BlobNotFound(NotFound):
    """The blob does not exist."""

    code = "blob_not_found"


class ContainerNotFound(NotFound):
    """The storage container does not exist."""

    code = "container_not_found"


class RouteNotFound(NotFound):
    """No endpoint matches this route."""

    code = "route_not_found"


class Conflict(GeoetlError):
    """The request conflicts with the current state."""

    code = "conflict"


class Forbidden(GeoetlError):
    """This operation is not allowed."""

    code = "forbidden"


class RetryableError(GeoetlError):
    """A transient error occurred; the operation may succeed if retried."""

    code = "retryable_error"
    retryable = True


class ServiceUnavailable(RetryableError):
    """A service the platform depends on is unavailable."""

    code = "service_unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    """The database is unavailable."""

    code = "database_unavailable"


class DatabaseBusy(ServiceUnavailable):
    """The database could not finish the operation in time (timeout, deadlock or serialization conflict)."""

    code = "database_busy"


class StorageUnavailable(ServiceUnavailable):
    """Blob storage is unavailable."""

    code = "storage_unavailable"


class LeaseExpired(RetryableError):
    """The worker running this task stopped renewing its lease (it crashed or was killed)."""

    code = "lease_expired"


class InvalidMessage(InvalidInput):
    """A queue message that cannot be used: not parseable, or naming a job or task that does not exist."""

    code = "invalid_message"
