-- A user's pin of an agent to one deployed version: their runs use it until
-- they unpin, whatever is deployed later.
CREATE TABLE pins (
    agent_id   TEXT   NOT NULL REFERENCES agent_access (agent_id),
    user_id    TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, user_id)
);
