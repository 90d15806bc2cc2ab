//! The event outbox and `EventLogService.Watch`.
//!
//! A service appends events inside the transaction that makes the change. The
//! number comes from the single `event_counter` row, which that transaction
//! updates and so keeps locked until it commits or rolls back. A later
//! transaction therefore gets the next number only after the earlier one has
//! committed: numbers are gapless and in commit order on both backends. A
//! plain sequence would not be: a transaction holding number 5 could commit
//! after one holding 6, and a watcher that had moved past 6 would miss 5.

use std::future::Future;
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
use crate::identity::ServiceName;
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

type Events = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EventLogService for EventLog {
    type WatchStream = Events;

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Result<Response<Events>, Status> {
        let request = request.into_inner();
        let after = if request.from_end {
            sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(seq), 0) FROM events")
                .fetch_one(&self.db.pool)
                .await
                .map_err(|e| Status::from(crate::Error::from(e)))?
        } else {
            i64::try_from(request.after_seq)
                .map_err(|_| Status::invalid_argument("after_seq is too large"))?
        };
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(self.clone().pump(after, tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// What a follower's handler returns.
type Handled = Pin<Box<dyn Future<Output = Result<(), crate::Error>> + Send>>;

/// A follower's place in another service's events: the service it follows
/// and the name its cursor is stored under in the follower's own database.
#[derive(Clone, Copy, Debug)]
pub struct Feed {
    pub source: ServiceName,
    pub consumer: &'static str,
}

impl Feed {
    pub const fn new(source: ServiceName, consumer: &'static str) -> Self {
        Self { source, consumer }
    }
}

/// Follows `feed` for as long as the context runs, calling `handle` with
/// (a clone of) `state` and each event in number order. The cursor is
/// stored under the feed's consumer in this service's own database after
/// each handled event, so a restart resumes where the last replica stopped.
/// Delivery is at least once: a crash between handling and storing replays
/// one event, and every replica follows on its own, so handlers must be
/// idempotent. A failing handler is retried with backoff and holds back the
/// events after it, because later events may depend on it.
pub fn follow<S, H, F>(
    context: &crate::bootstrap::Context,
    db: Db,
    feed: Feed,
    state: S,
    handle: H,
) -> Result<tokio::task::JoinHandle<()>, crate::config::BadSetting>
where
    S: Clone + Send + Sync + 'static,
    H: Fn(S, pb::Event) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), crate::Error>> + Send + 'static,
{
    let channel = context.peer(feed.source)?;
    let follower = Follower {
        db,
        consumer: feed.consumer,
        shutdown: context.shutdown.clone(),
    };
    let handle = move |event| -> Handled { Box::pin(handle(state.clone(), event)) };
    Ok(tokio::spawn(follower.run(channel, handle)))
}

/// Follows `source`'s events from the moment each stream opens, keeping no
/// cursor, and calls `changed` for each one, and once more on every
/// (re)connect since events in a gap are not replayed. For a consumer that
/// only needs to hear that something changed: the gateway's MCP sessions
/// list their tools again, and a missed event costs a stale list until the
/// next one, never a wrong answer, since every call is checked afresh.
pub fn follow_live<C>(
    context: &crate::bootstrap::Context,
    source: ServiceName,
    changed: C,
) -> Result<(), crate::config::BadSetting>
where
    C: Fn(Option<&pb::Event>) + Send + Sync + 'static,
{
    let channel = context.peer(source)?;
    let mut shutdown = context.shutdown.clone();
    tokio::spawn(async move {
        let mut backoff = FOLLOW_BACKOFF_MIN;
        loop {
            let mut client =
                agentshare_proto::events::v1::event_log_service_client::EventLogServiceClient::new(
                    channel.clone(),
                );
            let opened = tokio::select! {
                opened = client.watch(pb::WatchRequest { after_seq: 0, from_end: true }) => opened,
                () = shutdown.wait() => return,
            };
            if let Ok(stream) = opened {
                backoff = FOLLOW_BACKOFF_MIN;
                changed(None);
                let mut stream = stream.into_inner();
                loop {
                    let message = tokio::select! {
                        message = stream.message() => message,
                        () = shutdown.wait() => return,
                    };
                    match message {
                        Ok(Some(pb::WatchResponse { event: Some(event) })) => changed(Some(&event)),
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.wait() => return,
            }
            backoff = (backoff * 2).min(FOLLOW_BACKOFF_MAX);
        }
    });
    Ok(())
}

struct Follower {
    db: Db,
    consumer: &'static str,
    shutdown: Shutdown,
}

const FOLLOW_BACKOFF_MIN: Duration = Duration::from_millis(100);
const FOLLOW_BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Follower {
    async fn run<H>(self, channel: crate::server::ServiceChannel, handle: H)
    where
        H: Fn(pb::Event) -> Handled + Send + Sync + 'static,
    {
        let mut shutdown = self.shutdown.clone();
        let mut backoff = FOLLOW_BACKOFF_MIN;
        loop {
            if self.shutdown.is_triggered() {
                return;
            }
            match self.follow_once(channel.clone(), &handle).await {
                Ok(progressed) if progressed => backoff = FOLLOW_BACKOFF_MIN,
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(consumer = self.consumer, %error, "event stream broke; reconnecting");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.wait() => return,
            }
            backoff = (backoff * 2).min(FOLLOW_BACKOFF_MAX);
        }
    }

    /// Reads the stream until it ends or breaks; true when any event was
    /// handled.
    async fn follow_once<H>(
        &self,
        channel: crate::server::ServiceChannel,
        handle: &H,
    ) -> Result<bool, String>
    where
        H: Fn(pb::Event) -> Handled + Send + Sync + 'static,
    {
        let mut cursor = self.cursor().await.map_err(|e| e.to_string())?;
        let mut client =
            agentshare_proto::events::v1::event_log_service_client::EventLogServiceClient::new(
                channel,
            );
        let mut stream = client
            .watch(pb::WatchRequest {
                after_seq: u64::try_from(cursor).unwrap_or_default(),
                from_end: false,
            })
            .await
            .map_err(|s| s.message().to_string())?
            .into_inner();
        let mut shutdown = self.shutdown.clone();
        let mut progressed = false;
        loop {
            let message = tokio::select! {
                message = stream.message() => message.map_err(|s| s.message().to_string())?,
                () = shutdown.wait() => return Ok(progressed),
            };
            let Some(event) = message.and_then(|m| m.event) else {
                return Ok(progressed);
            };
            let seq = i64::try_from(event.seq).unwrap_or(i64::MAX);
            if seq <= cursor {
                continue;
            }
            self.handle_until_done(handle, event).await?;
            self.store_cursor(seq).await.map_err(|e| e.to_string())?;
            cursor = seq;
            progressed = true;
        }
    }

    async fn handle_until_done<H>(&self, handle: &H, event: pb::Event) -> Result<(), String>
    where
        H: Fn(pb::Event) -> Handled + Send + Sync + 'static,
    {
        let mut shutdown = self.shutdown.clone();
        let mut backoff = FOLLOW_BACKOFF_MIN;
        loop {
            match handle(event.clone()).await {
                Ok(()) => return Ok(()),
                Err(error) => tracing::warn!(
                    consumer = self.consumer,
                    seq = event.seq,
                    kind = %event.kind,
                    %error,
                    "event handler failed; retrying"
                ),
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.wait() => return Err("shutting down".into()),
            }
            backoff = (backoff * 2).min(FOLLOW_BACKOFF_MAX);
        }
    }

    async fn cursor(&self) -> Result<i64, sqlx::Error> {
        let row = sqlx::query("SELECT seq FROM event_cursors WHERE consumer = $1")
            .bind(self.consumer)
            .fetch_optional(&self.db.pool)
            .await?;
        row.map_or(Ok(0), |row| row.try_get(0))
    }

    /// Never moves a cursor back: another replica may be ahead.
    async fn store_cursor(&self, seq: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO event_cursors (consumer, seq) VALUES ($1, $2) \
             ON CONFLICT (consumer) DO UPDATE SET seq = CASE \
             WHEN excluded.seq > event_cursors.seq THEN excluded.seq ELSE event_cursors.seq END",
        )
        .bind(self.consumer)
        .bind(seq)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }
}
