//! Users and orgs: storage. An org is created with its default workspace and
//! its owner's memberships in one transaction.

use agentshare_kit::Result;
use agentshare_kit::db::{self, Stored, is_unique_violation, new_id};
use agentshare_kit::events::{self, NewEvent};

use super::TenancyStorage;
use super::workspaces::OrgMembership;
use crate::tenancy::rules::OrgRole;

/// An org; its switch is stored as 0 or 1 on both backends.
#[derive(sqlx::FromRow)]
pub struct OrgRow {
    pub id: String,
    pub name: String,
    #[sqlx(try_from = "Stored<i64>")]
    pub workspaces_enabled: bool,
    pub default_workspace_id: String,
    pub created_at: i64,
    #[sqlx(flatten)]
    pub policy: OrgPolicy,
}

/// What an org's owners allow in it (DESIGN.md, Grants); flags are stored
/// as 0 or 1, and 0 runs per minute is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct OrgPolicy {
    #[sqlx(try_from = "Stored<i64>")]
    pub forbid_delegate_grants: bool,
    #[sqlx(try_from = "Stored<i64>")]
    pub forbid_external_grants: bool,
    #[sqlx(try_from = "Stored<i64>")]
    pub forbid_shared_integrations: bool,
    pub runs_per_minute_per_principal: i64,
}

/// The columns of [`OrgRow`], for `orgs o` joined with its default
/// workspace `w`.
pub const ORG_COLUMNS: &str = "o.id, o.name, o.workspaces_enabled, o.created_at, \
     w.id AS default_workspace_id, o.forbid_delegate_grants, o.forbid_external_grants, \
     o.forbid_shared_integrations, o.runs_per_minute_per_principal";

/// A workspace; `is_default` is stored as 0 or 1 on both backends.
#[derive(Clone, sqlx::FromRow)]
pub struct WorkspaceRow {
    pub id: String,
    pub org_id: String,
    pub name: String,
    #[sqlx(try_from = "Stored<i64>")]
    pub is_default: bool,
    pub created_at: i64,
}

impl TenancyStorage {
    /// The user with this IdP subject, created on first sight. Email and
    /// name follow the latest token.
    pub async fn upsert_user(
        &self,
        subject: &str,
        email: &str,
        display_name: &str,
    ) -> Result<String> {
        let known: Option<(String, String, String)> = db::fetch_optional(
            &self.db.pool,
            "SELECT id, email, display_name FROM users WHERE subject = $1",
            (subject,),
        )
        .await?;
        if let Some((id, old_email, old_name)) = known {
            if old_email != email || old_name != display_name {
                db::execute(
                    &self.db.pool,
                    "UPDATE users SET email = $1, display_name = $2 WHERE id = $3",
                    (email, display_name, &id),
                )
                .await?;
            }
            return Ok(id);
        }
        let id = new_id();
        let inserted = db::execute(
            &self.db.pool,
            "INSERT INTO users (id, subject, email, display_name, created_at) VALUES ($1, $2, $3, $4, $5)",
            (&id, subject, email, display_name, self.clock.now_micros()),
        )
        .await;
        match inserted {
            Ok(_) => Ok(id),
            // A concurrent first request created it; use theirs.
            Err(e) if is_unique_violation(&e) => Ok(db::scalar::fetch_one(
                &self.db.pool,
                "SELECT id FROM users WHERE subject = $1",
                (subject,),
            )
            .await?),
            Err(e) => Err(e.into()),
        }
    }

    /// Every org the user belongs to, with their role there, oldest
    /// membership first: a caller's whole standing in one statement.
    pub async fn memberships_of(&self, user_id: &str) -> Result<Vec<OrgMembership>> {
        Ok(db::fetch_all(
            &self.db.pool,
            &format!(
                "SELECT {ORG_COLUMNS}, m.role FROM org_members m JOIN orgs o ON o.id = m.org_id \
                 JOIN workspaces w ON w.org_id = o.id AND w.is_default = 1 \
                 WHERE m.user_id = $1 ORDER BY m.created_at, m.org_id"
            ),
            (user_id,),
        )
        .await?)
    }

    pub async fn org_role(&self, org_id: &str, user_id: &str) -> Result<Option<OrgRole>> {
        let role: Option<String> = db::scalar::fetch_optional(
            &self.db.pool,
            "SELECT role FROM org_members WHERE org_id = $1 AND user_id = $2",
            (org_id, user_id),
        )
        .await?;
        Ok(role.as_deref().and_then(OrgRole::parse))
    }

    pub async fn org(&self, org_id: &str) -> Result<Option<OrgRow>> {
        Ok(db::fetch_optional(
            &self.db.pool,
            &format!(
                "SELECT {ORG_COLUMNS} FROM orgs o JOIN workspaces w ON w.org_id = o.id AND w.is_default = 1 \
                 WHERE o.id = $1"
            ),
            (org_id,),
        )
        .await?)
    }

    /// Whether the user is a member of this workspace of this org.
    pub async fn is_workspace_member(
        &self,
        org_id: &str,
        workspace_id: &str,
        user_id: &str,
    ) -> Result<bool> {
        Ok(db::exists(
            &self.db.pool,
            "SELECT 1 FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id \
             WHERE w.org_id = $1 AND m.workspace_id = $2 AND m.user_id = $3",
            (org_id, workspace_id, user_id),
        )
        .await?)
    }

    /// The user's workspaces in an org, the default one first.
    pub async fn workspace_ids_of(&self, org_id: &str, user_id: &str) -> Result<Vec<String>> {
        Ok(db::scalar::fetch_all(
            &self.db.pool,
            "SELECT w.id FROM workspaces w JOIN workspace_members m ON m.workspace_id = w.id \
             WHERE w.org_id = $1 AND m.user_id = $2 ORDER BY w.is_default DESC, w.created_at, w.id",
            (org_id, user_id),
        )
        .await?)
    }

    /// Creates an org, its default workspace and the owner's memberships, and
    /// records `org.created`, in one transaction.
    pub async fn create_org(&self, name: &str, owner_id: &str) -> Result<(OrgRow, WorkspaceRow)> {
        let now = self.clock.now_micros();
        let org = OrgRow {
            id: new_id(),
            name: name.to_string(),
            workspaces_enabled: false,
            default_workspace_id: new_id(),
            created_at: now,
            policy: OrgPolicy::default(),
        };
        let workspace = WorkspaceRow {
            id: org.default_workspace_id.clone(),
            org_id: org.id.clone(),
            name: "Default".into(),
            is_default: true,
            created_at: now,
        };
        let mut tx = self.db.begin_write().await?;
        db::execute(
            &mut *tx,
            "INSERT INTO orgs (id, name, workspaces_enabled, created_at) VALUES ($1, $2, 0, $3)",
            (&org.id, &org.name, now),
        )
        .await?;
        super::workspaces::insert_workspace(&mut tx, &workspace, owner_id).await?;
        db::execute(
            &mut *tx,
            "INSERT INTO org_members (org_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3)",
            (&org.id, owner_id, now),
        )
        .await?;
        let created = NewEvent {
            kind: "org.created",
            subject_id: org.id.clone(),
            org_id: org.id.clone(),
            payload: serde_json::json!({ "owner_user_id": owner_id, "default_workspace_id": workspace.id }),
        };
        events::append(&mut tx, &self.clock, &created).await?;
        self.commit(tx).await?;
        Ok((org, workspace))
    }
}
