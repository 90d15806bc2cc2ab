//! Watch: a stream of one partition's changes, read from `item_changes`
//! in revision order. Writers on this replica wake the partition's
//! watchers at once; commits on other replicas are found by polling.
//!
//! The stream checks access when it opens and again every few seconds, and
//! ends with sharing's code once access ends. It also ends when the
//! forwarded Principal expires, since only the gateway can renew it: the
//! client resumes from its last revision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use agentshare_kit::identity::Principal;
use agentshare_kit::server::Shutdown;
use agentshare_proto::store::v1 as pb;
use tokio::sync::{Notify, mpsc};
use tonic::Status;

use super::access::Access;
use super::rules::Partition;
use super::storage::{ChangeRow, Storage};

/// Changes read per query while catching up.
const BATCH: i64 = 256;

/// Holds `lock`. Each change under these locks is one insert or removal, so
/// a panic never leaves the map half-changed, and a poisoned lock is held
/// as it is.
fn held<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Wakes the watchers of a partition on this replica.
#[derive(Clone, Default)]
pub struct Hub {
    partitions: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

/// A watcher's interest in one partition; dropping it forgets the
/// partition once nobody watches it.
pub struct Interest {
    hub: Hub,
    partition: String,
    notify: Arc<Notify>,
}

impl Hub {
    pub fn interest(&self, partition: &str) -> Interest {
        let mut partitions = held(&self.partitions);
        let notify = partitions.entry(partition.to_string()).or_default().clone();
        Interest {
            hub: self.clone(),
            partition: partition.to_string(),
            notify,
        }
    }

    /// Called after a commit to `partition`.
    pub fn committed(&self, partition: &str) {
        let partitions = held(&self.partitions);
        if let Some(notify) = partitions.get(partition) {
            notify.notify_waiters();
        }
    }
}

impl Drop for Interest {
    fn drop(&mut self) {
        let mut partitions = held(&self.hub.partitions);
        // The map's reference and ours: we are the last watcher.
        if Arc::strong_count(&self.notify) <= 2 {
            partitions.remove(&self.partition);
        }
    }
}

/// Open watches per principal on this replica, capped.
#[derive(Clone, Default)]
pub struct Caps {
    open: Arc<Mutex<HashMap<String, u64>>>,
}

/// One open watch, counted until dropped.
pub struct Slot {
    caps: Caps,
    holder: String,
}

impl Caps {
    /// A slot for `holder`, or `None` when they hold `max` already.
    pub fn take(&self, holder: &str, max: u64) -> Option<Slot> {
        let mut open = held(&self.open);
        let count = open.entry(holder.to_string()).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot {
            caps: self.clone(),
            holder: holder.to_string(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = held(&self.caps.open);
        if let Some(count) = open.get_mut(&self.holder) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.holder);
            }
        }
    }
}

/// Who holds a watch, for the cap: the grant or the user behind the call.
pub fn holder_of(principal: &Principal) -> String {
    match (&principal.grant, &principal.user_id) {
        (Some(grant), user) => format!("grant:{}:{}", grant.id, user.as_deref().unwrap_or("")),
        (None, Some(user)) => format!("user:{user}"),
        (None, None) => "anonymous".into(),
    }
}

/// When the forwarded Principal expires, in Unix seconds. The identity
/// layer verified it already; this only reads its `exp`.
pub fn principal_expiry(principal: &Principal) -> Option<i64> {
    use base64::Engine;
    #[derive(serde::Deserialize)]
    struct Expiry {
        exp: i64,
    }
    let payload = principal.token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<Expiry>(&bytes).ok().map(|e| e.exp)
}

/// Everything one open stream needs.
pub struct Stream {
    pub storage: Storage,
    pub access: Access,
    pub hub: Hub,
    pub principal: Principal,
    pub agent_id: String,
    pub partition: Partition,
    pub prefix: String,
    pub omit_values: bool,
    /// The last revision sent or skipped.
    pub cursor: i64,
    pub poll: Duration,
    pub access_check: Duration,
    /// How long the forwarded Principal stays valid.
    pub lifetime: Duration,
    pub shutdown: Shutdown,
    /// Counts this stream against its holder's cap until it ends.
    pub _slot: Slot,
}

type Out = mpsc::Sender<Result<pb::WatchResponse, Status>>;

impl Stream {
    pub async fn pump(mut self, out: Out) {
        let interest = self.hub.interest(&self.partition.name);
        let mut shutdown = self.shutdown.clone();
        let expires = tokio::time::Instant::now() + self.lifetime;
        let mut check = tokio::time::interval(self.access_check);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.tick().await;
        // Whether the client has heard that it caught up since the last
        // change it was sent.
        let mut caught_up_told = false;
        loop {
            // Interest before reading, so a commit in between still wakes us.
            let woken = interest.notify.notified();
            match self
                .storage
                .changes_after(&self.partition.name, self.cursor, BATCH)
                .await
            {
                Ok(changes) if !changes.is_empty() => {
                    if let Err(ended) = self.send_changes(changes, &out).await {
                        if let Some(status) = ended {
                            let _ = out.send(Err(status)).await;
                        }
                        return;
                    }
                    caught_up_told = false;
                    continue;
                }
                Ok(_) => {
                    if !caught_up_told {
                        if self.progress(&out).await.is_err() {
                            return;
                        }
                        caught_up_told = true;
                    }
                }
                Err(error) => tracing::warn!(%error, "store watch read failed; retrying"),
            }
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep(self.poll) => {}
                _ = check.tick() => {
                    if let Err(status) = self.still_allowed().await {
                        let _ = out.send(Err(status)).await;
                        return;
                    }
                    // Doubles as the heartbeat of an idle stream.
                    if self.progress(&out).await.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep_until(expires) => {
                    let _ = out.send(Err(Status::unavailable(format!(
                        "this watch outlived the credential it was opened with; \
                         open it again with after_revision {}", self.cursor
                    )))).await;
                    return;
                }
                () = out.closed() => return,
                () = shutdown.wait() => {
                    let _ = out.send(Err(Status::unavailable(format!(
                        "server shutting down; open the watch again with after_revision {}",
                        self.cursor
                    )))).await;
                    return;
                }
            }
        }
    }

    /// Sends a batch in order. `Err(Some(status))` ends the stream with
    /// that status, `Err(None)` means the client left.
    async fn send_changes(
        &mut self,
        changes: Vec<ChangeRow>,
        out: &Out,
    ) -> Result<(), Option<Status>> {
        for change in changes {
            // Pruned under a slow watcher: it cannot go on without a gap.
            if change.revision != self.cursor + 1 {
                return Err(Some(out_of_range(self.cursor)));
            }
            self.cursor = change.revision;
            if !change.key.starts_with(&self.prefix) {
                continue;
            }
            let message = pb::WatchResponse {
                event: Some(pb::watch_response::Event::Change(
                    self.change_to_proto(change),
                )),
            };
            out.send(Ok(message)).await.map_err(|_| None)?;
        }
        Ok(())
    }

    fn change_to_proto(&self, change: ChangeRow) -> pb::WorkspaceChange {
        let kind = if change.item.is_some() {
            pb::WorkspaceChangeKind::Put
        } else {
            pb::WorkspaceChangeKind::Delete
        };
        pb::WorkspaceChange {
            kind: kind.into(),
            key: change.key,
            revision: change.revision,
            item: change.item.map(|mut item| {
                if self.omit_values {
                    item.value.clear();
                }
                super::rpc::item_to_proto(item)
            }),
        }
    }

    async fn progress(&self, out: &Out) -> Result<(), ()> {
        let message = pb::WatchResponse {
            event: Some(pb::watch_response::Event::Progress(pb::WatchProgress {
                revision: self.cursor,
            })),
        };
        out.send(Ok(message)).await.map_err(|_| ())
    }

    /// Asks sharing again; the stream ends with its refusal, or when the
    /// caller now reaches another partition through the agent.
    async fn still_allowed(&self) -> Result<(), Status> {
        let now = self
            .access
            .partition(&self.principal, &self.agent_id)
            .await?;
        if now.name != self.partition.name {
            return Err(Status::aborted(format!(
                "this agent's store for you has moved (it was shared, unshared or your workspace changed); \
                 list it and watch again; the old stream ended at revision {}",
                self.cursor
            )));
        }
        Ok(())
    }
}

pub fn out_of_range(after: i64) -> Status {
    Status::out_of_range(format!(
        "changes after revision {after} are no longer retained; \
         list the store again with WorkspaceList and watch from the revision it returns"
    ))
}
