-- Firing (issue 12). A run row is the claim: inserting it under
-- UNIQUE (subscription_id, scheduled_at) makes any second claim of the same
-- scheduled time a no-op, on any replica. The lease says which replica runs
-- it and until when; an expired lease lets another replica retry the run
-- once, under the same id.
ALTER TABLE automation_runs ADD COLUMN workspace_id TEXT NOT NULL DEFAULT '';
-- The task as it was when the run was claimed, so a retry sends the same.
ALTER TABLE automation_runs ADD COLUMN task TEXT NOT NULL DEFAULT '';
ALTER TABLE automation_runs ADD COLUMN attempt BIGINT NOT NULL DEFAULT 1;
ALTER TABLE automation_runs ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE automation_runs ADD COLUMN lease_expires_at BIGINT;
ALTER TABLE automation_runs ADD COLUMN retried_after_lease_expiry BIGINT NOT NULL DEFAULT 0;
ALTER TABLE automation_runs ADD COLUMN note TEXT NOT NULL DEFAULT '';
ALTER TABLE automation_runs ADD COLUMN catch_up BIGINT NOT NULL DEFAULT 0;
-- A MISSED row folds the earlier times of one outage: how many, and the
-- last of them.
ALTER TABLE automation_runs ADD COLUMN missed_count BIGINT NOT NULL DEFAULT 1;
ALTER TABLE automation_runs ADD COLUMN missed_through BIGINT;
ALTER TABLE automation_runs ADD COLUMN agent_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE automation_runs ADD COLUMN invocation_id TEXT NOT NULL DEFAULT '';
ALTER TABLE automation_runs ADD COLUMN session_id TEXT NOT NULL DEFAULT '';
-- Runs whose lease may expire, for the reclaim scan.
CREATE INDEX automation_runs_leases ON automation_runs (status, lease_expires_at);
-- A user's run history, newest scheduled time first.
CREATE INDEX automation_runs_of_user ON automation_runs (org_id, user_id, scheduled_at, id);
-- A run's notifications, for GetRun's deliveries.
CREATE INDEX inbox_items_of_run ON inbox_items (run_id);
CREATE INDEX notification_outbox_of_run ON notification_outbox (run_id);
