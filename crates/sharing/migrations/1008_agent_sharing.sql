-- Sharing's own part of an agent: the `shared` flag (ShareAgent and
-- UnshareAgent; a sync never touches it) and the workspaces besides the home
-- one (SetAgentWorkspaces). Unshare keeps the list, so sharing again restores
-- the same reach.
ALTER TABLE agent_access ADD COLUMN shared BIGINT NOT NULL DEFAULT 0;

CREATE TABLE agent_workspaces (
    agent_id     TEXT   NOT NULL REFERENCES agent_access (agent_id),
    workspace_id TEXT   NOT NULL,
    added_at     BIGINT NOT NULL,
    PRIMARY KEY (agent_id, workspace_id)
);
CREATE INDEX agent_workspaces_by_workspace ON agent_workspaces (workspace_id);
