-- Agent tokens are bound to one agent; join tokens let an executor enrol for its own.
ALTER TABLE tokens ADD COLUMN agent text;
ALTER TABLE tokens DROP CONSTRAINT tokens_role_check;
-- The one unbound agent token `borgflow up` used to write into borgflow.env becomes a
-- join token: executors that use it enrol for a token bound to their agent.
UPDATE tokens SET role = 'join' WHERE role = 'agent' AND agent IS NULL;
ALTER TABLE tokens ADD CONSTRAINT tokens_role_check
    CHECK (role IN ('admin', 'operator', 'viewer', 'agent', 'join'));
ALTER TABLE tokens ADD CONSTRAINT tokens_agent_bound CHECK ((role = 'agent') = (agent IS NOT NULL));
CREATE INDEX tokens_agent ON tokens (agent) WHERE revoked_at IS NULL;
