-- API keys: a user's long-lived credential in one org. Only the SHA-256 of
-- the secret is kept; the secret is shown once, at creation.
CREATE TABLE api_keys (
    id                   TEXT PRIMARY KEY,
    user_id              TEXT   NOT NULL REFERENCES users (id),
    org_id               TEXT   NOT NULL REFERENCES orgs (id),
    default_workspace_id TEXT   NOT NULL,
    label                TEXT   NOT NULL,
    prefix               TEXT   NOT NULL,
    secret_sha256        TEXT   NOT NULL UNIQUE,
    created_at           BIGINT NOT NULL,
    last_used_at         BIGINT,
    expires_at           BIGINT,
    revoked_at           BIGINT
);
CREATE INDEX api_keys_by_owner ON api_keys (user_id, org_id, id);
