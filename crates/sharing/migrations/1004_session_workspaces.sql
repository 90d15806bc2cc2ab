-- The active workspace a session chose with SwitchWorkspace, per org.
CREATE TABLE session_workspaces (
    session_id   TEXT   NOT NULL,
    org_id       TEXT   NOT NULL,
    user_id      TEXT   NOT NULL,
    workspace_id TEXT   NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (session_id, org_id)
);
