-- The CoreMachine's records: jobs, their stages (counters that make task completion O(1)),
-- tasks, the append-only job event log, and the PostgreSQL queue with its dead letters.
--
-- The hot rows (tasks, stages, queue messages) are updated in place as HOT updates: no column that
-- changes on the task path (status, attempt, lease, counters, locked_until) is indexed, and each table
-- leaves free space in its pages (fillfactor) for the new row versions.

CREATE TYPE geoetl.job_status AS ENUM ('queued', 'processing', 'completed', 'failed', 'cancelled');
CREATE TYPE geoetl.task_status AS ENUM ('queued', 'processing', 'completed', 'failed', 'cancelled');
CREATE TYPE geoetl.stage_status AS ENUM ('pending', 'planned', 'completed');

CREATE TABLE geoetl.jobs (
    job_id        text PRIMARY KEY CHECK (job_id ~ '^[0-9a-f]{64}$'),
    job_type      text NOT NULL,
    parameters    jsonb NOT NULL,
    status        geoetl.job_status NOT NULL DEFAULT 'queued',
    stage         integer NOT NULL DEFAULT 1 CHECK (stage >= 1),
    total_stages  integer NOT NULL CHECK (total_stages >= 1),
    run           integer NOT NULL DEFAULT 1 CHECK (run >= 1),
    result_data   jsonb,
    error_details jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    completed_at  timestamptz
);
CREATE INDEX jobs_created_idx ON geoetl.jobs (created_at DESC, job_id DESC);
CREATE INDEX jobs_status_idx ON geoetl.jobs (status, updated_at) WHERE status IN ('queued', 'processing');
COMMENT ON TABLE geoetl.jobs IS 'One row per job; job_id = SHA-256 of job type + canonical parameters';

CREATE TABLE geoetl.stages (
    job_id          text NOT NULL REFERENCES geoetl.jobs ON DELETE CASCADE,
    stage           integer NOT NULL CHECK (stage >= 1),
    name            text NOT NULL,
    task_type       text NOT NULL,
    parallelism     text NOT NULL CHECK (parallelism IN ('single', 'fan_out', 'fan_in')),
    status          geoetl.stage_status NOT NULL DEFAULT 'pending',
    task_count      integer NOT NULL DEFAULT 0,
    completed_count integer NOT NULL DEFAULT 0,
    failed_count    integer NOT NULL DEFAULT 0,
    planned_at      timestamptz,
    completed_at    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, stage),
    CHECK (completed_count + failed_count <= task_count)
) WITH (fillfactor = 50);
COMMENT ON TABLE geoetl.stages IS 'Per-stage counters: a completion increments completed_count; the one that reaches task_count advances the job';

CREATE TABLE geoetl.tasks (
    task_id           text PRIMARY KEY,
    job_id            text NOT NULL REFERENCES geoetl.jobs ON DELETE CASCADE,
    run               integer NOT NULL,
    stage             integer NOT NULL,
    task_index        integer NOT NULL CHECK (task_index >= 0),
    task_type         text NOT NULL,
    parameters        jsonb NOT NULL,
    status            geoetl.task_status NOT NULL DEFAULT 'queued',
    attempt           integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts      integer NOT NULL CHECK (max_attempts >= 1),
    not_before        timestamptz NOT NULL DEFAULT now(),
    enqueued_at       timestamptz NOT NULL DEFAULT now(),
    lease_expires_at  timestamptz,
    heartbeat_at      timestamptz,
    worker            text,
    result_data       jsonb,
    next_stage_params jsonb,
    error_details     jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    completed_at      timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (job_id, stage, task_index),
    FOREIGN KEY (job_id, stage) REFERENCES geoetl.stages (job_id, stage) ON DELETE CASCADE
) WITH (fillfactor = 60);
-- No index on status or leases: the janitor looks only at the current stage of processing jobs,
-- through (job_id, stage, task_index).
COMMENT ON TABLE geoetl.tasks IS 'task_id = <job_id>-r<run>-s<stage>-t<index>; attempt counts the attempts started';

CREATE TABLE geoetl.job_events (
    event_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id     text NOT NULL,
    run        integer NOT NULL,
    event      text NOT NULL,
    stage      integer,
    task_id    text,
    details    jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_events_job_idx ON geoetl.job_events (job_id, event_id);
COMMENT ON TABLE geoetl.job_events IS 'Append-only history of each job (kept across resubmissions)';

CREATE TABLE geoetl.queue_messages (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue_name     text NOT NULL,
    message_id     text NOT NULL,
    body           text NOT NULL,
    properties     jsonb NOT NULL DEFAULT '{}',
    enqueued_at    timestamptz NOT NULL DEFAULT now(),
    visible_at     timestamptz NOT NULL DEFAULT now(),
    locked_until   timestamptz,
    delivery_count integer NOT NULL DEFAULT 0,
    last_error     text,
    UNIQUE (queue_name, message_id)
) WITH (fillfactor = 70);
CREATE INDEX queue_messages_visible_idx ON geoetl.queue_messages (queue_name, visible_at, id);
COMMENT ON TABLE geoetl.queue_messages IS 'The postgres queue transport: claimed with FOR UPDATE SKIP LOCKED; '
    'a received message is hidden until locked_until (not indexed: receiving is a HOT update)';

CREATE TABLE geoetl.dead_letters (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue_name        text NOT NULL,
    message_id        text NOT NULL,
    body              text NOT NULL,
    reason            text NOT NULL,
    delivery_count    integer NOT NULL DEFAULT 0,
    enqueued_at       timestamptz,
    dead_lettered_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_time_idx ON geoetl.dead_letters (dead_lettered_at DESC);
COMMENT ON TABLE geoetl.dead_letters IS 'Messages no worker could use, with the reason (both transports record here)';
