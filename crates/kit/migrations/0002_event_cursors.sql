-- How far each consumer has handled another service's EventLog. Handlers
-- are idempotent, so a cursor that lags after a crash only replays events.
CREATE TABLE event_cursors (
    consumer TEXT   PRIMARY KEY,
    seq      BIGINT NOT NULL
);
