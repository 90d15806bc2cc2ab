//! The store's SQL. Nothing here decides who may do what: callers pass an
//! already resolved partition.
//!
//! Every write first bumps its partition's counter row, which keeps that
//! row locked until the transaction ends (on SQLite `begin_write` holds the
//! one write lock already). So revisions are gapless and in commit order
//! within a partition, and the quota figures read under the same lock are
//! exact.

use agentshare_kit::clock::Clock;
use agentshare_kit::db::{self, Db};
use agentshare_kit::page::Page;
use agentshare_kit::{Error, Result};
use sqlx::{Any, Transaction};

use super::rules::{self, ContentType, Expected, Limits, Usage, Writer};

/// One item as stored; `value` is the preview when listed.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ItemRow {
    pub key: String,
    pub value: String,
    #[sqlx(try_from = "String")]
    pub content_type: ContentType,
    pub size_bytes: i64,
    pub revision: i64,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Who wrote the current value.
    #[sqlx(flatten)]
    pub writer: Writer,
}

/// One put or delete of a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRow {
    pub revision: i64,
    pub key: String,
    /// The item as written; `None` for a delete.
    pub item: Option<ItemRow>,
}

/// One row of `item_changes`: the item as written, which a delete leaves
/// empty.
#[derive(sqlx::FromRow)]
struct StoredChange {
    change_revision: i64,
    kind: String,
    #[sqlx(flatten)]
    item: ItemRow,
}

impl From<StoredChange> for ChangeRow {
    fn from(change: StoredChange) -> Self {
        Self {
            revision: change.change_revision,
            key: change.item.key.clone(),
            item: (change.kind == "put").then_some(change.item),
        }
    }
}

/// A partition's counter and quota use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct PartitionState {
    pub revision: i64,
    #[sqlx(flatten)]
    pub usage: Usage,
}

/// How long changes stay resumable.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub changes: i64,
    pub age_micros: i64,
}

/// A write of one item.
pub struct Put<'a> {
    pub partition: &'a str,
    pub key: &'a str,
    pub value: &'a str,
    pub content_type: ContentType,
    pub expected: Expected,
    /// The agent that writes; kept as `created_by` when the key is new.
    pub agent_id: &'a str,
    /// Who writes: the item's writer from now on.
    pub writer: &'a Writer,
}

/// What a write did.
pub struct Written {
    pub item: ItemRow,
    pub created: bool,
}

/// What a delete did.
pub struct Deleted {
    pub revision: i64,
    pub item_revision: i64,
}

#[derive(Clone)]
pub struct Storage {
    pub db: Db,
    pub clock: Clock,
    pub limits: Limits,
    pub retention: Retention,
}

/// The writer's columns, named as [`Writer`] reads them, in both tables.
const WRITER_COLUMNS: &str = "writer_kind, writer_user_id, writer_grant_id, writer_session_id, \
     writer_automation_run_id, writer_via_agent_id, writer_published_from";

/// What a write finds of the item it replaces.
#[derive(sqlx::FromRow)]
struct Current {
    revision: i64,
    size_bytes: i64,
    created_by: String,
    created_at: i64,
}

impl Storage {
    /// The partition's counter and use; zero for one never written.
    pub async fn partition(&self, partition: &str) -> Result<PartitionState> {
        let state = db::fetch_optional(
            &self.db.pool,
            "SELECT revision, item_count, total_bytes FROM store_partitions WHERE partition = $1",
            (partition,),
        )
        .await?;
        Ok(state.unwrap_or_default())
    }

    /// The page's items with `prefix`, in byte order of the key, each with
    /// a preview instead of its value.
    pub async fn list(&self, partition: &str, prefix: &str, page: &Page) -> Result<Vec<ItemRow>> {
        // Both backends' substr counts characters, as the preview promises.
        let sql = format!(
            "SELECT key, substr(value, 1, {}) AS value, content_type, size_bytes, revision, \
             created_by, created_at, updated_at, {WRITER_COLUMNS} FROM workspace_items \
             WHERE partition = $1 AND key >= $2 AND key > $3 ORDER BY key LIMIT $4",
            rules::PREVIEW_CHARS
        );
        let items: Vec<ItemRow> =
            db::fetch_all(&self.db.pool, &sql, (partition, prefix, page)).await?;
        // Keys sort byte-wise, so the first key past the prefix ends it.
        Ok(items
            .into_iter()
            .take_while(|item| item.key.starts_with(prefix))
            .collect())
    }

    /// One item, or NOT_FOUND naming its key.
    pub async fn read(&self, partition: &str, key: &str) -> Result<ItemRow> {
        let sql = format!(
            "SELECT key, value, content_type, size_bytes, revision, created_by, created_at, \
             updated_at, {WRITER_COLUMNS} FROM workspace_items WHERE partition = $1 AND key = $2"
        );
        db::fetch_optional(&self.db.pool, &sql, (partition, key))
            .await?
            .ok_or_else(|| Error::not_found(format!("item {key:?}")))
    }

    /// Creates or replaces one item under its compare-and-set condition and
    /// the partition's quotas, and records the change.
    pub async fn put(&self, put: &Put<'_>) -> Result<Written> {
        let now = self.clock.now_micros();
        let size = rules::byte_len(put.value);
        let mut tx = self.db.begin_write().await?;
        let (revision, before) = self.bump(&mut tx, put.partition).await?;
        let existing = current(&mut tx, put.partition, put.key, put.expected).await?;
        let after = rules::usage_after_put(
            before,
            existing.as_ref().map(|current| current.size_bytes),
            size,
            &self.limits,
        )?;
        let (created_by, created_at) = match &existing {
            Some(current) => (current.created_by.clone(), current.created_at),
            None => (put.agent_id.to_string(), now),
        };
        let item = ItemRow {
            key: put.key.to_string(),
            value: put.value.to_string(),
            content_type: put.content_type,
            size_bytes: size,
            revision,
            created_by,
            created_at,
            updated_at: now,
            writer: put.writer.clone(),
        };
        let sql = format!(
            "INSERT INTO workspace_items (partition, key, value, content_type, size_bytes, revision, \
             created_by, created_at, updated_at, {WRITER_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (partition, key) DO UPDATE SET value = excluded.value, \
             content_type = excluded.content_type, size_bytes = excluded.size_bytes, \
             revision = excluded.revision, updated_at = excluded.updated_at, \
             writer_kind = excluded.writer_kind, writer_user_id = excluded.writer_user_id, \
             writer_grant_id = excluded.writer_grant_id, \
             writer_session_id = excluded.writer_session_id, \
             writer_automation_run_id = excluded.writer_automation_run_id, \
             writer_via_agent_id = excluded.writer_via_agent_id, \
             writer_published_from = excluded.writer_published_from"
        );
        let writer = &item.writer;
        db::execute(
            &mut *tx,
            &sql,
            (
                put.partition,
                &item.key,
                &item.value,
                item.content_type.as_str(),
                item.size_bytes,
                item.revision,
                &item.created_by,
                item.created_at,
                item.updated_at,
                &writer.kind,
                &writer.user_id,
                &writer.grant_id,
                &writer.session_id,
                &writer.automation_run_id,
                &writer.via_agent_id,
                &writer.published_from_agent_id,
            ),
        )
        .await?;
        self.record(
            &mut tx,
            put.partition,
            after,
            revision,
            &item.key,
            Some(&item),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Written {
            item,
            created: existing.is_none(),
        })
    }

    /// Removes one item; NOT_FOUND when it is absent and no revision was
    /// expected, ABORTED when the expected revision does not match.
    pub async fn delete(&self, partition: &str, key: &str, expected: Expected) -> Result<Deleted> {
        let now = self.clock.now_micros();
        let mut tx = self.db.begin_write().await?;
        let (revision, before) = self.bump(&mut tx, partition).await?;
        let Some(existing) = current(&mut tx, partition, key, expected).await? else {
            return Err(Error::not_found(format!("item {key:?}")));
        };
        db::execute(
            &mut *tx,
            "DELETE FROM workspace_items WHERE partition = $1 AND key = $2",
            (partition, key),
        )
        .await?;
        let after = Usage {
            item_count: before.item_count - 1,
            total_bytes: before.total_bytes - existing.size_bytes,
        };
        self.record(&mut tx, partition, after, revision, key, None, now)
            .await?;
        tx.commit().await?;
        Ok(Deleted {
            revision,
            item_revision: existing.revision,
        })
    }

    /// Takes the partition's next revision, creating its row on first use;
    /// the row stays locked until the transaction ends.
    async fn bump(
        &self,
        tx: &mut Transaction<'static, Any>,
        partition: &str,
    ) -> Result<(i64, Usage)> {
        db::execute(
            &mut **tx,
            "INSERT INTO store_partitions (partition, revision, item_count, total_bytes) \
             VALUES ($1, 0, 0, 0) ON CONFLICT (partition) DO NOTHING",
            (partition,),
        )
        .await?;
        let state: PartitionState = db::fetch_one(
            &mut **tx,
            "UPDATE store_partitions SET revision = revision + 1 WHERE partition = $1 \
             RETURNING revision, item_count, total_bytes",
            (partition,),
        )
        .await?;
        Ok((state.revision, state.usage))
    }

    /// Stores the partition's new use, appends the change and prunes what
    /// fell out of the retention window.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        tx: &mut Transaction<'static, Any>,
        partition: &str,
        usage: Usage,
        revision: i64,
        key: &str,
        item: Option<&ItemRow>,
        now: i64,
    ) -> Result<()> {
        db::execute(
            &mut **tx,
            "UPDATE store_partitions SET item_count = $2, total_bytes = $3 WHERE partition = $1",
            (partition, usage.item_count, usage.total_bytes),
        )
        .await?;
        let no_writer = Writer::default();
        let (kind, value, content_type, size, item_revision, created_by, created_at, writer) =
            match item {
                Some(item) => (
                    "put",
                    item.value.as_str(),
                    item.content_type.as_str(),
                    item.size_bytes,
                    item.revision,
                    item.created_by.as_str(),
                    item.created_at,
                    &item.writer,
                ),
                None => (
                    "delete",
                    "",
                    ContentType::Text.as_str(),
                    0,
                    0,
                    "",
                    0,
                    &no_writer,
                ),
            };
        db::execute(
            &mut **tx,
            &format!(
                "INSERT INTO item_changes (partition, revision, kind, key, value, content_type, \
                 size_bytes, item_revision, created_by, created_at, changed_at, {WRITER_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                 $17, $18)"
            ),
            (
                partition,
                revision,
                kind,
                key,
                value,
                content_type,
                size,
                item_revision,
                created_by,
                created_at,
                now,
                &writer.kind,
                &writer.user_id,
                &writer.grant_id,
                &writer.session_id,
                &writer.automation_run_id,
                &writer.via_agent_id,
                &writer.published_from_agent_id,
            ),
        )
        .await?;
        db::execute(
            &mut **tx,
            "DELETE FROM item_changes WHERE partition = $1 AND (revision <= $2 OR changed_at < $3)",
            (
                partition,
                revision - self.retention.changes,
                now - self.retention.age_micros,
            ),
        )
        .await?;
        Ok(())
    }

    /// Up to `limit` changes after `after`, in revision order.
    pub async fn changes_after(
        &self,
        partition: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ChangeRow>> {
        let changes: Vec<StoredChange> = db::fetch_all(
            &self.db.pool,
            // The item's revision takes the name `revision`, so the
            // change's own is named by its table wherever it is meant.
            &format!(
                "SELECT c.revision AS change_revision, kind, key, value, content_type, size_bytes, \
                 item_revision AS revision, created_by, created_at, changed_at AS updated_at, \
                 {WRITER_COLUMNS} FROM item_changes c WHERE c.partition = $1 AND c.revision > $2 \
                 ORDER BY c.revision LIMIT $3"
            ),
            (partition, after, limit),
        )
        .await?;
        Ok(changes.into_iter().map(ChangeRow::from).collect())
    }

    /// Whether the change at `revision` is still retained.
    pub async fn change_retained(&self, partition: &str, revision: i64) -> Result<bool> {
        Ok(db::exists(
            &self.db.pool,
            "SELECT 1 FROM item_changes WHERE partition = $1 AND revision = $2",
            (partition, revision),
        )
        .await?)
    }

    /// Removes every partition of an agent's store: items, changes and
    /// counters. Idempotent.
    pub async fn drop_agent_store(&self, agent_id: &str) -> Result<usize> {
        // LIKE narrows the scan; the exact test is the rules', since
        // SQLite's LIKE ignores ASCII case.
        let candidates: Vec<(String,)> = db::fetch_all(
            &self.db.pool,
            "SELECT partition FROM store_partitions WHERE partition LIKE $1",
            (format!("agent-{agent_id}%"),),
        )
        .await?;
        let mut dropped = 0;
        for (partition,) in &candidates {
            if !rules::belongs_to_agent(partition, agent_id) {
                continue;
            }
            let mut tx = self.db.begin_write().await?;
            for table in ["workspace_items", "item_changes", "store_partitions"] {
                db::execute(
                    &mut *tx,
                    &format!("DELETE FROM {table} WHERE partition = $1"),
                    (partition,),
                )
                .await?;
            }
            tx.commit().await?;
            dropped += 1;
        }
        Ok(dropped)
    }
}

/// The item's revision, size, creator and creation time, if it exists,
/// once it meets the compare-and-set condition of the write.
async fn current(
    tx: &mut Transaction<'static, Any>,
    partition: &str,
    key: &str,
    expected: Expected,
) -> Result<Option<Current>> {
    let current: Option<Current> = db::fetch_optional(
        &mut **tx,
        "SELECT revision, size_bytes, created_by, created_at FROM workspace_items \
         WHERE partition = $1 AND key = $2",
        (partition, key),
    )
    .await?;
    expected.check(current.as_ref().map_or(0, |current| current.revision))?;
    Ok(current)
}
