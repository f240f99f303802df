-- Extensions the platform needs, and the schemas that hold its data.
-- (The runner itself creates schema geoetl and geoetl.schema_migrations.)
CREATE EXTENSION IF NOT EXISTS postgis SCHEMA public;
CREATE EXTENSION IF NOT EXISTS btree_gist SCHEMA public;
CREATE EXTENSION IF NOT EXISTS unaccent SCHEMA public;

COMMENT ON SCHEMA geoetl IS 'geoetl orchestration: jobs, tasks, queue, events';

-- Tables loaded by ingest_vector.
CREATE SCHEMA IF NOT EXISTS geo;
COMMENT ON SCHEMA geo IS 'geoetl: vector tables ingested from files';

-- H3 grids.
CREATE SCHEMA IF NOT EXISTS h3;
COMMENT ON SCHEMA h3 IS 'geoetl: H3 hexagon grids';
