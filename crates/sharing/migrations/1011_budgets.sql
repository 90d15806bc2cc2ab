-- Limits on what a shared agent may spend (DESIGN.md, Grants): each grant's
-- limits (NULL: no limit) and usage, each org's policy, and the counters
-- runs are admitted against. Counting happens here, in the database, so a
-- limit holds exactly across replicas.
ALTER TABLE share_grants ADD COLUMN runs_per_minute BIGINT;
ALTER TABLE share_grants ADD COLUMN runs_per_day BIGINT;
ALTER TABLE share_grants ADD COLUMN concurrent_runs BIGINT;
ALTER TABLE share_grants ADD COLUMN session_runs_per_minute BIGINT;
ALTER TABLE share_grants ADD COLUMN runs_total BIGINT NOT NULL DEFAULT 0;
ALTER TABLE share_grants ADD COLUMN refusals_total BIGINT NOT NULL DEFAULT 0;
ALTER TABLE share_grants ADD COLUMN last_refusal_at BIGINT;

-- Flags are 0/1; 0 runs per minute means no limit.
ALTER TABLE orgs ADD COLUMN forbid_delegate_grants BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orgs ADD COLUMN forbid_external_grants BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orgs ADD COLUMN forbid_shared_integrations BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orgs ADD COLUMN runs_per_minute_per_principal BIGINT NOT NULL DEFAULT 0;

-- Runs admitted per counter (`grant/<id>/runs_per_minute`, ...) in the
-- window starting at window_start (UTC microseconds). A counter keeps only
-- its current window: admission deletes the older ones.
CREATE TABLE run_windows (
    counter      TEXT   NOT NULL,
    window_start BIGINT NOT NULL,
    runs         BIGINT NOT NULL,
    PRIMARY KEY (counter, window_start)
);

-- Runs in progress under a concurrency limit. A row is deleted when its
-- run ends (ReleaseRun), or counts no more after lease_until if its gateway
-- never said so.
CREATE TABLE running_runs (
    admission_id TEXT PRIMARY KEY,
    counter      TEXT   NOT NULL,
    lease_until  BIGINT NOT NULL
);
CREATE INDEX running_runs_by_counter ON running_runs (counter, lease_until);
