-- Versions the owner deprecated (registry's DeprecateVersion), written by
-- SyncAgent, which replaces an agent's whole list on every applied sync.
-- Pins of a version hold until its sunset_at; from then on runs pinned to
-- it use the latest version, decided at run time with the clock.
CREATE TABLE version_retirements (
    agent_id  TEXT   NOT NULL REFERENCES agent_access (agent_id),
    version   BIGINT NOT NULL,
    sunset_at BIGINT NOT NULL,
    note      TEXT   NOT NULL DEFAULT '',
    PRIMARY KEY (agent_id, version)
);
