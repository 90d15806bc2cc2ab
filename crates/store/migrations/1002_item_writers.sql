-- Who wrote each item's current value (WorkspaceItem.written_by): the kind
-- of caller ('user', 'invoke_grant', 'delegate_grant', 'anonymous_session',
-- 'automation_run'), their user, grant, anonymous session or automation
-- run, the agent it was written through, and for a publish the agent it
-- came from. Empty where it does not apply; an empty kind marks an item
-- written before writers were recorded. Changes keep the writer of the
-- item as written, so a resumed watch replays it too.
ALTER TABLE workspace_items ADD COLUMN writer_kind TEXT NOT NULL DEFAULT '';
ALTER TABLE workspace_items ADD COLUMN writer_user_id TEXT NOT NULL DEFAULT '';
ALTER TABLE workspace_items ADD COLUMN writer_grant_id TEXT NOT NULL DEFAULT '';
ALTER TABLE workspace_items ADD COLUMN writer_session_id TEXT NOT NULL DEFAULT '';
ALTER TABLE workspace_items ADD COLUMN writer_automation_run_id TEXT NOT NULL DEFAULT '';
ALTER TABLE workspace_items ADD COLUMN writer_via_agent_id TEXT NOT NULL DEFAULT '';
ALTER TABLE workspace_items ADD COLUMN writer_published_from TEXT NOT NULL DEFAULT '';
ALTER TABLE item_changes ADD COLUMN writer_kind TEXT NOT NULL DEFAULT '';
ALTER TABLE item_changes ADD COLUMN writer_user_id TEXT NOT NULL DEFAULT '';
ALTER TABLE item_changes ADD COLUMN writer_grant_id TEXT NOT NULL DEFAULT '';
ALTER TABLE item_changes ADD COLUMN writer_session_id TEXT NOT NULL DEFAULT '';
ALTER TABLE item_changes ADD COLUMN writer_automation_run_id TEXT NOT NULL DEFAULT '';
ALTER TABLE item_changes ADD COLUMN writer_via_agent_id TEXT NOT NULL DEFAULT '';
ALTER TABLE item_changes ADD COLUMN writer_published_from TEXT NOT NULL DEFAULT '';
