-- Share grants (`001_*`): a token for one agent, INVOKE (the holder's
-- credentials) or DELEGATE (the owner's). Only the token's SHA-256 is kept.
-- A grant is usable while none of revoked_at, ended_at (the agent was
-- deleted) and a past expires_at says otherwise; no cache ever serves it.
CREATE TABLE share_grants (
    id              TEXT PRIMARY KEY,
    agent_id        TEXT   NOT NULL REFERENCES agent_access (agent_id),
    org_id          TEXT   NOT NULL,
    kind            TEXT   NOT NULL CHECK (kind IN ('invoke', 'delegate')),
    label           TEXT   NOT NULL,
    token_sha256    TEXT   NOT NULL UNIQUE,
    token_prefix    TEXT   NOT NULL,
    pinned_version  BIGINT,
    creator_user_id TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT,
    last_used_at    BIGINT,
    revoked_at      BIGINT,
    ended_at        BIGINT
);
CREATE INDEX share_grants_by_agent ON share_grants (agent_id, id);
