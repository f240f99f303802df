-- Container inventories written by list_container_contents: one row per blob per job.
-- A job's rows are replaced as a whole (delete, then COPY, in one transaction), so a retried
-- fan-in never duplicates them. Raster/vector columns are read cheaply from file headers and
-- stay NULL for other blobs (or when include_metadata is false).

CREATE TABLE geoetl.inventory (
    job_id         text NOT NULL REFERENCES geoetl.jobs ON DELETE CASCADE,
    container      text NOT NULL,
    name           text NOT NULL,
    extension      text NOT NULL DEFAULT '',
    size_bytes     bigint NOT NULL CHECK (size_bytes >= 0),
    content_type   text,
    last_modified  timestamptz,
    etag           text,
    kind           text CHECK (kind IN ('raster', 'vector', 'other')),
    format         text,
    crs            text,
    width          integer,
    height         integer,
    band_count     integer,
    dtype          text,
    feature_count  bigint,
    geometry_type  text,
    bounds         double precision[],
    metadata_error text,
    details        jsonb,
    PRIMARY KEY (job_id, name)
);
CREATE INDEX inventory_job_ext_idx ON geoetl.inventory (job_id, extension);
COMMENT ON TABLE geoetl.inventory IS 'Container inventories (list_container_contents): one row per blob per job';
