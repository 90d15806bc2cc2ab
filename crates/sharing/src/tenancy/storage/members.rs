//! Org membership: storage, with each change audited in its transaction.

use agentshare_kit::identity::Principal;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::TenancyStorage;
use crate::tenancy::rules::OrgRole;
use crate::tenancy::storage::audit;

pub struct UserRow {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub created_at: i64,
}

impl UserRow {
    /// Reads `id`, `email`, `display_name` and `created_at` of a users row.
    pub fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            display_name: row.try_get("display_name")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

pub struct MemberRow {
    pub user: UserRow,
    pub role: OrgRole,
    pub joined_at: i64,
}

fn member_from_row(row: &AnyRow) -> Result<MemberRow, sqlx::Error> {
    let role: String = row.try_get("role")?;
    Ok(MemberRow {
        user: UserRow::from_row(row)?,
        role: OrgRole::parse(&role)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown org role {role:?}").into()))?,
        joined_at: row.try_get("joined_at")?,
    })
}

const MEMBER_COLUMNS: &str =
    "u.id, u.email, u.display_name, u.created_at, m.role, m.created_at AS joined_at";

impl TenancyStorage {
    /// A user by id, or by email when `by_email`.
    pub async fn user_by(&self, key: &str, by_email: bool) -> Result<Option<UserRow>, sqlx::Error> {
        let sql = if by_email {
            "SELECT id, email, display_name, created_at FROM users WHERE email = $1 ORDER BY created_at LIMIT 1"
        } else {
            "SELECT id, email, display_name, created_at FROM users WHERE id = $1"
        };
        sqlx::query(sql)
            .bind(key)
            .fetch_optional(&self.db.pool)
            .await?
            .as_ref()
            .map(UserRow::from_row)
            .transpose()
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
    ) -> Result<bool, sqlx::Error> {
        let now = self.clock.now_micros();
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO org_members (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(org_id)
        .bind(user_id)
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO workspace_members (workspace_id, user_id, role, created_at) VALUES ($1, $2, 'member', $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(default_workspace_id)
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        audit::record(
            &mut tx,
            &self.clock,
            audit::Change {
                org_id,
                actor,
                action: "member.added",
                target_type: "org_member",
                target_id: user_id,
                before: None,
                after: Some(serde_json::json!({ "role": role.as_str() })),
            },
        )
        .await?;
        self.commit(tx).await?;
        Ok(true)
    }

    pub async fn org_member(
        &self,
        org_id: &str,
        user_id: &str,
    ) -> Result<Option<MemberRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {MEMBER_COLUMNS} FROM org_members m JOIN users u ON u.id = m.user_id \
             WHERE m.org_id = $1 AND m.user_id = $2"
        );
        sqlx::query(&sql)
            .bind(org_id)
            .bind(user_id)
            .fetch_optional(&self.db.pool)
            .await?
            .as_ref()
            .map(member_from_row)
            .transpose()
    }

    /// The org's members, oldest first (by user id, which is time-ordered).
    pub async fn org_members(
        &self,
        org_id: &str,
        after_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<MemberRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {MEMBER_COLUMNS} FROM org_members m JOIN users u ON u.id = m.user_id \
             WHERE m.org_id = $1 AND ($2 = '' OR u.id > $2) ORDER BY u.id LIMIT $3"
        );
        sqlx::query(&sql)
            .bind(org_id)
            .bind(after_id.unwrap_or_default())
            .bind(limit)
            .fetch_all(&self.db.pool)
            .await?
            .iter()
            .map(member_from_row)
            .collect()
    }

    /// Owners of the org, counted inside `tx`'s snapshot.
    async fn owner_count(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        org_id: &str,
    ) -> Result<i64, sqlx::Error> {
        sqlx::query(
            "SELECT COUNT(*) AS owners FROM org_members WHERE org_id = $1 AND role = 'owner'",
        )
        .bind(org_id)
        .fetch_one(&mut **tx)
        .await?
        .try_get("owners")
    }

    /// Changes a member's role, recording `member.role_changed`. Refuses
    /// (with `Ok(Err(..))`) to take the org's last owner away.
    pub async fn change_org_role(
        &self,
        actor: &Principal,
        org_id: &str,
        member: &MemberRow,
        role: OrgRole,
    ) -> Result<Result<(), LastOwner>, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        if member.role == OrgRole::Owner
            && role != OrgRole::Owner
            && Self::owner_count(&mut tx, org_id).await? <= 1
        {
            return Ok(Err(LastOwner));
        }
        sqlx::query("UPDATE org_members SET role = $1 WHERE org_id = $2 AND user_id = $3")
            .bind(role.as_str())
            .bind(org_id)
            .bind(&member.user.id)
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut tx,
            &self.clock,
            audit::Change {
                org_id,
                actor,
                action: "member.role_changed",
                target_type: "org_member",
                target_id: &member.user.id,
                before: Some(serde_json::json!({ "role": member.role.as_str() })),
                after: Some(serde_json::json!({ "role": role.as_str() })),
            },
        )
        .await?;
        self.commit(tx).await?;
        Ok(Ok(()))
    }

    /// Removes a member from the org and all its workspaces, recording
    /// `member.removed`. Refuses to remove the last owner.
    pub async fn remove_org_member(
        &self,
        actor: &Principal,
        org_id: &str,
        member: &MemberRow,
    ) -> Result<Result<(), LastOwner>, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        if member.role == OrgRole::Owner && Self::owner_count(&mut tx, org_id).await? <= 1 {
            return Ok(Err(LastOwner));
        }
        sqlx::query(
            "DELETE FROM workspace_members WHERE user_id = $1 \
             AND workspace_id IN (SELECT id FROM workspaces WHERE org_id = $2)",
        )
        .bind(&member.user.id)
        .bind(org_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM org_members WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(&member.user.id)
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut tx,
            &self.clock,
            audit::Change {
                org_id,
                actor,
                action: "member.removed",
                target_type: "org_member",
                target_id: &member.user.id,
                before: Some(serde_json::json!({ "role": member.role.as_str() })),
                after: None,
            },
        )
        .await?;
        self.commit(tx).await?;
        Ok(Ok(()))
    }
}

/// The change would leave the org without an owner.
pub struct LastOwner;
