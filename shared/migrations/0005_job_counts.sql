-- Counts the Queue page and /metrics show, kept as the jobs table changes, so that reading
-- them costs the same with a hundred jobs or a million: jobs by project and status, and
-- jobs finished by project, minute and status (the last 24 hours are 1,440 rows to add up,
-- not every job finished in them). Statement-level triggers with transition tables count
-- a whole batch in one go, whoever writes it (the projector, the api's first row of a new
-- job, a cancel written through); a rebuild empties these tables with the read model.

CREATE TABLE job_status_counts (
    project text NOT NULL,
    status  text NOT NULL,
    n       bigint NOT NULL,
    PRIMARY KEY (project, status)
);

CREATE TABLE job_finish_counts (
    project text NOT NULL,
    minute  timestamptz NOT NULL,
    status  text NOT NULL,
    n       bigint NOT NULL,
    PRIMARY KEY (project, minute, status)
);
CREATE INDEX job_finish_counts_minute ON job_finish_counts (minute);

-- Add up (project, status, finished_at, sign) rows into both tables.
CREATE FUNCTION jobs_count_rows(delta_rows jsonb) RETURNS void AS $$
BEGIN
    INSERT INTO job_status_counts (project, status, n)
    SELECT d->>'project', d->>'status', sum((d->>'sign')::int)
    FROM jsonb_array_elements(delta_rows) d
    GROUP BY 1, 2
    HAVING sum((d->>'sign')::int) <> 0
    ON CONFLICT (project, status) DO UPDATE SET n = job_status_counts.n + EXCLUDED.n;

    INSERT INTO job_finish_counts (project, minute, status, n)
    SELECT d->>'project', date_trunc('minute', (d->>'finished_at')::timestamptz), d->>'status',
           sum((d->>'sign')::int)
    FROM jsonb_array_elements(delta_rows) d
    WHERE d->>'finished_at' IS NOT NULL
    GROUP BY 1, 2, 3
    HAVING sum((d->>'sign')::int) <> 0
    ON CONFLICT (project, minute, status) DO UPDATE SET n = job_finish_counts.n + EXCLUDED.n;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION jobs_counted_insert() RETURNS trigger AS $$
BEGIN
    PERFORM jobs_count_rows(coalesce((
        SELECT jsonb_agg(jsonb_build_object('project', project, 'status', status,
                                            'finished_at', finished_at, 'sign', 1))
        FROM new_rows), '[]'::jsonb));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION jobs_counted_update() RETURNS trigger AS $$
BEGIN
    PERFORM jobs_count_rows(coalesce((
        SELECT jsonb_agg(x) FROM (
            SELECT jsonb_build_object('project', o.project, 'status', o.status,
                                      'finished_at', o.finished_at, 'sign', -1) AS x
            FROM old_rows o JOIN new_rows n ON n.id = o.id
            WHERE o.status IS DISTINCT FROM n.status OR o.finished_at IS DISTINCT FROM n.finished_at
            UNION ALL
            SELECT jsonb_build_object('project', n.project, 'status', n.status,
                                      'finished_at', n.finished_at, 'sign', 1)
            FROM old_rows o JOIN new_rows n ON n.id = o.id
            WHERE o.status IS DISTINCT FROM n.status OR o.finished_at IS DISTINCT FROM n.finished_at
        ) changes), '[]'::jsonb));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION jobs_counted_delete() RETURNS trigger AS $$
BEGIN
    PERFORM jobs_count_rows(coalesce((
        SELECT jsonb_agg(jsonb_build_object('project', project, 'status', status,
                                            'finished_at', finished_at, 'sign', -1))
        FROM old_rows), '[]'::jsonb));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER jobs_counted_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION jobs_counted_insert();
CREATE TRIGGER jobs_counted_update AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION jobs_counted_update();
CREATE TRIGGER jobs_counted_delete AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION jobs_counted_delete();

-- What is there already.
INSERT INTO job_status_counts (project, status, n)
SELECT project, status, count(*) FROM jobs GROUP BY 1, 2;
INSERT INTO job_finish_counts (project, minute, status, n)
SELECT project, date_trunc('minute', finished_at), status, count(*) FROM jobs
WHERE finished_at IS NOT NULL GROUP BY 1, 2, 3;

-- The Queue page's lists, each by an index that holds only what it lists (the jobs not
-- ended are few, whatever the history) or in the order it is listed in.
CREATE INDEX jobs_waiting ON jobs (created_at, id) WHERE status IN ('queued', 'sent');
CREATE INDEX jobs_running ON jobs (started_at, id) WHERE status = 'running';
DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs (finished_at DESC, id DESC) WHERE finished_at IS NOT NULL;
