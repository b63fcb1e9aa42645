-- The borgflow version each executor reports in its heartbeat (the /agents page shows it).
ALTER TABLE agents ADD COLUMN borgflow_version text;
