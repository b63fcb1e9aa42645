-- Passwords of the databases a plan dumps, and of a restore's target database: kept only
-- sealed (shared/secretbox.py), each row its own secret, so a rotation re-encrypts them with
-- the passphrases (shared/secretrows.py COLUMNS).
-- A plan database's id is `<plan id>/<kind>/<database>`; the rows go with their plan.
CREATE TABLE plan_secrets (
    id text PRIMARY KEY,
    plan_id text NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    sealed bytea NOT NULL
);
CREATE INDEX plan_secrets_plan ON plan_secrets (plan_id);
-- A restore's target password, by job id: written when the job is accepted, given to its
-- executor only while the job is sent or running (GET /api/jobs/{id}/secret).
CREATE TABLE job_secrets (
    id text PRIMARY KEY,
    sealed bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
