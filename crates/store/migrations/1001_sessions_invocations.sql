-- Sessions, their messages and invocation records (issue 10).
-- Ids are TEXT UUIDs, times BIGINT microseconds UTC, flags BIGINT 0/1.

-- One conversation. `message_count` is the last sequence handed out: every
-- append locks this row first, so sequences are gapless per session even
-- under concurrent appends. An anonymous visitor's session keeps only the
-- SHA-256 of its secret.
CREATE TABLE sessions (
    id            TEXT   PRIMARY KEY,
    org_id        TEXT   NOT NULL,
    agent_id      TEXT   NOT NULL,
    agent_name    TEXT   NOT NULL,
    user_id       TEXT   NOT NULL,
    anonymous     BIGINT NOT NULL CHECK (anonymous IN (0, 1)),
    secret_digest TEXT   NOT NULL,
    grant_id      TEXT   NOT NULL,
    project_id    TEXT   NOT NULL,
    workspace_id  TEXT   NOT NULL,
    state         TEXT   NOT NULL CHECK (state IN ('active', 'archived')),
    title         TEXT   NOT NULL,
    message_count BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    archived_at   BIGINT
);
-- ListSessions: one user's sessions in one org, newest first.
CREATE INDEX sessions_by_user ON sessions (user_id, org_id, created_at, id);
-- Archiving on agent.deleted.
CREATE INDEX sessions_by_agent ON sessions (agent_id, state);

CREATE TABLE messages (
    session_id           TEXT   NOT NULL,
    sequence             BIGINT NOT NULL,
    role                 TEXT   NOT NULL CHECK (role IN ('user', 'assistant', 'tool')),
    content              TEXT   NOT NULL,
    tool_name            TEXT   NOT NULL,
    invocation_id        TEXT   NOT NULL,
    agent_version_number BIGINT NOT NULL,
    created_at           BIGINT NOT NULL,
    PRIMARY KEY (session_id, sequence)
);

-- What CreateSession and AppendTurn did per idempotency key, so a retry
-- returns the first result: the session and the range of sequences
-- appended (empty for a create).
CREATE TABLE session_requests (
    kind           TEXT   NOT NULL CHECK (kind IN ('create', 'append')),
    request_id     TEXT   NOT NULL,
    session_id     TEXT   NOT NULL,
    first_sequence BIGINT NOT NULL,
    last_sequence  BIGINT NOT NULL,
    created        BIGINT NOT NULL CHECK (created IN (0, 1)),
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (kind, request_id)
);

-- Agents that registry announced deleted: no new session starts for them,
-- even when a create races the archiving.
CREATE TABLE deleted_agents (
    agent_id   TEXT   PRIMARY KEY,
    deleted_at BIGINT NOT NULL
);

-- One run. `integrations` is a JSON array of {key, provider, owner}: whose
-- connection each integration used, never a connection id.
CREATE TABLE invocations (
    id                   TEXT   PRIMARY KEY,
    org_id               TEXT   NOT NULL,
    agent_id             TEXT   NOT NULL,
    agent_owner_user_id  TEXT   NOT NULL,
    agent_version_number BIGINT NOT NULL,
    draft_run            BIGINT NOT NULL CHECK (draft_run IN (0, 1)),
    caller_kind          TEXT   NOT NULL,
    user_id              TEXT   NOT NULL,
    anonymous            BIGINT NOT NULL CHECK (anonymous IN (0, 1)),
    grant_id             TEXT   NOT NULL,
    session_id           TEXT   NOT NULL,
    project_id           TEXT   NOT NULL,
    automation_run_id    TEXT   NOT NULL,
    integrations         TEXT   NOT NULL,
    executes_as_user_id  TEXT   NOT NULL,
    billed_to_user_id    TEXT   NOT NULL,
    store_partition      TEXT   NOT NULL,
    status               TEXT   NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
    error_code           TEXT   NOT NULL,
    error_message        TEXT   NOT NULL,
    duration_micros      BIGINT,
    start_time           BIGINT NOT NULL,
    end_time             BIGINT,
    input_tokens         BIGINT NOT NULL,
    output_tokens        BIGINT NOT NULL
);
-- Usage of the billed account, newest first, optionally per agent.
CREATE INDEX invocations_by_billed ON invocations (billed_to_user_id, start_time, id);
-- Usage of one agent for its owner.
CREATE INDEX invocations_by_agent ON invocations (agent_id, start_time, id);
