-- Interval schedules ("a check every 7 days"), and fire times counted from when a
-- schedule was last switched on or retimed.

-- A schedule fires either on `cron` (in `timezone`) or every `interval_s` seconds
-- from its creation (created_at + k·interval_s, k ≥ 1); exactly one of the two is set.
ALTER TABLE schedules ADD COLUMN interval_s integer CHECK (interval_s IS NULL OR interval_s > 0);
ALTER TABLE schedules ADD CONSTRAINT schedules_cron_or_interval CHECK ((interval_s IS NULL) = (cron <> ''));

-- Fire times at or before `active_since` are not due: re-enabling a schedule, or
-- changing when it fires, must not catch up (or report as missed) the fire times
-- it had while it was off or had another timing. Kept by the database, so every
-- writer gets it right.
ALTER TABLE schedules ADD COLUMN active_since timestamptz;

CREATE FUNCTION schedules_active_since() RETURNS trigger AS $$
BEGIN
    IF NEW.enabled AND (
        NOT OLD.enabled
        OR NEW.cron IS DISTINCT FROM OLD.cron
        OR NEW.timezone IS DISTINCT FROM OLD.timezone
        OR NEW.interval_s IS DISTINCT FROM OLD.interval_s
    ) THEN
        NEW.active_since := now();
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER schedules_active_since BEFORE UPDATE ON schedules
    FOR EACH ROW EXECUTE FUNCTION schedules_active_since();

-- The scheduler's own bookkeeping (last_fire_at, last_job_id) is not a change it
-- needs to hear about: notify only when something a person sets changed.
DROP TRIGGER schedules_changed ON schedules;
CREATE TRIGGER schedules_written AFTER INSERT OR DELETE ON schedules
    FOR EACH ROW EXECUTE FUNCTION notify_schedules();
CREATE TRIGGER schedules_changed AFTER UPDATE ON schedules
    FOR EACH ROW
    WHEN ((to_jsonb(OLD) - 'last_fire_at' - 'last_job_id') IS DISTINCT FROM (to_jsonb(NEW) - 'last_fire_at' - 'last_job_id'))
    EXECUTE FUNCTION notify_schedules();

-- The scheduler looks for what runs on a repository (stale scheduled checks).
CREATE INDEX jobs_repository ON jobs (repository_id, finished_at DESC);
