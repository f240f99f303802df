"""Sandboxed analytical SQL over the project's storage with DuckDB (the ``duckdb_query`` job).

``sandbox`` decides with DuckDB's own parser whether a query may run and opens locked
connections; ``urls`` maps ``storage://<container>/<path>`` URLs to what DuckDB reads;
``results`` writes the result inline or to storage; ``query`` ties them together.
"""
