-- POST /api/jobs with an Idempotency-Key: the job id a key was given, so a client that
-- retries (its answer lost, the api failing over) gets the same job, never a second one.
CREATE TABLE idempotency_keys (
    token_id    text NOT NULL,
    key         text NOT NULL,
    body_hash   text NOT NULL,
    job_id      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token_id, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
