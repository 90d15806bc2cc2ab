-- The workspace store (issue 8). A partition is one store workspace:
-- `user-<userId>`, `agent-<agentId>/<workspaceId>`, `agent-<agentId>`, ...
-- Its row holds the change counter, which every write updates first and so
-- keeps locked until it commits: revisions are gapless and in commit order
-- per partition, so a resumed watch misses nothing. It also holds the
-- partition's quota use, kept exact under the same lock.
CREATE TABLE store_partitions (
    partition   TEXT   PRIMARY KEY,
    revision    BIGINT NOT NULL,
    item_count  BIGINT NOT NULL,
    total_bytes BIGINT NOT NULL
);

-- Keys use the "C" collation, byte-wise whatever the database locale, so
-- listing order and prefix ranges are the UTF-8 byte order the contract promises.
CREATE TABLE workspace_items (
    partition    TEXT   NOT NULL,
    key          TEXT   COLLATE "C" NOT NULL,
    value        TEXT   NOT NULL,
    content_type TEXT   NOT NULL CHECK (content_type IN ('json', 'text')),
    size_bytes   BIGINT NOT NULL,
    revision     BIGINT NOT NULL,
    created_by   TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (partition, key)
);

-- Every put and delete, for Watch. A put keeps the item as written, so a
-- resumed stream replays what happened, not today's value. Pruned by count
-- and age on each write.
CREATE TABLE item_changes (
    partition    TEXT   NOT NULL,
    revision     BIGINT NOT NULL,
    kind         TEXT   NOT NULL CHECK (kind IN ('put', 'delete')),
    key          TEXT   NOT NULL,
    value        TEXT   NOT NULL,
    content_type TEXT   NOT NULL,
    size_bytes   BIGINT NOT NULL,
    item_revision BIGINT NOT NULL,
    created_by   TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    changed_at   BIGINT NOT NULL,
    PRIMARY KEY (partition, revision)
);
CREATE INDEX item_changes_by_age ON item_changes (partition, changed_at);
