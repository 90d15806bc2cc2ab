//! Seeding many automation subscriptions at once, for the firing tests and
//! the mass-fire bench: one real subscription made through the API is the
//! template, and its row is copied in the scheduler's database for every
//! other (user, automation) pair, each due at the same instant. Creating
//! them one by one through Subscribe would take longer than the runs.

use agentshare_kit::db::Db;

/// One subscription to copy the template into.
pub struct Pair {
    pub user_id: String,
    pub automation_key: String,
    pub task: String,
}

/// Rows one INSERT writes; far below both backends' limits on binds.
const CHUNK: usize = 400;

/// Copies subscription `template` once per pair, enabled and due at `due`
/// (microseconds). Returns how many rows were written.
pub async fn copy_subscriptions(db: &Db, template: &str, pairs: &[Pair], due: i64) -> usize {
    let mut written = 0;
    for chunk in pairs.chunks(CHUNK) {
        let mut values = Vec::with_capacity(chunk.len());
        let mut n = 2;
        for _ in chunk {
            values.push(format!("(${}, ${}, ${}, ${})", n, n + 1, n + 2, n + 3));
            n += 4;
        }
        // `VALUES` in FROM names its columns column1.. on both backends.
        let sql = format!(
            "INSERT INTO subscriptions (id, org_id, agent_id, automation_key, user_id, \
             workspace_id, enabled, channels, email, inactive, status_reason, status_message, \
             agent_version, checked_version, agent_name, automation_name, schedule_kind, \
             schedule_cron, time_zone, task, catch_up_policy, next_run_at, created_at, updated_at) \
             SELECT v.column1, t.org_id, t.agent_id, v.column2, v.column3, t.workspace_id, 1, \
             'web', '', 0, 'user', '', t.agent_version, t.checked_version, t.agent_name, \
             v.column2, t.schedule_kind, t.schedule_cron, t.time_zone, v.column4, \
             t.catch_up_policy, ${n}, t.created_at, t.updated_at \
             FROM (VALUES {}) AS v CROSS JOIN subscriptions t WHERE t.id = $1",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(template);
        for pair in chunk {
            query = query
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(&pair.automation_key)
                .bind(&pair.user_id)
                .bind(&pair.task);
        }
        let done = query
            .bind(due)
            .execute(&db.pool)
            .await
            .expect("copy subscriptions");
        written += usize::try_from(done.rows_affected()).unwrap_or(0);
    }
    written
}

/// Moves every enabled subscription's next run to `due`, the template's
/// included, so all fire together.
pub async fn all_due_at(db: &Db, due: i64) {
    sqlx::query("UPDATE subscriptions SET next_run_at = $1 WHERE enabled = 1")
        .bind(due)
        .execute(&db.pool)
        .await
        .expect("due");
}
