//! The store's SQL. Nothing here decides who may do what: callers pass an
//! already resolved partition.
//!
//! Every write first bumps its partition's counter row, which keeps that
//! row locked until the transaction ends (on SQLite `begin_write` holds the
//! one write lock already). So revisions are gapless and in commit order
//! within a partition, and the quota figures read under the same lock are
//! exact.

use agentshare_kit::clock::Clock;
use agentshare_kit::db::Db;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::domain::{self, ContentType, Expected, Limits, Refusal, Usage};

/// One item as stored; `value` is the preview when listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemRow {
    pub key: String,
    pub value: String,
    pub content_type: ContentType,
    pub size_bytes: i64,
    pub revision: i64,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One put or delete of a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRow {
    pub revision: i64,
    pub key: String,
    /// The item as written; `None` for a delete.
    pub item: Option<ItemRow>,
}

/// A partition's counter and quota use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionState {
    pub revision: i64,
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

const ITEM_COLUMNS: &str =
    "key, value, content_type, size_bytes, revision, created_by, created_at, updated_at";

fn item_of(row: &AnyRow) -> Result<ItemRow, sqlx::Error> {
    let content_type: String = row.try_get("content_type")?;
    Ok(ItemRow {
        key: row.try_get("key")?,
        value: row.try_get("value")?,
        content_type: ContentType::parse(&content_type).ok_or_else(|| {
            sqlx::Error::Decode(format!("stored content type {content_type:?}").into())
        })?,
        size_bytes: row.try_get("size_bytes")?,
        revision: row.try_get("revision")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Storage {
    /// The partition's counter and use; zero for one never written.
    pub async fn partition(&self, partition: &str) -> Result<PartitionState, sqlx::Error> {
        let row = sqlx::query(
            "SELECT revision, item_count, total_bytes FROM store_partitions WHERE partition = $1",
        )
        .bind(partition)
        .fetch_optional(&self.db.pool)
        .await?;
        row.map_or(Ok(PartitionState::default()), |row| state_of(&row))
    }

    /// Up to `limit` items with `prefix`, after `after_key`, in byte order
    /// of the key, each with a preview instead of its value.
    pub async fn list(
        &self,
        partition: &str,
        prefix: &str,
        after_key: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ItemRow>, sqlx::Error> {
        // Both backends' substr counts characters, as the preview promises.
        let sql = format!(
            "SELECT key, substr(value, 1, {}) AS value, content_type, size_bytes, revision, \
             created_by, created_at, updated_at FROM workspace_items \
             WHERE partition = $1 AND key >= $2 AND key > $3 ORDER BY key LIMIT $4",
            domain::PREVIEW_CHARS
        );
        let rows = sqlx::query(&sql)
            .bind(partition)
            .bind(prefix)
            .bind(after_key.unwrap_or(""))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.db.pool)
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let item = item_of(row)?;
            // Keys sort byte-wise, so the first key past the prefix ends it.
            if !item.key.starts_with(prefix) {
                break;
            }
            items.push(item);
        }
        Ok(items)
    }

    pub async fn read(&self, partition: &str, key: &str) -> Result<Option<ItemRow>, sqlx::Error> {
        let sql =
            format!("SELECT {ITEM_COLUMNS} FROM workspace_items WHERE partition = $1 AND key = $2");
        let row = sqlx::query(&sql)
            .bind(partition)
            .bind(key)
            .fetch_optional(&self.db.pool)
            .await?;
        row.as_ref().map(item_of).transpose()
    }

    /// Creates or replaces one item under its compare-and-set condition and
    /// the partition's quotas, and records the change.
    pub async fn put(&self, put: &Put<'_>) -> Result<Written, Refusal> {
        let now = self.clock.now_micros();
        let size = domain::byte_len(put.value);
        let mut tx = self.db.begin_write().await?;
        let (revision, before) = self.bump(&mut tx, put.partition).await?;
        let existing = current(&mut tx, put.partition, put.key).await?;
        put.expected.check(
            existing
                .as_ref()
                .map_or(0, |(item_revision, ..)| *item_revision),
        )?;
        let after = domain::usage_after_put(
            before,
            existing.as_ref().map(|(_, old_size, ..)| *old_size),
            size,
            &self.limits,
        )?;
        let (created_by, created_at) = match &existing {
            Some((_, _, created_by, created_at)) => (created_by.clone(), *created_at),
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
        };
        sqlx::query(
            "INSERT INTO workspace_items (partition, key, value, content_type, size_bytes, revision, \
             created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (partition, key) DO UPDATE SET value = excluded.value, \
             content_type = excluded.content_type, size_bytes = excluded.size_bytes, \
             revision = excluded.revision, updated_at = excluded.updated_at",
        )
        .bind(put.partition)
        .bind(&item.key)
        .bind(&item.value)
        .bind(item.content_type.as_str())
        .bind(item.size_bytes)
        .bind(item.revision)
        .bind(&item.created_by)
        .bind(item.created_at)
        .bind(item.updated_at)
        .execute(&mut *tx)
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
    pub async fn delete(
        &self,
        partition: &str,
        key: &str,
        expected: Expected,
    ) -> Result<Deleted, Refusal> {
        let now = self.clock.now_micros();
        let mut tx = self.db.begin_write().await?;
        let (revision, before) = self.bump(&mut tx, partition).await?;
        let existing = current(&mut tx, partition, key).await?;
        expected.check(
            existing
                .as_ref()
                .map_or(0, |(item_revision, ..)| *item_revision),
        )?;
        let Some((item_revision, size, ..)) = existing else {
            return Err(agentshare_kit::Error::not_found(format!("item {key:?}")).into());
        };
        sqlx::query("DELETE FROM workspace_items WHERE partition = $1 AND key = $2")
            .bind(partition)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        let after = Usage {
            item_count: before.item_count - 1,
            total_bytes: before.total_bytes - size,
        };
        self.record(&mut tx, partition, after, revision, key, None, now)
            .await?;
        tx.commit().await?;
        Ok(Deleted {
            revision,
            item_revision,
        })
    }

    /// Takes the partition's next revision, creating its row on first use;
    /// the row stays locked until the transaction ends.
    async fn bump(
        &self,
        tx: &mut Transaction<'static, Any>,
        partition: &str,
    ) -> Result<(i64, Usage), sqlx::Error> {
        sqlx::query(
            "INSERT INTO store_partitions (partition, revision, item_count, total_bytes) \
             VALUES ($1, 0, 0, 0) ON CONFLICT (partition) DO NOTHING",
        )
        .bind(partition)
        .execute(&mut **tx)
        .await?;
        let row = sqlx::query(
            "UPDATE store_partitions SET revision = revision + 1 WHERE partition = $1 \
             RETURNING revision, item_count, total_bytes",
        )
        .bind(partition)
        .fetch_one(&mut **tx)
        .await?;
        let state = state_of(&row)?;
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
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE store_partitions SET item_count = $2, total_bytes = $3 WHERE partition = $1",
        )
        .bind(partition)
        .bind(usage.item_count)
        .bind(usage.total_bytes)
        .execute(&mut **tx)
        .await?;
        let (kind, value, content_type, size, item_revision, created_by, created_at) = match item {
            Some(item) => (
                "put",
                item.value.as_str(),
                item.content_type.as_str(),
                item.size_bytes,
                item.revision,
                item.created_by.as_str(),
                item.created_at,
            ),
            None => ("delete", "", ContentType::Text.as_str(), 0, 0, "", 0),
        };
        sqlx::query(
            "INSERT INTO item_changes (partition, revision, kind, key, value, content_type, \
             size_bytes, item_revision, created_by, created_at, changed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(partition)
        .bind(revision)
        .bind(kind)
        .bind(key)
        .bind(value)
        .bind(content_type)
        .bind(size)
        .bind(item_revision)
        .bind(created_by)
        .bind(created_at)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "DELETE FROM item_changes WHERE partition = $1 AND (revision <= $2 OR changed_at < $3)",
        )
        .bind(partition)
        .bind(revision - self.retention.changes)
        .bind(now - self.retention.age_micros)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Up to `limit` changes after `after`, in revision order.
    pub async fn changes_after(
        &self,
        partition: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ChangeRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT revision, kind, key, value, content_type, size_bytes, item_revision, \
             created_by, created_at, changed_at FROM item_changes \
             WHERE partition = $1 AND revision > $2 ORDER BY revision LIMIT $3",
        )
        .bind(partition)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?;
        let mut changes = Vec::with_capacity(rows.len());
        for row in &rows {
            let kind: String = row.try_get("kind")?;
            let key: String = row.try_get("key")?;
            let item = if kind == "put" {
                let content_type: String = row.try_get("content_type")?;
                Some(ItemRow {
                    key: key.clone(),
                    value: row.try_get("value")?,
                    content_type: ContentType::parse(&content_type).ok_or_else(|| {
                        sqlx::Error::Decode(format!("stored content type {content_type:?}").into())
                    })?,
                    size_bytes: row.try_get("size_bytes")?,
                    revision: row.try_get("item_revision")?,
                    created_by: row.try_get("created_by")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("changed_at")?,
                })
            } else {
                None
            };
            changes.push(ChangeRow {
                revision: row.try_get("revision")?,
                key,
                item,
            });
        }
        Ok(changes)
    }

    /// Whether the change at `revision` is still retained.
    pub async fn change_retained(
        &self,
        partition: &str,
        revision: i64,
    ) -> Result<bool, sqlx::Error> {
        let row = sqlx::query("SELECT 1 FROM item_changes WHERE partition = $1 AND revision = $2")
            .bind(partition)
            .bind(revision)
            .fetch_optional(&self.db.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Removes every partition of an agent's store: items, changes and
    /// counters. Idempotent.
    pub async fn drop_agent_store(&self, agent_id: &str) -> Result<usize, sqlx::Error> {
        // LIKE narrows the scan; the exact test is the domain's, since
        // SQLite's LIKE ignores ASCII case.
        let candidates =
            sqlx::query("SELECT partition FROM store_partitions WHERE partition LIKE $1")
                .bind(format!("agent-{agent_id}%"))
                .fetch_all(&self.db.pool)
                .await?;
        let mut dropped = 0;
        for row in &candidates {
            let partition: String = row.try_get("partition")?;
            if !domain::belongs_to_agent(&partition, agent_id) {
                continue;
            }
            let mut tx = self.db.begin_write().await?;
            for table in ["workspace_items", "item_changes", "store_partitions"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE partition = $1"))
                    .bind(&partition)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            dropped += 1;
        }
        Ok(dropped)
    }
}

fn state_of(row: &AnyRow) -> Result<PartitionState, sqlx::Error> {
    Ok(PartitionState {
        revision: row.try_get("revision")?,
        usage: Usage {
            item_count: row.try_get("item_count")?,
            total_bytes: row.try_get("total_bytes")?,
        },
    })
}

/// The item's revision, size, creator and creation time, if it exists.
async fn current(
    tx: &mut Transaction<'static, Any>,
    partition: &str,
    key: &str,
) -> Result<Option<(i64, i64, String, i64)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT revision, size_bytes, created_by, created_at FROM workspace_items \
         WHERE partition = $1 AND key = $2",
    )
    .bind(partition)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|row| {
        Ok((
            row.try_get("revision")?,
            row.try_get("size_bytes")?,
            row.try_get("created_by")?,
            row.try_get("created_at")?,
        ))
    })
    .transpose()
}
