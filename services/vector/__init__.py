"""The vector pipeline of ingest_vector: formats, names, geometry rules, chunks and PostGIS loading."""
