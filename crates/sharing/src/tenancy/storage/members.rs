//! Org membership: storage, with each change audited in its transaction.

use agentshare_kit::Result;
use agentshare_kit::db;
use agentshare_kit::identity::Principal;
use agentshare_kit::page::Page;

use super::TenancyStorage;
use crate::tenancy::rules::OrgRole;
use crate::tenancy::storage::audit;

#[derive(sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
pub struct MemberRow {
    #[sqlx(flatten)]
    pub user: UserRow,
    #[sqlx(try_from = "String")]
    pub role: OrgRole,
    pub joined_at: i64,
}

/// A member as [`MemberRow`] reads one, from users `u` and their
/// memberships `m`.
pub(super) const MEMBER_COLUMNS: &str =
    "u.id, u.email, u.display_name, u.created_at, m.role, m.created_at AS joined_at";

/// The members of org `$1`.
const ORG_MEMBERS: &str = "FROM org_members m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1";

/// A role as the audit trail keeps it.
fn role_view(role: &str) -> serde_json::Value {
    serde_json::json!({ "role": role })
}

impl TenancyStorage {
    /// A user by id, or by email when `by_email`.
    pub async fn user_by(&self, key: &str, by_email: bool) -> Result<Option<UserRow>> {
        let sql = if by_email {
            "SELECT id, email, display_name, created_at FROM users WHERE email = $1 ORDER BY created_at LIMIT 1"
        } else {
            "SELECT id, email, display_name, created_at FROM users WHERE id = $1"
        };
        Ok(db::fetch_optional(&self.db.pool, sql, (key,)).await?)
    }

    /// Adds `user` to the org with `role`, and to its default workspace as a
    /// member, recording `member.added`. `Ok(false)` if already a member.
    pub async fn add_org_member(
        &self,
        actor: &Principal,
        org_id: &str,
        default_workspace_id: &str,
        user_id: &str,
        role: OrgRole,
    ) -> Result<bool> {
        let now = self.clock.now_micros();
        let mut tx = self.db.begin_write().await?;
        let inserted = db::execute(
            &mut *tx,
            "INSERT INTO org_members (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            (org_id, user_id, role.as_str(), now),
        )
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        super::workspaces::join_workspace(&mut tx, default_workspace_id, user_id, "member", now)
            .await?;
        let change = audit::Change::new(actor, org_id, "member.added", ("org_member", user_id));
        self.commit_audited(tx, change.after(role_view(role.as_str())))
            .await?;
        Ok(true)
    }

    pub async fn org_member(&self, org_id: &str, user_id: &str) -> Result<Option<MemberRow>> {
        let sql = format!("SELECT {MEMBER_COLUMNS} {ORG_MEMBERS} AND m.user_id = $2");
        Ok(db::fetch_optional(&self.db.pool, &sql, (org_id, user_id)).await?)
    }

    /// The org's members, oldest first (by user id, which is time-ordered).
    pub async fn org_members(&self, org_id: &str, page: &Page) -> Result<Vec<MemberRow>> {
        let sql = format!(
            "SELECT {MEMBER_COLUMNS} {ORG_MEMBERS} AND ($2 = '' OR u.id > $2) ORDER BY u.id LIMIT $3"
        );
        Ok(db::fetch_all(&self.db.pool, &sql, (org_id, page)).await?)
    }

    /// Owners of the org, counted inside `tx`'s snapshot.
    async fn owner_count(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        org_id: &str,
    ) -> Result<i64> {
        Ok(db::scalar::fetch_one(
            &mut **tx,
            "SELECT COUNT(*) AS owners FROM org_members WHERE org_id = $1 AND role = 'owner'",
            (org_id,),
        )
        .await?)
    }

    /// Changes a member's role, recording `member.role_changed`. Refuses
    /// (with `Ok(Err(..))`) to take the org's last owner away.
    pub async fn change_org_role(
        &self,
        actor: &Principal,
        org_id: &str,
        member: &MemberRow,
        role: OrgRole,
    ) -> Result<Result<(), LastOwner>> {
        let mut tx = self.db.begin_write().await?;
        if member.role == OrgRole::Owner
            && role != OrgRole::Owner
            && Self::owner_count(&mut tx, org_id).await? <= 1
        {
            return Ok(Err(LastOwner));
        }
        db::execute(
            &mut *tx,
            "UPDATE org_members SET role = $1 WHERE org_id = $2 AND user_id = $3",
            (role.as_str(), org_id, &member.user.id),
        )
        .await?;
        let target = ("org_member", member.user.id.as_str());
        let change = audit::Change::new(actor, org_id, "member.role_changed", target)
            .before(role_view(member.role.as_str()))
            .after(role_view(role.as_str()));
        self.commit_audited(tx, change).await?;
        Ok(Ok(()))
    }

    /// Removes a member from the org and all its workspaces, recording
    /// `member.removed`. Refuses to remove the last owner.
    pub async fn remove_org_member(
        &self,
        actor: &Principal,
        org_id: &str,
        member: &MemberRow,
    ) -> Result<Result<(), LastOwner>> {
        let mut tx = self.db.begin_write().await?;
        if member.role == OrgRole::Owner && Self::owner_count(&mut tx, org_id).await? <= 1 {
            return Ok(Err(LastOwner));
        }
        db::execute(
            &mut *tx,
            "DELETE FROM workspace_members WHERE user_id = $1 \
             AND workspace_id IN (SELECT id FROM workspaces WHERE org_id = $2)",
            (&member.user.id, org_id),
        )
        .await?;
        db::execute(
            &mut *tx,
            "DELETE FROM org_members WHERE org_id = $1 AND user_id = $2",
            (org_id, &member.user.id),
        )
        .await?;
        let target = ("org_member", member.user.id.as_str());
        let change = audit::Change::new(actor, org_id, "member.removed", target);
        self.commit_audited(tx, change.before(role_view(member.role.as_str())))
            .await?;
        Ok(Ok(()))
    }
}

/// The change would leave the org without an owner.
pub struct LastOwner;
