-- Users, orgs and workspaces. Ids are UUID v7 text; times are UTC
-- microseconds; flags are 0/1 (see kit/src/db.rs).
CREATE TABLE users (
    id           TEXT PRIMARY KEY,
    subject      TEXT   NOT NULL UNIQUE,
    email        TEXT   NOT NULL DEFAULT '',
    display_name TEXT   NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL
);

CREATE TABLE orgs (
    id                 TEXT PRIMARY KEY,
    name               TEXT   NOT NULL,
    workspaces_enabled BIGINT NOT NULL DEFAULT 0,
    created_at         BIGINT NOT NULL
);

CREATE TABLE org_members (
    org_id     TEXT   NOT NULL REFERENCES orgs (id),
    user_id    TEXT   NOT NULL REFERENCES users (id),
    role       TEXT   NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX org_members_by_user ON org_members (user_id);

CREATE TABLE workspaces (
    id         TEXT PRIMARY KEY,
    org_id     TEXT   NOT NULL REFERENCES orgs (id),
    name       TEXT   NOT NULL,
    is_default BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX workspaces_by_org ON workspaces (org_id);
-- Exactly one default workspace per org.
CREATE UNIQUE INDEX workspaces_one_default ON workspaces (org_id) WHERE is_default = 1;

CREATE TABLE workspace_members (
    workspace_id TEXT   NOT NULL REFERENCES workspaces (id),
    user_id      TEXT   NOT NULL REFERENCES users (id),
    role         TEXT   NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX workspace_members_by_user ON workspace_members (user_id);
