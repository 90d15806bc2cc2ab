-- Users' connections to outside services. Secrets are sealed (see
-- sharing/src/secrets.rs): `key_id` names the sealing key, and the sealed
-- values are base64 of nonce and ciphertext. Nothing here is plaintext.
CREATE TABLE connections (
    id               TEXT PRIMARY KEY,
    user_id          TEXT   NOT NULL,
    provider         TEXT   NOT NULL,
    kind             TEXT   NOT NULL CHECK (kind IN ('api_key', 'oauth')),
    label            TEXT   NOT NULL,
    status           TEXT   NOT NULL CHECK (status IN ('live', 'expired', 'failed')),
    status_message   TEXT   NOT NULL DEFAULT '',
    key_id           TEXT   NOT NULL,
    sealed_secret    TEXT   NOT NULL,
    -- OAuth only: the sealed refresh token, and when the access token ends.
    sealed_refresh   TEXT,
    access_expires_at BIGINT,
    -- When the credential itself ends, if known; past it the connection is
    -- EXPIRED.
    expires_at       BIGINT,
    scopes           TEXT   NOT NULL DEFAULT '',
    created_at       BIGINT NOT NULL,
    last_used_at     BIGINT,
    last_tested_at   BIGINT
);
CREATE INDEX connections_by_user ON connections (user_id, id);

-- OAuth flows between StartOAuthConnection and CompleteOAuthConnection.
-- `state_sha256` finds the flow; the PKCE verifier is sealed.
CREATE TABLE oauth_flows (
    state_sha256    TEXT PRIMARY KEY,
    user_id         TEXT   NOT NULL,
    provider        TEXT   NOT NULL,
    label           TEXT   NOT NULL,
    -- Set when the flow reconnects an existing connection.
    connection_id   TEXT,
    key_id          TEXT   NOT NULL,
    sealed_verifier TEXT   NOT NULL,
    expires_at      BIGINT NOT NULL,
    used_at         BIGINT
);
CREATE INDEX oauth_flows_by_user ON oauth_flows (user_id);

-- A user's binding of one integration of an agent to one of their
-- connections; it outlives versions while the integration key remains.
CREATE TABLE agent_setups (
    agent_id        TEXT   NOT NULL,
    user_id         TEXT   NOT NULL,
    integration_key TEXT   NOT NULL,
    connection_id   TEXT   NOT NULL REFERENCES connections (id),
    bound_at        BIGINT NOT NULL,
    PRIMARY KEY (agent_id, user_id, integration_key)
);
CREATE INDEX agent_setups_by_connection ON agent_setups (connection_id);

-- When a user last finished setup of an agent ("Use the agent").
CREATE TABLE agent_setup_completions (
    agent_id     TEXT   NOT NULL,
    user_id      TEXT   NOT NULL,
    completed_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, user_id)
);
