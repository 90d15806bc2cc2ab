-- Each user's opt-in to one automation of one agent. The definition the
-- user runs (from their pinned or the latest version) is copied here, so the
-- list of "Settings → Your Account" and the firing engine need no registry
-- call, and the row keeps its names after the agent is unshared or deleted.
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    automation_key TEXT NOT NULL,
    user_id TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 0,
    -- Comma-separated channel names: web, email, push.
    channels TEXT NOT NULL,
    -- The address email notifications go to, captured when EMAIL is chosen.
    email TEXT NOT NULL DEFAULT '',
    paused_until BIGINT,
    inactive BIGINT NOT NULL DEFAULT 0,
    -- user, agent_unshared, access_lost, automation_removed, agent_deleted.
    status_reason TEXT NOT NULL DEFAULT 'user',
    status_message TEXT NOT NULL DEFAULT '',
    agent_version BIGINT NOT NULL,
    -- The agent's latest version when the definition was last compared with
    -- the version the user runs.
    checked_version BIGINT NOT NULL,
    agent_name TEXT NOT NULL,
    automation_name TEXT NOT NULL,
    schedule_kind TEXT NOT NULL,
    schedule_cron TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    task TEXT NOT NULL,
    catch_up_policy TEXT NOT NULL,
    -- The next fire time, pause included, while enabled and not inactive.
    next_run_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (agent_id, automation_key, user_id)
);
CREATE INDEX subscriptions_of_user ON subscriptions (org_id, user_id, id);
CREATE INDEX subscriptions_of_agent ON subscriptions (agent_id, enabled);
CREATE INDEX subscriptions_of_workspace ON subscriptions (workspace_id, enabled, inactive);
CREATE INDEX subscriptions_due ON subscriptions (next_run_at);

-- The latest version of each agent as registry's events announced it, so a
-- read knows which subscriptions to compare with the version the user runs.
CREATE TABLE known_agents (
    agent_id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    latest_version BIGINT NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);

-- One run of one subscription for one scheduled time (issue 12 fires them).
CREATE TABLE automation_runs (
    id TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    automation_key TEXT NOT NULL,
    automation_name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    scheduled_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    output_summary TEXT NOT NULL DEFAULT '',
    error_code TEXT NOT NULL DEFAULT '',
    error_message TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    UNIQUE (subscription_id, scheduled_at)
);
CREATE INDEX automation_runs_latest ON automation_runs (subscription_id, scheduled_at);

-- A workspace's cap on enabled subscriptions; no row means no cap.
CREATE TABLE workspace_caps (
    workspace_id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    max_active BIGINT,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The WEB channel: each user's inbox.
CREATE TABLE inbox_items (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    automation_key TEXT NOT NULL,
    run_id TEXT NOT NULL DEFAULT '',
    session_id TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    read_at BIGINT
);
CREATE INDEX inbox_items_of_user ON inbox_items (org_id, user_id, id);

-- EMAIL and PUSH notifications waiting for, or done with, the sender.
CREATE TABLE notification_outbox (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    automation_key TEXT NOT NULL,
    run_id TEXT NOT NULL DEFAULT '',
    -- pending, retrying, delivered, failed.
    status TEXT NOT NULL,
    attempt_count BIGINT NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    -- When the next attempt is due; also moved ahead by a claim, so a
    -- replica that dies mid-send leaves the row to be tried again.
    next_attempt_at BIGINT NOT NULL,
    delivered_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX notification_outbox_due ON notification_outbox (status, next_attempt_at);
