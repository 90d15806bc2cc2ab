-- A version's deprecation (DeprecateVersion): pins of the version hold
-- until sunset_at, and from then on runs pinned to it use the latest
-- version. NULL while the version is not deprecated.
ALTER TABLE agent_versions ADD COLUMN sunset_at BIGINT;
ALTER TABLE agent_versions ADD COLUMN deprecation_note TEXT NOT NULL DEFAULT '';
