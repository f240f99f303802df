"""Job types and task handlers: one module per job type, registered in ``registry`` and checked on import."""

from core.registry import Registry

registry = Registry()

from jobs import diamond, hello_world  # noqa: E402  (modules register themselves on import)
from jobs import stac_search, stac_setup  # noqa: E402, F401
from jobs import create_h3_base, generate_h3_grid, generate_h3_level4  # noqa: E402, F401
from jobs import list_container_contents, summarize_container  # noqa: E402, F401
from jobs import process_raster  # noqa: E402, F401
from jobs import ingest_vector  # noqa: E402, F401
from jobs import duckdb_query  # noqa: E402, F401

registry.check()

__all__ = ["diamond", "hello_world", "registry"]
