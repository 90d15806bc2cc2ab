-- The audit trail: every privileged mutation and API-key change, written in
-- the transaction of the change.
CREATE TABLE audit_events (
    id              TEXT PRIMARY KEY,
    org_id          TEXT   NOT NULL,
    actor_user_id   TEXT   NOT NULL,
    credential_kind TEXT   NOT NULL,
    action          TEXT   NOT NULL,
    target_type     TEXT   NOT NULL,
    target_id       TEXT   NOT NULL,
    before_json     TEXT   NOT NULL DEFAULT '',
    after_json      TEXT   NOT NULL DEFAULT '',
    occurred_at     BIGINT NOT NULL
);
CREATE INDEX audit_events_by_org ON audit_events (org_id, id);
