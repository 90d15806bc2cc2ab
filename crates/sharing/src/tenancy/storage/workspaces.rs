//! Orgs' settings and workspaces: storage, with each change audited in its
//! transaction.

use agentshare_kit::db::{is_unique_violation, new_id};
use agentshare_kit::identity::Principal;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::TenancyStorage;
use super::orgs::{OrgRow, WorkspaceRow};
use crate::tenancy::storage::audit;

/// Why a workspace could not be created or renamed.
pub enum NameTaken {
    Taken,
    Db(sqlx::Error),
}

impl NameTaken {
    /// ALREADY_EXISTS naming the name, or the database's error.
    pub fn into_error(self, name: &str) -> agentshare_kit::Error {
        match self {
            Self::Taken => agentshare_kit::Error::AlreadyExists(format!(
                "a workspace named {name:?} exists in this org; pick another name"
            )),
            Self::Db(error) => error.into(),
        }
    }
}

impl From<sqlx::Error> for NameTaken {
    fn from(error: sqlx::Error) -> Self {
        if is_unique_violation(&error) {
            Self::Taken
        } else {
            Self::Db(error)
        }
    }
}

fn org_view(org: &OrgRow) -> serde_json::Value {
    serde_json::json!({ "name": org.name, "workspaces_enabled": org.workspaces_enabled })
}

fn workspace_from_row(row: &AnyRow) -> Result<(WorkspaceRow, Option<String>), sqlx::Error> {
    Ok((
        WorkspaceRow {
            id: row.try_get("id")?,
            org_id: row.try_get("org_id")?,
            name: row.try_get("name")?,
            is_default: row.try_get::<i64, _>("is_default")? != 0,
            created_at: row.try_get("created_at")?,
        },
        row.try_get("role")?,
    ))
}

impl TenancyStorage {
    /// Changes an org's name and or workspace switch, recording
    /// `org.updated`; returns the org after.
    pub async fn update_org(
        &self,
        actor: &Principal,
        before: &OrgRow,
        name: Option<&str>,
        workspaces_enabled: Option<bool>,
    ) -> Result<OrgRow, sqlx::Error> {
        let after = OrgRow {
            id: before.id.clone(),
            name: name.map_or_else(|| before.name.clone(), str::to_string),
            workspaces_enabled: workspaces_enabled.unwrap_or(before.workspaces_enabled),
            default_workspace_id: before.default_workspace_id.clone(),
            created_at: before.created_at,
        };
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE orgs SET name = $1, workspaces_enabled = $2 WHERE id = $3")
            .bind(&after.name)
            .bind(i64::from(after.workspaces_enabled))
            .bind(&after.id)
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut tx,
            &self.clock,
            audit::Change {
                org_id: &after.id,
                actor,
                action: "org.updated",
                target_type: "org",
                target_id: &after.id,
                before: Some(org_view(before)),
                after: Some(org_view(&after)),
            },
        )
        .await?;
        self.commit(tx).await?;
        Ok(after)
    }

    /// Creates a workspace owned by the actor, recording `workspace.created`.
    pub async fn create_workspace(
        &self,
        actor: &Principal,
        org_id: &str,
        name: &str,
    ) -> Result<WorkspaceRow, NameTaken> {
        let owner = actor.user_id.as_deref().unwrap_or_default();
        let workspace = WorkspaceRow {
            id: new_id(),
            org_id: org_id.into(),
            name: name.into(),
            is_default: false,
            created_at: self.clock.now_micros(),
        };
        let mut tx = self.db.begin_write().await?;
        sqlx::query("INSERT INTO workspaces (id, org_id, name, is_default, created_at) VALUES ($1, $2, $3, 0, $4)")
            .bind(&workspace.id)
            .bind(org_id)
            .bind(name)
            .bind(workspace.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO workspace_members (workspace_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3)",
        )
        .bind(&workspace.id)
        .bind(owner)
        .bind(workspace.created_at)
        .execute(&mut *tx)
        .await?;
        audit::record(
            &mut tx,
            &self.clock,
            audit::Change {
                org_id,
                actor,
                action: "workspace.created",
                target_type: "workspace",
                target_id: &workspace.id,
                before: None,
                after: Some(serde_json::json!({ "name": name, "owner_user_id": owner })),
            },
        )
        .await?;
        self.commit(tx).await?;
        Ok(workspace)
    }

    /// The org's workspaces the user may see (every one when `all`), oldest
    /// first, with the user's role where they are a member.
    pub async fn workspaces_visible_to(
        &self,
        org_id: &str,
        user_id: &str,
        all: bool,
        after_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(WorkspaceRow, Option<String>)>, sqlx::Error> {
        sqlx::query(
            "SELECT w.id, w.org_id, w.name, w.is_default, w.created_at, m.role FROM workspaces w \
             LEFT JOIN workspace_members m ON m.workspace_id = w.id AND m.user_id = $2 \
             WHERE w.org_id = $1 AND ($3 = 1 OR m.role IS NOT NULL) AND ($4 = '' OR w.id > $4) \
             ORDER BY w.id LIMIT $5",
        )
        .bind(org_id)
        .bind(user_id)
        .bind(i64::from(all))
        .bind(after_id.unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(workspace_from_row)
        .collect()
    }

    /// One workspace of the org if the user may see it (any when `all`).
    pub async fn workspace_visible_to(
        &self,
        org_id: &str,
        workspace_id: &str,
        user_id: &str,
        all: bool,
    ) -> Result<Option<(WorkspaceRow, Option<String>)>, sqlx::Error> {
        sqlx::query(
            "SELECT w.id, w.org_id, w.name, w.is_default, w.created_at, m.role FROM workspaces w \
             LEFT JOIN workspace_members m ON m.workspace_id = w.id AND m.user_id = $3 \
             WHERE w.org_id = $1 AND w.id = $2 AND ($4 = 1 OR m.role IS NOT NULL)",
        )
        .bind(org_id)
        .bind(workspace_id)
        .bind(user_id)
        .bind(i64::from(all))
        .fetch_optional(&self.db.pool)
        .await?
        .as_ref()
        .map(workspace_from_row)
        .transpose()
    }

    /// Makes `workspace_id` the session's active workspace in the org.
    pub async fn switch_workspace(
        &self,
        session_id: &str,
        org_id: &str,
        user_id: &str,
        workspace_id: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO session_workspaces (session_id, org_id, user_id, workspace_id, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id, org_id) \
             DO UPDATE SET workspace_id = excluded.workspace_id, updated_at = excluded.updated_at",
        )
        .bind(session_id)
        .bind(org_id)
        .bind(user_id)
        .bind(workspace_id)
        .bind(self.clock.now_micros())
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// The workspace the session chose in the org, if any. The user must
    /// match, so one user's session id never steers another's requests.
    pub async fn session_workspace(
        &self,
        session_id: &str,
        org_id: &str,
        user_id: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query("SELECT workspace_id FROM session_workspaces WHERE session_id = $1 AND org_id = $2 AND user_id = $3")
            .bind(session_id)
            .bind(org_id)
            .bind(user_id)
            .fetch_optional(&self.db.pool)
            .await?
            .map(|row| row.try_get("workspace_id"))
            .transpose()
    }

    /// The orgs the user belongs to with their role, oldest membership first.
    pub async fn orgs_of(
        &self,
        user_id: &str,
        after_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(OrgRow, String)>, sqlx::Error> {
        sqlx::query(
            "SELECT o.id, o.name, o.workspaces_enabled, o.created_at, w.id AS default_workspace_id, m.role \
             FROM org_members m JOIN orgs o ON o.id = m.org_id \
             JOIN workspaces w ON w.org_id = o.id AND w.is_default = 1 \
             WHERE m.user_id = $1 AND ($2 = '' OR o.id > $2) ORDER BY o.id LIMIT $3",
        )
        .bind(user_id)
        .bind(after_id.unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(|row| {
            Ok((
                OrgRow {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    workspaces_enabled: row.try_get::<i64, _>("workspaces_enabled")? != 0,
                    default_workspace_id: row.try_get("default_workspace_id")?,
                    created_at: row.try_get("created_at")?,
                },
                row.try_get("role")?,
            ))
        })
        .collect()
    }

    /// Whether the workspace exists in the org (whoever may see it).
    pub async fn workspace_exists(
        &self,
        org_id: &str,
        workspace_id: &str,
    ) -> Result<bool, sqlx::Error> {
        Ok(
            sqlx::query("SELECT 1 FROM workspaces WHERE org_id = $1 AND id = $2")
                .bind(org_id)
                .bind(workspace_id)
                .fetch_optional(&self.db.pool)
                .await?
                .is_some(),
        )
    }

    /// A workspace's members, oldest first (by user id).
    pub async fn workspace_members(
        &self,
        workspace_id: &str,
        after_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<WorkspaceMemberRow>, sqlx::Error> {
        self.workspace_members_where(workspace_id, "", after_id, limit)
            .await
    }

    /// One member of a workspace.
    pub async fn workspace_member(
        &self,
        workspace_id: &str,
        user_id: &str,
    ) -> Result<Option<WorkspaceMemberRow>, sqlx::Error> {
        Ok(self
            .workspace_members_where(workspace_id, user_id, None, 1)
            .await?
            .pop())
    }

    async fn workspace_members_where(
        &self,
        workspace_id: &str,
        only_user: &str,
        after_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<WorkspaceMemberRow>, sqlx::Error> {
        sqlx::query(
            "SELECT u.id, u.email, u.display_name, u.created_at, m.role, m.created_at AS joined_at \
             FROM workspace_members m JOIN users u ON u.id = m.user_id \
             WHERE m.workspace_id = $1 AND ($2 = '' OR u.id = $2) AND ($3 = '' OR u.id > $3) \
             ORDER BY u.id LIMIT $4",
        )
        .bind(workspace_id)
        .bind(only_user)
        .bind(after_id.unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(WorkspaceMemberRow {
                user: crate::tenancy::storage::members::UserRow::from_row(row)?,
                role: row.try_get("role")?,
                joined_at: row.try_get("joined_at")?,
            })
        })
        .collect()
    }

    /// Adds an org member to a workspace, recording `workspace_member.added`;
    /// `Ok(false)` if they already belong.
    pub async fn add_workspace_member(
        &self,
        actor: &Principal,
        org_id: &str,
        workspace_id: &str,
        user_id: &str,
        role: &str,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let added = sqlx::query(
            "INSERT INTO workspace_members (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(workspace_id)
        .bind(user_id)
        .bind(role)
        .bind(self.clock.now_micros())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if added {
            audit::record(
                &mut tx,
                &self.clock,
                audit::Change {
                    org_id,
                    actor,
                    action: "workspace_member.added",
                    target_type: "workspace_member",
                    target_id: user_id,
                    before: None,
                    after: Some(serde_json::json!({ "workspace_id": workspace_id, "role": role })),
                },
            )
            .await?;
        }
        self.commit(tx).await?;
        Ok(added)
    }

    /// Removes a user from a workspace, recording `member.removed`;
    /// `Ok(false)` if they were not in it.
    pub async fn remove_workspace_member(
        &self,
        actor: &Principal,
        org_id: &str,
        workspace_id: &str,
        user_id: &str,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let removed =
            sqlx::query("DELETE FROM workspace_members WHERE workspace_id = $1 AND user_id = $2")
                .bind(workspace_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
        if removed {
            audit::record(
                &mut tx,
                &self.clock,
                audit::Change {
                    org_id,
                    actor,
                    action: "member.removed",
                    target_type: "workspace_member",
                    target_id: user_id,
                    before: Some(serde_json::json!({ "workspace_id": workspace_id })),
                    after: None,
                },
            )
            .await?;
        }
        self.commit(tx).await?;
        Ok(removed)
    }

    /// Renames a workspace, recording `workspace.updated`.
    pub async fn rename_workspace(
        &self,
        actor: &Principal,
        before: &WorkspaceRow,
        name: &str,
    ) -> Result<WorkspaceRow, NameTaken> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE workspaces SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(&before.id)
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut tx,
            &self.clock,
            audit::Change {
                org_id: &before.org_id,
                actor,
                action: "workspace.updated",
                target_type: "workspace",
                target_id: &before.id,
                before: Some(serde_json::json!({ "name": before.name })),
                after: Some(serde_json::json!({ "name": name })),
            },
        )
        .await?;
        self.commit(tx).await?;
        Ok(WorkspaceRow {
            name: name.into(),
            ..before.clone()
        })
    }

    /// Deletes a workspace with its memberships and its places in project
    /// lists and sessions, recording `workspace.deleted`. ABORTED while it is
    /// the home of a non-deleted project or agent. The workspace row is
    /// locked first, so an agent synced into it concurrently is either seen
    /// here or refused by the sync.
    pub async fn delete_workspace(
        &self,
        actor: &Principal,
        workspace: &WorkspaceRow,
    ) -> Result<(), agentshare_kit::Error> {
        let mut tx = self.db.begin_write().await?;
        let still_there = sqlx::query(&format!(
            "SELECT id FROM workspaces WHERE id = $1{}",
            self.db.backend.for_update()
        ))
        .bind(&workspace.id)
        .fetch_optional(&mut *tx)
        .await?;
        if still_there.is_none() {
            return Err(agentshare_kit::Error::not_found(format!(
                "workspace {}",
                workspace.id
            )));
        }
        const NAMED: i64 = 5;
        let mut homed: Vec<String> = sqlx::query(
            "SELECT id, name FROM projects WHERE home_workspace_id = $1 AND deleted_at IS NULL \
             ORDER BY id LIMIT $2",
        )
        .bind(&workspace.id)
        .bind(NAMED)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|row| {
            let id: String = row.try_get("id")?;
            let name: String = row.try_get("name")?;
            Ok(format!("project {name:?} ({id})"))
        })
        .collect::<Result<_, sqlx::Error>>()?;
        homed.extend(
            crate::access::storage::agent_access::agents_homed_in(&mut tx, &workspace.id, NAMED)
                .await?,
        );
        if !homed.is_empty() {
            return Err(agentshare_kit::Error::Aborted(format!(
                "workspace {:?} is still the home of {}; move or delete them first",
                workspace.name,
                homed.join(", ")
            )));
        }
        for table in [
            "workspace_members",
            "project_workspaces",
            "session_workspaces",
            "agent_workspaces",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE workspace_id = $1"))
                .bind(&workspace.id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM workspaces WHERE id = $1")
            .bind(&workspace.id)
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut tx,
            &self.clock,
            audit::Change {
                org_id: &workspace.org_id,
                actor,
                action: "workspace.deleted",
                target_type: "workspace",
                target_id: &workspace.id,
                before: Some(serde_json::json!({ "name": workspace.name })),
                after: None,
            },
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Changes a workspace member's role, recording
    /// `workspace_member.role_changed`; `Ok(None)` if they are not in it.
    pub async fn change_workspace_role(
        &self,
        actor: &Principal,
        org_id: &str,
        workspace_id: &str,
        user_id: &str,
        role: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let Some(before) = sqlx::query(
            "SELECT role FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
        )
        .bind(workspace_id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| row.try_get::<String, _>("role"))
        .transpose()?
        else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE workspace_members SET role = $1 WHERE workspace_id = $2 AND user_id = $3",
        )
        .bind(role)
        .bind(workspace_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        audit::record(
            &mut tx,
            &self.clock,
            audit::Change {
                org_id,
                actor,
                action: "workspace_member.role_changed",
                target_type: "workspace_member",
                target_id: user_id,
                before: Some(serde_json::json!({ "workspace_id": workspace_id, "role": before })),
                after: Some(serde_json::json!({ "workspace_id": workspace_id, "role": role })),
            },
        )
        .await?;
        self.commit(tx).await?;
        Ok(Some(before))
    }
}

pub struct WorkspaceMemberRow {
    pub user: crate::tenancy::storage::members::UserRow,
    pub role: String,
    pub joined_at: i64,
}
