-- The whole agent design, deployed versions, templates and the org default
-- agent (issue 5).
--
-- `design` holds the rest of the draft (model, tools, files, automations) as
-- an encoded agentshare.registry.v1.AgentDraft whose name, description and
-- instructions are left empty: those stay in their own columns, so rows
-- written before this migration read as drafts without tools.
ALTER TABLE agents ADD COLUMN design BLOB NOT NULL DEFAULT x'';
ALTER TABLE agents ADD COLUMN is_default BIGINT NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN is_managed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN latest_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN latest_deployed_at BIGINT;
-- Orders the access facts synced to sharing; raised by every change that
-- alters them.
ALTER TABLE agents ADD COLUMN revision BIGINT NOT NULL DEFAULT 1;
ALTER TABLE agents ADD COLUMN deleted_at BIGINT;

-- Exactly one default agent per org, however many callers create it at once.
CREATE UNIQUE INDEX agents_one_default_per_org ON agents (org_id) WHERE is_default = 1;

-- Immutable snapshots; `number` is gapless per agent because it is taken
-- from agents.latest_version in the transaction that raises it.
CREATE TABLE agent_versions (
    agent_id         TEXT   NOT NULL REFERENCES agents (id),
    number           BIGINT NOT NULL,
    -- The full encoded agentshare.registry.v1.AgentDraft.
    content          BLOB   NOT NULL,
    deployer_user_id TEXT   NOT NULL,
    deployed_at      BIGINT NOT NULL,
    notes            TEXT   NOT NULL DEFAULT '',
    origin           TEXT   NOT NULL CHECK (origin IN ('initial', 'deploy', 'rollback')),
    rollback_of      BIGINT NOT NULL DEFAULT 0,
    draft_revision   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (agent_id, number)
);

CREATE TABLE templates (
    id                TEXT PRIMARY KEY,
    org_id            TEXT   NOT NULL,
    name              TEXT   NOT NULL,
    description       TEXT   NOT NULL DEFAULT '',
    -- The encoded agentshare.registry.v1.AgentDraft, without connection ids.
    content           BLOB   NOT NULL,
    source_agent_id   TEXT   NOT NULL,
    source_version    BIGINT NOT NULL,
    publisher_user_id TEXT   NOT NULL,
    created_at        BIGINT NOT NULL
);
CREATE INDEX templates_by_org ON templates (org_id, id);
