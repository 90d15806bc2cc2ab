-- A workspace name is unique within its org.
CREATE UNIQUE INDEX workspaces_unique_name ON workspaces (org_id, name);
