-- The retries of a job, found by an index rather than a scan of every job: a job page lists
-- every attempt of its work (GET /api/jobs/{id}/history), walking `retry_of` both ways.
CREATE INDEX jobs_retry_of ON jobs ((doc->>'retry_of')) WHERE doc->>'retry_of' IS NOT NULL;
