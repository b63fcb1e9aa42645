-- Configuration (owned by the api) and the read model (owned by the projector).

CREATE TABLE repositories (
    id          text PRIMARY KEY,
    project     text NOT NULL DEFAULT 'default',
    name        text NOT NULL,
    location    text NOT NULL,
    agent       text NOT NULL,
    -- Never returned by the api, never put in an event: executors fetch it per job.
    passphrase  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project, name)
);

CREATE TABLE plans (
    id             text PRIMARY KEY,
    project        text NOT NULL DEFAULT 'default',
    name           text NOT NULL,
    repository_id  text NOT NULL REFERENCES repositories(id) ON DELETE RESTRICT,
    config         jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project, name)
);

CREATE TABLE schedules (
    id          text PRIMARY KEY,
    project     text NOT NULL DEFAULT 'default',
    name        text NOT NULL,
    cron        text NOT NULL,
    timezone    text NOT NULL DEFAULT 'UTC',
    enabled     boolean NOT NULL DEFAULT true,
    catch_up_s  integer NOT NULL DEFAULT 3600,
    job         jsonb NOT NULL,
    last_fire_at timestamptz,
    last_job_id  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notifications (
    id          text PRIMARY KEY,
    project     text NOT NULL DEFAULT 'default',
    name        text NOT NULL,
    -- apprise URLs may embed credentials: never returned unmasked.
    url         text NOT NULL,
    events      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE deliveries (
    event_id    text NOT NULL,
    target_id   text NOT NULL,
    event_type  text NOT NULL,
    job_id      text,
    at          timestamptz NOT NULL DEFAULT now(),
    ok          boolean NOT NULL,
    error       text,
    PRIMARY KEY (event_id, target_id)
);
CREATE INDEX deliveries_target_at ON deliveries (target_id, at DESC);

CREATE TABLE settings (
    key    text PRIMARY KEY,
    value  jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tokens (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer', 'agent')),
    project     text NOT NULL DEFAULT 'default',
    hash        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- Read model: rebuilt from BORGFLOW_JOBS by `borgflow projector --rebuild`.
CREATE TABLE jobs (
    id              text PRIMARY KEY,
    project         text NOT NULL,
    type            text NOT NULL,
    status          text NOT NULL,
    agent           text NOT NULL,
    repository_id   text,
    plan_id         text,
    schedule_id     text,
    trigger         text NOT NULL,
    search          text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    started_at      timestamptz,
    finished_at     timestamptz,
    last_seq        bigint NOT NULL,
    doc             jsonb NOT NULL
);
CREATE INDEX jobs_created ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_status ON jobs (status, created_at DESC);
CREATE INDEX jobs_finished ON jobs (finished_at DESC) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_plan ON jobs (plan_id, created_at DESC);

-- Latest progress per job, from BORGFLOW_PROGRESS (which itself keeps one message per job).
-- Kept apart from `jobs.doc` so the two streams project independently, live and on replay.
CREATE TABLE job_progress (
    job_id    text PRIMARY KEY,
    seq       bigint NOT NULL,
    at        timestamptz NOT NULL,
    progress  jsonb NOT NULL
);

CREATE TABLE archives (
    repository_id  text NOT NULL,
    name           text NOT NULL,
    created        timestamptz,
    job_id         text,
    stats          jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (repository_id, name)
);

CREATE TABLE agents (
    name          text PRIMARY KEY,
    host          text NOT NULL DEFAULT '',
    last_seen     timestamptz NOT NULL,
    borg_version  text,
    slots         integer NOT NULL DEFAULT 1,
    running       jsonb NOT NULL DEFAULT '[]',
    interval_s    double precision NOT NULL DEFAULT 5
);

-- Where each projection stands in its stream; written in the same transaction
-- as the rows it covers, so a redelivered batch is a no-op.
CREATE TABLE projection_checkpoints (
    name  text PRIMARY KEY,
    seq   bigint NOT NULL
);

-- The scheduler listens, so a schedule created or changed takes effect at once.
CREATE FUNCTION notify_schedules() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('borgflow_schedules', COALESCE(NEW.id, OLD.id));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER schedules_changed AFTER INSERT OR UPDATE OR DELETE ON schedules
    FOR EACH ROW EXECUTE FUNCTION notify_schedules();
