-- Projects: a home workspace plus the workspaces they are shared into.
-- Deleted projects keep their row (deleted_at) so their sessions stay
-- readable and the home-workspace checks can skip them.
CREATE TABLE projects (
    id                TEXT PRIMARY KEY,
    org_id            TEXT   NOT NULL REFERENCES orgs (id),
    home_workspace_id TEXT   NOT NULL,
    owner_user_id     TEXT   NOT NULL,
    name              TEXT   NOT NULL,
    description       TEXT   NOT NULL DEFAULT '',
    revision          BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    deleted_at        BIGINT
);
CREATE INDEX projects_by_org ON projects (org_id, id);

CREATE TABLE project_workspaces (
    project_id   TEXT NOT NULL REFERENCES projects (id),
    workspace_id TEXT NOT NULL,
    PRIMARY KEY (project_id, workspace_id)
);
CREATE INDEX project_workspaces_by_workspace ON project_workspaces (workspace_id);
