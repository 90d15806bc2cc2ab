//! The event outbox and `EventLogService.Watch`.
//!
//! A service appends events inside the transaction that makes the change. The
//! number comes from the single `event_counter` row, which that transaction
//! updates and so keeps locked until it commits or rolls back. A later
//! transaction therefore gets the next number only after the earlier one has
//! committed: numbers are gapless and in commit order on both backends. A
//! plain sequence would not be: a transaction holding number 5 could commit
//! after one holding 6, and a watcher that had moved past 6 would miss 5.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use agentshare_proto::events::v1::{self as pb, event_log_service_server::EventLogService};
use futures::Stream;
use sqlx::{Any, Row, Transaction};
use tokio::sync::{Notify, mpsc};
use tonic::{Request, Response, Status};

use crate::clock::{Clock, timestamp};
use crate::db::Db;
use crate::server::Shutdown;

/// A fact to record with the change it describes.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// `<subject>.<verb>`, e.g. `org.created`.
    pub kind: &'static str,
    pub subject_id: String,
    pub org_id: String,
    pub payload: serde_json::Value,
}

/// Appends `event` in `tx`; returns its number. Call [`EventLog::committed`]
/// after the commit so local watchers wake at once.
pub async fn append(
    tx: &mut Transaction<'static, Any>,
    clock: &Clock,
    event: &NewEvent,
) -> Result<i64, sqlx::Error> {
    let seq: i64 = sqlx::query(
        "UPDATE event_counter SET last_seq = last_seq + 1 WHERE id = 1 RETURNING last_seq",
    )
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?;
    sqlx::query(
        "INSERT INTO events (seq, kind, subject_id, org_id, payload, occurred_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(seq)
    .bind(event.kind)
    .bind(&event.subject_id)
    .bind(&event.org_id)
    .bind(event.payload.to_string())
    .bind(clock.now_micros())
    .execute(&mut **tx)
    .await?;
    Ok(seq)
}

/// Serves a service's events to its listed consumers.
#[derive(Clone)]
pub struct EventLog {
    db: Db,
    wake: Arc<Notify>,
    poll: Duration,
    shutdown: Shutdown,
}

const BATCH: i64 = 500;

impl EventLog {
    pub fn new(db: Db, poll: Duration, shutdown: Shutdown) -> Self {
        Self {
            db,
            wake: Arc::new(Notify::new()),
            poll,
            shutdown,
        }
    }

    /// Wakes this replica's watchers; others find the events by polling.
    pub fn committed(&self) {
        self.wake.notify_waiters();
    }

    /// Events after `after`, contiguous from `after + 1`, at most one batch.
    async fn next_batch(&self, after: i64) -> Result<Vec<pb::Event>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT seq, kind, subject_id, org_id, payload, occurred_at FROM events \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(BATCH)
        .fetch_all(&self.db.pool)
        .await?;
        let mut events = Vec::with_capacity(rows.len());
        for (expected, row) in (after + 1..).zip(rows) {
            let seq: i64 = row.try_get("seq")?;
            // Belt and braces: never deliver past a hole.
            if seq != expected {
                break;
            }
            events.push(pb::Event {
                seq: u64::try_from(seq).unwrap_or_default(),
                kind: row.try_get("kind")?,
                subject_id: row.try_get("subject_id")?,
                org_id: row.try_get("org_id")?,
                payload_json: row.try_get("payload")?,
                occur_time: Some(timestamp(row.try_get("occurred_at")?)),
            });
        }
        Ok(events)
    }

    async fn pump(self, mut cursor: i64, out: mpsc::Sender<Result<pb::WatchResponse, Status>>) {
        let mut shutdown = self.shutdown.clone();
        loop {
            // Register interest before reading, so a commit between the read
            // and the wait still wakes us.
            let woken = self.wake.notified();
            match self.next_batch(cursor).await {
                Ok(events) if !events.is_empty() => {
                    for event in events {
                        cursor = i64::try_from(event.seq).unwrap_or(cursor);
                        if out
                            .send(Ok(pb::WatchResponse { event: Some(event) }))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    continue;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "event watch read failed; retrying");
                }
            }
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep(self.poll) => {}
                () = out.closed() => return,
                () = shutdown.wait() => {
                    let _ = out.send(Err(Status::unavailable("server shutting down; resume from your last seq"))).await;
                    return;
                }
            }
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EventLogService for EventLog {
    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let after = i64::try_from(request.into_inner().after_seq)
            .map_err(|_| Status::invalid_argument("after_seq is too large"))?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(self.clone().pump(after, tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
