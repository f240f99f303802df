"""Job types and task handlers: one module per job type, registered in ``registry`` and checked on import."""

from core.registry import Registry

registry = Registry()

from jobs import (  # noqa: E402  (modules register themselves on import)
    create_h3_base,
    diamond,
    duckdb_query,
    generate_h3_grid,
    generate_h3_level4,
    hello_world,
    ingest_vector,
    list_container_contents,
    process_raster,
    stac_search,
    stac_setup,
    summarize_container,
)

registry.check()

__all__ = [
    "create_h3_base",
    "diamond",
    "duckdb_query",
    "generate_h3_grid",
    "generate_h3_level4",
    "hello_world",
    "ingest_vector",
    "list_container_contents",
    "process_raster",
    "registry",
    "stac_search",
    "stac_setup",
    "summarize_container",
]
