//! Projects: storage. A project has a home workspace and may be shared into
//! more, by the same rules as agents (DESIGN.md, "Access model (sharing)",
//! Visibility).

use agentshare_kit::Result;
use agentshare_kit::db::{self, new_id};
use agentshare_kit::identity::Principal;
use agentshare_kit::page::Page;

use super::TenancyStorage;
use crate::tenancy::storage::audit;

#[derive(Clone, sqlx::FromRow)]
pub struct ProjectRow {
    pub id: String,
    pub org_id: String,
    pub home_workspace_id: String,
    pub owner_user_id: String,
    pub name: String,
    pub description: String,
    pub revision: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "p.id, p.org_id, p.home_workspace_id, p.owner_user_id, p.name, p.description, p.revision, \
                       p.created_at, p.updated_at";

/// Projects a user can see: any of the org's when workspaces are off, else
/// those whose home or listed workspaces include one of the user's.
const VISIBLE: &str = "p.org_id = $1 AND p.deleted_at IS NULL AND ($2 = 0 OR EXISTS (\
    SELECT 1 FROM workspace_members m WHERE m.user_id = $3 AND (m.workspace_id = p.home_workspace_id \
    OR m.workspace_id IN (SELECT pw.workspace_id FROM project_workspaces pw WHERE pw.project_id = p.id))))";

/// Who is asking, for visibility.
pub struct Viewer<'a> {
    pub org_id: &'a str,
    pub user_id: &'a str,
    pub workspaces_enabled: bool,
}

impl TenancyStorage {
    pub async fn create_project(&self, project: &ProjectRow) -> Result<()> {
        db::execute(
            &self.db.pool,
            "INSERT INTO projects (id, org_id, home_workspace_id, owner_user_id, name, description, revision, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            (
                &project.id,
                &project.org_id,
                &project.home_workspace_id,
                &project.owner_user_id,
                &project.name,
                &project.description,
                project.revision,
                project.created_at,
            ),
        )
        .await?;
        Ok(())
    }

    pub async fn visible_project(
        &self,
        viewer: &Viewer<'_>,
        project_id: &str,
    ) -> Result<Option<ProjectRow>> {
        let sql = format!("SELECT {COLUMNS} FROM projects p WHERE {VISIBLE} AND p.id = $4");
        Ok(db::fetch_optional(
            &self.db.pool,
            &sql,
            (
                viewer.org_id,
                i64::from(viewer.workspaces_enabled),
                viewer.user_id,
                project_id,
            ),
        )
        .await?)
    }

    /// Projects in a workspace (home or listed), oldest first.
    pub async fn projects_in(
        &self,
        org_id: &str,
        workspace_id: &str,
        page: &Page,
    ) -> Result<Vec<ProjectRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM projects p WHERE p.org_id = $1 AND p.deleted_at IS NULL AND \
             (p.home_workspace_id = $2 OR p.id IN (SELECT project_id FROM project_workspaces WHERE workspace_id = $2)) \
             AND ($3 = '' OR p.id > $3) ORDER BY p.id LIMIT $4"
        );
        Ok(db::fetch_all(&self.db.pool, &sql, (org_id, workspace_id, page)).await?)
    }

    /// Writes name and description if the revision still matches; `false`
    /// when another change came first.
    pub async fn update_project(
        &self,
        project: &ProjectRow,
        expected_revision: i64,
    ) -> Result<bool> {
        Ok(db::execute(
            &self.db.pool,
            "UPDATE projects SET name = $1, description = $2, revision = revision + 1, updated_at = $3 \
             WHERE id = $4 AND revision = $5 AND deleted_at IS NULL",
            (
                &project.name,
                &project.description,
                project.updated_at,
                &project.id,
                expected_revision,
            ),
        )
        .await?
        .rows_affected()
            == 1)
    }

    pub async fn delete_project(&self, project_id: &str) -> Result<()> {
        db::execute(
            &self.db.pool,
            "UPDATE projects SET deleted_at = $1 WHERE id = $2",
            (self.clock.now_micros(), project_id),
        )
        .await?;
        Ok(())
    }

    /// The workspaces a project is listed in, beside its home.
    pub async fn project_workspace_ids(&self, project_id: &str) -> Result<Vec<String>> {
        Ok(db::scalar::fetch_all(
            &self.db.pool,
            "SELECT workspace_id FROM project_workspaces WHERE project_id = $1 ORDER BY workspace_id",
            (project_id,),
        )
        .await?)
    }

    /// Replaces a project's listed workspaces, recording
    /// `project.workspaces_changed` with what was added and removed.
    pub async fn set_project_workspaces(
        &self,
        actor: &Principal,
        project: &ProjectRow,
        before: &[String],
        after: &[String],
    ) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        db::execute(
            &mut *tx,
            "DELETE FROM project_workspaces WHERE project_id = $1",
            (&project.id,),
        )
        .await?;
        for workspace_id in after {
            db::execute(
                &mut *tx,
                "INSERT INTO project_workspaces (project_id, workspace_id) VALUES ($1, $2)",
                (&project.id, workspace_id),
            )
            .await?;
        }
        let removed: Vec<&String> = before.iter().filter(|w| !after.contains(w)).collect();
        let target = ("project", project.id.as_str());
        let change =
            audit::Change::new(actor, &project.org_id, "project.workspaces_changed", target)
                .before(serde_json::json!({ "workspace_ids": before }))
                .after(
                    serde_json::json!({ "workspace_ids": after, "removed_workspace_ids": removed }),
                );
        self.commit_audited(tx, change).await?;
        Ok(())
    }
}

/// A new project, owned by `owner`, at home in `home`.
pub fn new_project(
    org_id: &str,
    home: &str,
    owner: &str,
    name: String,
    description: String,
    now: i64,
) -> ProjectRow {
    ProjectRow {
        id: new_id(),
        org_id: org_id.into(),
        home_workspace_id: home.into(),
        owner_user_id: owner.into(),
        name,
        description,
        revision: 1,
        created_at: now,
        updated_at: now,
    }
}
