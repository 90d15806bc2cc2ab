-- The owner's store write policy of each agent (SharingService.
-- SetStoreWritePolicy): who may write its shared store partitions
-- ('owner_only', 'members' or 'runners') and whether anonymous DELEGATE
-- visitors may write (0 or 1). The defaults are the behaviour before the
-- policy existed: everyone who runs the agent writes.
ALTER TABLE agent_access ADD COLUMN store_writers TEXT NOT NULL DEFAULT 'runners'
    CHECK (store_writers IN ('owner_only', 'members', 'runners'));
ALTER TABLE agent_access ADD COLUMN store_anonymous_writes BIGINT NOT NULL DEFAULT 1
    CHECK (store_anonymous_writes IN (0, 1));
