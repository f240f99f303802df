"""STAC: items from rasters, the catalog in PgSTAC, and search."""
