-- Versions retiring on a schedule, recorded from registry's
-- `version.deprecated`: once the sunset passes, the firing loop tells the
-- users still pinned to the version, once. A row is claimed under a lease
-- (lease_owner, lease_expires_at), so one replica sends at a time and a
-- crashed sender's row is taken over when its lease expires.
CREATE TABLE version_retirements (
    agent_id         TEXT   NOT NULL,
    version          BIGINT NOT NULL,
    org_id           TEXT   NOT NULL,
    agent_name       TEXT   NOT NULL,
    sunset_at        BIGINT NOT NULL,
    -- When the retirement notices went out; NULL until then.
    notified_at      BIGINT,
    lease_owner      TEXT   NOT NULL DEFAULT '',
    lease_expires_at BIGINT,
    PRIMARY KEY (agent_id, version)
);
CREATE INDEX version_retirements_due ON version_retirements (notified_at, sunset_at);

-- One notice per user, version, stage ('deprecated', 'retired') and sunset,
-- however often an event is delivered or a pass retried; a new sunset is
-- news again.
CREATE TABLE version_notices (
    agent_id  TEXT   NOT NULL,
    version   BIGINT NOT NULL,
    user_id   TEXT   NOT NULL,
    stage     TEXT   NOT NULL,
    sunset_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, version, user_id, stage, sunset_at)
);
