-- Verification reports: each archive's last check result (read model, projected from check
-- jobs' outcomes and emptied by a rebuild), and how long an OK result counts as fresh.

ALTER TABLE repositories ADD COLUMN keep_verified_days integer NOT NULL DEFAULT 30;

CREATE TABLE verifications (
    repository_id  text NOT NULL,
    archive        text NOT NULL,
    result         text NOT NULL CHECK (result IN ('OK', 'CORRUPT', 'MISSING')),
    verified_at    timestamptz NOT NULL,
    job_id         text NOT NULL,
    detail         text NOT NULL DEFAULT '',
    PRIMARY KEY (repository_id, archive)
);
