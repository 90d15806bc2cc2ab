-- The event outbox every service writes in the same transaction as its change.
-- Numbers come from one counter row, updated inside that transaction, so they
-- are gapless and follow commit order (see kit/src/events.rs).
CREATE TABLE events (
    seq         BIGINT PRIMARY KEY,
    kind        TEXT   NOT NULL,
    subject_id  TEXT   NOT NULL,
    org_id      TEXT   NOT NULL DEFAULT '',
    payload     TEXT   NOT NULL,
    occurred_at BIGINT NOT NULL
);

CREATE TABLE event_counter (
    id       BIGINT PRIMARY KEY CHECK (id = 1),
    last_seq BIGINT NOT NULL
);

INSERT INTO event_counter (id, last_seq) VALUES (1, 0);
