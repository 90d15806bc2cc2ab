-- What sharing knows of each agent, written by registry through SyncAgent
-- (and repaired from registry's events), so that access checks, setup status
-- and plans never call registry. `revision` orders syncs: an older one never
-- overwrites a newer one.
CREATE TABLE agent_access (
    agent_id          TEXT PRIMARY KEY,
    org_id            TEXT   NOT NULL REFERENCES orgs (id),
    owner_user_id     TEXT   NOT NULL,
    -- Empty only for the org default agent, which lives in no workspace.
    home_workspace_id TEXT   NOT NULL,
    state             TEXT   NOT NULL CHECK (state IN ('draft', 'active', 'deleted')),
    is_default        BIGINT NOT NULL DEFAULT 0,
    is_managed        BIGINT NOT NULL DEFAULT 0,
    latest_version    BIGINT NOT NULL DEFAULT 0,
    revision          BIGINT NOT NULL,
    name              TEXT   NOT NULL,
    description       TEXT   NOT NULL DEFAULT '',
    synced_at         BIGINT NOT NULL
);
CREATE INDEX agent_access_by_owner ON agent_access (org_id, owner_user_id);
CREATE INDEX agent_access_by_home ON agent_access (home_workspace_id);

-- Integrations per deployed version (immutable once stored), and of the
-- current draft under version 0 (replaced on every applied sync).
CREATE TABLE agent_integrations (
    agent_id              TEXT   NOT NULL REFERENCES agent_access (agent_id),
    version               BIGINT NOT NULL,
    key                   TEXT   NOT NULL,
    position              BIGINT NOT NULL,
    provider              TEXT   NOT NULL,
    scope                 TEXT   NOT NULL CHECK (scope IN ('shared', 'user_configured')),
    builder_connection_id TEXT   NOT NULL DEFAULT '',
    PRIMARY KEY (agent_id, version, key)
);
