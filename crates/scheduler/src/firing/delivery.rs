//! Delivering EMAIL and PUSH notifications from the outbox. Rows are written
//! in the transaction that decides to notify; this worker sends them through
//! a [`Sender`], on every replica, each row claimed for one attempt at a
//! time. A failed attempt is retried after a doubling backoff until the
//! configured attempts are spent, then the row is FAILED with its last error.

use std::sync::Arc;
use std::time::Duration;

use agentshare_kit::config::Scheduler as Settings;
use agentshare_kit::server::Shutdown;
use futures::future::BoxFuture;

use crate::subscriptions::storage::{OutboxRow, Storage};

/// One notification to hand to a transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// `email` or `push`.
    pub channel: String,
    /// An email address, or for push the user id whose devices to reach.
    pub address: String,
    pub title: String,
    pub body: String,
}

/// A transport for notifications. An error is worth retrying; its text is
/// shown to the user as the delivery's last error.
pub trait Sender: Send + Sync {
    fn send<'a>(&'a self, message: &'a Outgoing) -> BoxFuture<'a, Result<(), String>>;
}

/// Logs each notification instead of sending it: the embedded mode's and
/// the tests' transport, until a real one is configured.
pub struct LoggingSender;

impl Sender for LoggingSender {
    fn send<'a>(&'a self, message: &'a Outgoing) -> BoxFuture<'a, Result<(), String>> {
        tracing::info!(
            channel = %message.channel,
            address = %message.address,
            title = %message.title,
            "notification sent"
        );
        Box::pin(async { Ok(()) })
    }
}

/// How long a claimed row is left to its claimant before another replica
/// may try it.
const CLAIM_LEASE: Duration = Duration::from_secs(120);
/// Rows one pass sends at most.
const BATCH: i64 = 50;

#[derive(Clone)]
pub struct Delivery {
    pub storage: Storage,
    pub sender: Arc<dyn Sender>,
    pub settings: Settings,
}

/// The wait before the attempt after `failed` failed ones: the base,
/// doubled for each earlier failure, at most the maximum.
pub fn backoff(settings: &Settings, failed: u32) -> Duration {
    let doublings = failed.saturating_sub(1).min(30);
    settings
        .delivery_backoff_base
        .saturating_mul(1 << doublings)
        .min(settings.delivery_backoff_max)
}

impl Delivery {
    /// One pass over the due rows; returns how many were attempted.
    pub async fn run_once(&self) -> agentshare_kit::Result<usize> {
        let lease = i64::try_from(CLAIM_LEASE.as_micros()).unwrap_or(i64::MAX);
        let rows = self.storage.claim_deliveries(BATCH, lease).await?;
        for row in &rows {
            self.attempt(row).await?;
        }
        Ok(rows.len())
    }

    async fn attempt(&self, row: &OutboxRow) -> agentshare_kit::Result<()> {
        let message = Outgoing {
            channel: row.channel.clone(),
            address: row.address.clone(),
            title: row.title.clone(),
            body: row.body.clone(),
        };
        match self.sender.send(&message).await {
            Ok(()) => self.storage.delivered(&row.id).await,
            Err(error) => {
                let failed = u32::try_from(row.attempt_count + 1).unwrap_or(u32::MAX);
                let retry_at = (failed < self.settings.delivery_max_attempts).then(|| {
                    let wait = i64::try_from(backoff(&self.settings, failed).as_micros())
                        .unwrap_or(i64::MAX);
                    self.storage.clock.now_micros().saturating_add(wait)
                });
                tracing::warn!(id = %row.id, channel = %row.channel, attempt = failed, %error, retrying = retry_at.is_some(), "notification not delivered");
                self.storage.attempt_failed(&row.id, &error, retry_at).await
            }
        }
    }

    /// Delivers until `shutdown`, one pass per poll interval.
    pub fn spawn(self, mut shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        let poll = self.settings.delivery_poll;
        tokio::spawn(async move {
            loop {
                if let Err(error) = self.run_once().await {
                    tracing::warn!(%error, "notification delivery pass failed; retrying");
                }
                tokio::select! {
                    () = tokio::time::sleep(poll) => {}
                    () = shutdown.wait() => return,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

    use std::sync::Mutex;

    use agentshare_kit::clock::Clock;
    use agentshare_kit::db::Db;
    use sqlx::Row;

    use super::*;
    use crate::subscriptions::rules::{Channel, InboxKind, Notice};

    /// Fails the first `failures` sends, then records each message.
    struct Flaky {
        failures: Mutex<u32>,
        sent: Mutex<Vec<Outgoing>>,
    }

    impl Sender for Flaky {
        fn send<'a>(&'a self, message: &'a Outgoing) -> BoxFuture<'a, Result<(), String>> {
            let mut failures = self.failures.lock().unwrap();
            let result = if *failures > 0 {
                *failures -= 1;
                Err("smtp relay refused the connection".to_string())
            } else {
                self.sent.lock().unwrap().push(message.clone());
                Ok(())
            };
            Box::pin(async move { result })
        }
    }

    async fn storage(dir: &tempfile::TempDir, clock: Clock) -> Storage {
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("scheduler.db").display()
        );
        let db = Db::connect(&url, 2).await.expect("db");
        db.migrate(&crate::MIGRATIONS).await.expect("migrate");
        Storage { db, clock }
    }

    fn notice(channels: Vec<Channel>) -> Notice {
        Notice {
            org_id: "org".into(),
            user_id: "bob".into(),
            kind: InboxKind::SubscriptionStopped,
            title: "Morning report stopped".into(),
            body: "automation removed in version 2".into(),
            agent_id: "agent".into(),
            automation_key: "morning".into(),
            run_id: String::new(),
            session_id: String::new(),
            channels,
            email: "bob@example.com".into(),
        }
    }

    async fn outbox(storage: &Storage) -> Vec<(String, String, i64, i64, String)> {
        sqlx::query(
            "SELECT channel, status, attempt_count, next_attempt_at, last_error \
             FROM notification_outbox ORDER BY channel",
        )
        .fetch_all(&storage.db.pool)
        .await
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r.get::<String, _>(0),
                r.get::<String, _>(1),
                r.get::<i64, _>(2),
                r.get::<i64, _>(3),
                r.get::<String, _>(4),
            )
        })
        .collect()
    }

    fn settings(max_attempts: u32) -> Settings {
        Settings {
            delivery_poll: Duration::from_millis(10),
            delivery_max_attempts: max_attempts,
            delivery_backoff_base: Duration::from_secs(30),
            delivery_backoff_max: Duration::from_secs(100),
            ..Settings::default()
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let s = settings(6);
        let waits: Vec<u64> = (1..=5).map(|n| backoff(&s, n).as_secs()).collect();
        assert_eq!(waits, [30, 60, 100, 100, 100]);
    }

    #[tokio::test]
    async fn failed_deliveries_are_retried_with_backoff_until_delivered() {
        let dir = tempfile::tempdir().expect("dir");
        let start = 1_800_000_000_000_000;
        let clock = Clock::manual(start);
        let storage = storage(&dir, clock.clone()).await;
        storage
            .notify(&notice(vec![Channel::Web, Channel::Email]))
            .await
            .expect("notify");
        let sender = Arc::new(Flaky {
            failures: Mutex::new(2),
            sent: Mutex::new(Vec::new()),
        });
        let delivery = Delivery {
            storage: storage.clone(),
            sender: sender.clone(),
            settings: settings(6),
        };
        // WEB went to the inbox; only EMAIL is in the outbox.
        assert_eq!(storage.unread_count("org", "bob").await.expect("count"), 1);
        assert_eq!(delivery.run_once().await.expect("pass"), 1);
        let first = outbox(&storage).await;
        assert_eq!(
            first,
            [(
                "email".into(),
                "retrying".into(),
                1,
                start + 30_000_000,
                "smtp relay refused the connection".into()
            )]
        );
        // Not due yet: nothing is attempted.
        assert_eq!(delivery.run_once().await.expect("pass"), 0);
        clock.advance(Duration::from_secs(30));
        assert_eq!(delivery.run_once().await.expect("pass"), 1);
        assert_eq!(outbox(&storage).await[0].3, start + 30_000_000 + 60_000_000);
        clock.advance(Duration::from_secs(60));
        assert_eq!(delivery.run_once().await.expect("pass"), 1);
        let done = outbox(&storage).await;
        assert_eq!((done[0].1.as_str(), done[0].2), ("delivered", 3));
        let sent = sender.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].address, "bob@example.com");
        // Delivered rows are never sent again.
        clock.advance(Duration::from_secs(3600));
        assert_eq!(delivery.run_once().await.expect("pass"), 0);
    }

    #[tokio::test]
    async fn a_delivery_is_given_up_after_its_last_attempt() {
        let dir = tempfile::tempdir().expect("dir");
        let clock = Clock::manual(1_800_000_000_000_000);
        let storage = storage(&dir, clock.clone()).await;
        storage
            .notify(&notice(vec![Channel::Push]))
            .await
            .expect("notify");
        let delivery = Delivery {
            storage: storage.clone(),
            sender: Arc::new(Flaky {
                failures: Mutex::new(u32::MAX),
                sent: Mutex::new(Vec::new()),
            }),
            settings: settings(2),
        };
        delivery.run_once().await.expect("pass");
        clock.advance(Duration::from_secs(30));
        delivery.run_once().await.expect("pass");
        let rows = outbox(&storage).await;
        assert_eq!(
            (rows[0].0.as_str(), rows[0].1.as_str(), rows[0].2),
            ("push", "failed", 2)
        );
        clock.advance(Duration::from_secs(3600));
        assert_eq!(delivery.run_once().await.expect("pass"), 0);
    }
}
