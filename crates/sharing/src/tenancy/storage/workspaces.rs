//! Orgs' settings and workspaces: storage, with each change audited in its
//! transaction.

use agentshare_kit::db::{self, is_unique_violation, new_id};
use agentshare_kit::identity::Principal;
use agentshare_kit::page::Page;
use agentshare_kit::{Error, Result};
use sqlx::{Any, Transaction};

use super::TenancyStorage;
use super::members::{MEMBER_COLUMNS, UserRow};
use super::orgs::{ORG_COLUMNS, OrgPolicy, OrgRow, WorkspaceRow};
use crate::tenancy::storage::audit;

/// ALREADY_EXISTS for a workspace name the org already uses; any other
/// database error as it is.
fn name_taken(name: &str) -> impl FnOnce(sqlx::Error) -> Error {
    move |error| {
        if is_unique_violation(&error) {
            Error::AlreadyExists(format!(
                "a workspace named {name:?} exists in this org; pick another name"
            ))
        } else {
            error.into()
        }
    }
}

fn org_view(org: &OrgRow) -> serde_json::Value {
    serde_json::json!({
        "name": org.name,
        "workspaces_enabled": org.workspaces_enabled,
        "policy": org.policy,
    })
}

/// A workspace with the viewer's role in it, if they are a member.
#[derive(sqlx::FromRow)]
pub struct VisibleWorkspace {
    #[sqlx(flatten)]
    pub workspace: WorkspaceRow,
    pub role: Option<String>,
}

/// An org with the user's role in it.
#[derive(sqlx::FromRow)]
pub struct OrgMembership {
    #[sqlx(flatten)]
    pub org: OrgRow,
    pub role: String,
}

/// One user's membership of one workspace of an org, as the calls that
/// change it name it.
#[derive(Clone, Copy)]
pub struct Membership<'a> {
    pub org_id: &'a str,
    pub workspace_id: &'a str,
    pub user_id: &'a str,
}

impl<'a> Membership<'a> {
    /// The audit record of `actor` doing `action` to this membership.
    fn change(self, actor: &'a Principal, action: &'static str) -> audit::Change<'a> {
        audit::Change::new(
            actor,
            self.org_id,
            action,
            ("workspace_member", self.user_id),
        )
    }
}

/// The members of workspace `$1`, whose [`MEMBER_COLUMNS`] make a
/// [`WorkspaceMemberRow`].
const WORKSPACE_MEMBERS: &str =
    "FROM workspace_members m JOIN users u ON u.id = m.user_id WHERE m.workspace_id = $1";

#[derive(sqlx::FromRow)]
pub struct WorkspaceMemberRow {
    #[sqlx(flatten)]
    pub user: UserRow,
    pub role: String,
    pub joined_at: i64,
}

/// Workspaces of org `$1` with the role of user `$2`, those they may see
/// (every one when `$3` is 1); a query narrows it with what it adds.
const VISIBLE: &str = "SELECT w.id, w.org_id, w.name, w.is_default, w.created_at, m.role FROM workspaces w \
     LEFT JOIN workspace_members m ON m.workspace_id = w.id AND m.user_id = $2 \
     WHERE w.org_id = $1 AND ($3 = 1 OR m.role IS NOT NULL)";

/// Inserts a workspace with `owner` as its owner, in `tx`.
pub(super) async fn insert_workspace(
    tx: &mut Transaction<'static, Any>,
    workspace: &WorkspaceRow,
    owner: &str,
) -> Result<(), sqlx::Error> {
    db::execute(
        &mut **tx,
        "INSERT INTO workspaces (id, org_id, name, is_default, created_at) VALUES ($1, $2, $3, $4, $5)",
        (
            &workspace.id,
            &workspace.org_id,
            &workspace.name,
            i64::from(workspace.is_default),
            workspace.created_at,
        ),
    )
    .await?;
    join_workspace(tx, &workspace.id, owner, "owner", workspace.created_at).await?;
    Ok(())
}

/// Adds `user_id` to a workspace with `role`, in `tx`; `false` if they
/// already belong.
pub(super) async fn join_workspace(
    tx: &mut Transaction<'static, Any>,
    workspace_id: &str,
    user_id: &str,
    role: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    Ok(db::execute(
        &mut **tx,
        "INSERT INTO workspace_members (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
        (workspace_id, user_id, role, now),
    )
    .await?
    .rows_affected()
        == 1)
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
        policy: Option<OrgPolicy>,
    ) -> Result<OrgRow> {
        let after = OrgRow {
            id: before.id.clone(),
            name: name.map_or_else(|| before.name.clone(), str::to_string),
            workspaces_enabled: workspaces_enabled.unwrap_or(before.workspaces_enabled),
            default_workspace_id: before.default_workspace_id.clone(),
            created_at: before.created_at,
            policy: policy.unwrap_or(before.policy),
        };
        let mut tx = self.db.begin_write().await?;
        let rules = after.policy;
        db::execute(
            &mut *tx,
            "UPDATE orgs SET name = $1, workspaces_enabled = $2, forbid_delegate_grants = $4, \
             forbid_external_grants = $5, forbid_shared_integrations = $6, \
             runs_per_minute_per_principal = $7 WHERE id = $3",
            (
                &after.name,
                i64::from(after.workspaces_enabled),
                &after.id,
                i64::from(rules.forbid_delegate_grants),
                i64::from(rules.forbid_external_grants),
                i64::from(rules.forbid_shared_integrations),
                rules.runs_per_minute_per_principal,
            ),
        )
        .await?;
        let change = audit::Change::new(actor, &after.id, "org.updated", ("org", &after.id))
            .before(org_view(before))
            .after(org_view(&after));
        self.commit_audited(tx, change).await?;
        Ok(after)
    }

    /// Creates a workspace owned by the actor, recording `workspace.created`.
    pub async fn create_workspace(
        &self,
        actor: &Principal,
        org_id: &str,
        name: &str,
    ) -> Result<WorkspaceRow> {
        let owner = actor.user_id.as_deref().unwrap_or_default();
        let workspace = WorkspaceRow {
            id: new_id(),
            org_id: org_id.into(),
            name: name.into(),
            is_default: false,
            created_at: self.clock.now_micros(),
        };
        let mut tx = self.db.begin_write().await?;
        insert_workspace(&mut tx, &workspace, owner)
            .await
            .map_err(name_taken(name))?;
        let change = audit::Change::new(
            actor,
            org_id,
            "workspace.created",
            ("workspace", &workspace.id),
        );
        let fields = serde_json::json!({ "name": name, "owner_user_id": owner });
        self.commit_audited(tx, change.after(fields)).await?;
        Ok(workspace)
    }

    /// Every workspace of the org the user may see (every one when `all`).
    pub async fn workspaces_visible_to(
        &self,
        org_id: &str,
        user_id: &str,
        all: bool,
    ) -> Result<Vec<WorkspaceRow>> {
        let sql = format!("{VISIBLE} ORDER BY w.id");
        let rows: Vec<VisibleWorkspace> =
            db::fetch_all(&self.db.pool, &sql, (org_id, user_id, i64::from(all))).await?;
        Ok(rows.into_iter().map(|row| row.workspace).collect())
    }

    /// A page of the org's workspaces the user may see (every one when
    /// `all`), oldest first, with the user's role where they are a member.
    pub async fn workspace_page(
        &self,
        org_id: &str,
        user_id: &str,
        all: bool,
        page: &Page,
    ) -> Result<Vec<VisibleWorkspace>> {
        let sql = format!("{VISIBLE} AND ($4 = '' OR w.id > $4) ORDER BY w.id LIMIT $5");
        let visible = (org_id, user_id, i64::from(all), page);
        Ok(db::fetch_all(&self.db.pool, &sql, visible).await?)
    }

    /// One workspace of the org if the user may see it (any when `all`).
    pub async fn workspace_visible_to(
        &self,
        org_id: &str,
        workspace_id: &str,
        user_id: &str,
        all: bool,
    ) -> Result<Option<VisibleWorkspace>> {
        let sql = format!("{VISIBLE} AND w.id = $4");
        let visible = (org_id, user_id, i64::from(all), workspace_id);
        Ok(db::fetch_optional(&self.db.pool, &sql, visible).await?)
    }

    /// Makes `workspace_id` the session's active workspace in the org.
    pub async fn switch_workspace(
        &self,
        session_id: &str,
        org_id: &str,
        user_id: &str,
        workspace_id: &str,
    ) -> Result<()> {
        db::execute(
            &self.db.pool,
            "INSERT INTO session_workspaces (session_id, org_id, user_id, workspace_id, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id, org_id) \
             DO UPDATE SET workspace_id = excluded.workspace_id, updated_at = excluded.updated_at",
            (
                session_id,
                org_id,
                user_id,
                workspace_id,
                self.clock.now_micros(),
            ),
        )
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
    ) -> Result<Option<String>> {
        Ok(db::scalar::fetch_optional(
            &self.db.pool,
            "SELECT workspace_id FROM session_workspaces WHERE session_id = $1 AND org_id = $2 AND user_id = $3",
            (session_id, org_id, user_id),
        )
        .await?)
    }

    /// The orgs the user belongs to with their role, oldest membership first.
    pub async fn orgs_of(&self, user_id: &str, page: &Page) -> Result<Vec<OrgMembership>> {
        Ok(db::fetch_all(
            &self.db.pool,
            &format!(
                "SELECT {ORG_COLUMNS}, m.role FROM org_members m JOIN orgs o ON o.id = m.org_id \
                 JOIN workspaces w ON w.org_id = o.id AND w.is_default = 1 \
                 WHERE m.user_id = $1 AND ($2 = '' OR o.id > $2) ORDER BY o.id LIMIT $3"
            ),
            (user_id, page),
        )
        .await?)
    }

    /// Whether the workspace exists in the org (whoever may see it).
    pub async fn workspace_exists(&self, org_id: &str, workspace_id: &str) -> Result<bool> {
        Ok(db::exists(
            &self.db.pool,
            "SELECT 1 FROM workspaces WHERE org_id = $1 AND id = $2",
            (org_id, workspace_id),
        )
        .await?)
    }

    /// A workspace's members, oldest first (by user id).
    pub async fn workspace_members(
        &self,
        workspace_id: &str,
        page: &Page,
    ) -> Result<Vec<WorkspaceMemberRow>> {
        let sql = format!(
            "SELECT {MEMBER_COLUMNS} {WORKSPACE_MEMBERS} AND ($2 = '' OR u.id > $2) ORDER BY u.id LIMIT $3"
        );
        Ok(db::fetch_all(&self.db.pool, &sql, (workspace_id, page)).await?)
    }

    /// One member of a workspace.
    pub async fn workspace_member(
        &self,
        workspace_id: &str,
        user_id: &str,
    ) -> Result<Option<WorkspaceMemberRow>> {
        let sql = format!("SELECT {MEMBER_COLUMNS} {WORKSPACE_MEMBERS} AND u.id = $2");
        Ok(db::fetch_optional(&self.db.pool, &sql, (workspace_id, user_id)).await?)
    }

    /// Adds an org member to a workspace, recording `workspace_member.added`;
    /// `Ok(false)` if they already belong.
    pub async fn add_workspace_member(
        &self,
        actor: &Principal,
        member: Membership<'_>,
        role: &str,
    ) -> Result<bool> {
        let mut tx = self.db.begin_write().await?;
        let now = self.clock.now_micros();
        let (workspace_id, user_id) = (member.workspace_id, member.user_id);
        let added = join_workspace(&mut tx, workspace_id, user_id, role, now).await?;
        let fields = serde_json::json!({ "workspace_id": workspace_id, "role": role });
        let change = member.change(actor, "workspace_member.added");
        self.commit_audited_if(added, tx, change.after(fields))
            .await
    }

    /// Removes a user from a workspace, recording `member.removed`;
    /// `Ok(false)` if they were not in it.
    pub async fn remove_workspace_member(
        &self,
        actor: &Principal,
        member: Membership<'_>,
    ) -> Result<bool> {
        let mut tx = self.db.begin_write().await?;
        let removed = db::execute(
            &mut *tx,
            "DELETE FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
            (member.workspace_id, member.user_id),
        )
        .await?
        .rows_affected()
            == 1;
        let fields = serde_json::json!({ "workspace_id": member.workspace_id });
        let change = member.change(actor, "member.removed");
        self.commit_audited_if(removed, tx, change.before(fields))
            .await
    }

    /// Renames a workspace, recording `workspace.updated`.
    pub async fn rename_workspace(
        &self,
        actor: &Principal,
        before: &WorkspaceRow,
        name: &str,
    ) -> Result<WorkspaceRow> {
        let mut tx = self.db.begin_write().await?;
        db::execute(
            &mut *tx,
            "UPDATE workspaces SET name = $1 WHERE id = $2",
            (name, &before.id),
        )
        .await
        .map_err(name_taken(name))?;
        let target = ("workspace", before.id.as_str());
        let change = audit::Change::new(actor, &before.org_id, "workspace.updated", target)
            .before(serde_json::json!({ "name": before.name }))
            .after(serde_json::json!({ "name": name }));
        self.commit_audited(tx, change).await?;
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
    ) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        let still_there = db::exists(
            &mut *tx,
            &self.db.locking("SELECT id FROM workspaces WHERE id = $1"),
            (&workspace.id,),
        )
        .await?;
        if !still_there {
            return Err(Error::not_found(format!("workspace {}", workspace.id)));
        }
        const NAMED: i64 = 5;
        let projects: Vec<(String, String)> = db::fetch_all(
            &mut *tx,
            "SELECT id, name FROM projects WHERE home_workspace_id = $1 AND deleted_at IS NULL \
             ORDER BY id LIMIT $2",
            (&workspace.id, NAMED),
        )
        .await?;
        let mut homed: Vec<String> = projects
            .into_iter()
            .map(|(id, name)| format!("project {name:?} ({id})"))
            .collect();
        homed.extend(
            crate::access::storage::agent_access::agents_homed_in(&mut tx, &workspace.id, NAMED)
                .await?,
        );
        if !homed.is_empty() {
            return Err(Error::Aborted(format!(
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
            db::execute(
                &mut *tx,
                &format!("DELETE FROM {table} WHERE workspace_id = $1"),
                (&workspace.id,),
            )
            .await?;
        }
        db::execute(
            &mut *tx,
            "DELETE FROM workspaces WHERE id = $1",
            (&workspace.id,),
        )
        .await?;
        let target = ("workspace", workspace.id.as_str());
        let change = audit::Change::new(actor, &workspace.org_id, "workspace.deleted", target);
        let fields = serde_json::json!({ "name": workspace.name });
        self.commit_audited(tx, change.before(fields)).await
    }

    /// Changes a workspace member's role, recording
    /// `workspace_member.role_changed`; `Ok(None)` if they are not in it.
    pub async fn change_workspace_role(
        &self,
        actor: &Principal,
        member: Membership<'_>,
        role: &str,
    ) -> Result<Option<String>> {
        let mut tx = self.db.begin_write().await?;
        let before: Option<String> = db::scalar::fetch_optional(
            &mut *tx,
            "SELECT role FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
            (member.workspace_id, member.user_id),
        )
        .await?;
        let Some(before) = before else {
            return Ok(None);
        };
        db::execute(
            &mut *tx,
            "UPDATE workspace_members SET role = $1 WHERE workspace_id = $2 AND user_id = $3",
            (role, member.workspace_id, member.user_id),
        )
        .await?;
        let workspace_id = member.workspace_id;
        let change = member
            .change(actor, "workspace_member.role_changed")
            .before(serde_json::json!({ "workspace_id": workspace_id, "role": before }))
            .after(serde_json::json!({ "workspace_id": workspace_id, "role": role }));
        self.commit_audited(tx, change).await?;
        Ok(Some(before))
    }
}
