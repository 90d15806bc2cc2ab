-- Agent designs. Ids are UUID v7 text; times are UTC microseconds.
CREATE TABLE agents (
    id                TEXT PRIMARY KEY,
    org_id            TEXT   NOT NULL,
    owner_user_id     TEXT   NOT NULL,
    home_workspace_id TEXT   NOT NULL,
    state             TEXT   NOT NULL CHECK (state IN ('draft', 'active', 'deleted')),
    name              TEXT   NOT NULL,
    description       TEXT   NOT NULL DEFAULT '',
    instructions      TEXT   NOT NULL DEFAULT '',
    draft_revision    BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX agents_by_org ON agents (org_id);
