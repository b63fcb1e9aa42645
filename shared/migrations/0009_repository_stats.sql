-- Repository insight (issue 13): the free-space threshold under which a repository's
-- storage is low, and the figures the executor measures after a job, projected from
-- the jobs' results (so a rebuild makes them again).
ALTER TABLE repositories ADD COLUMN storage_low_percent double precision NOT NULL DEFAULT 10;

-- The latest figures per repository: borg's totals, the archive count, the file system.
CREATE TABLE repository_stats (
    repository_id  text PRIMARY KEY,
    at             timestamptz NOT NULL,
    job_id         text,
    figures        jsonb NOT NULL
);

-- One point per repository and UTC day: the day's last measurement.
CREATE TABLE repository_stats_days (
    repository_id  text NOT NULL,
    day            date NOT NULL,
    at             timestamptz NOT NULL,
    figures        jsonb NOT NULL,
    PRIMARY KEY (repository_id, day)
);
