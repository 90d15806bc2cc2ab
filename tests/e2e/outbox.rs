//! The event outbox: numbers are gapless and in commit order, so a watcher
//! that resumes from its last number misses nothing and sees nothing twice.

use std::collections::HashSet;
use std::time::Duration;

use agentshare_e2e::{Suite, eventually};
use agentshare_kit::clock::Clock;
use agentshare_kit::db::Backend;
use agentshare_kit::events::{self, NewEvent};
use agentshare_kit::identity::ServiceName;
use agentshare_proto::events::v1 as pb;
use agentshare_proto::sharing::v1 as sharing;
use pb::event_log_service_client::EventLogServiceClient;
use sqlx::Row;

fn event(name: &str) -> NewEvent {
    NewEvent {
        kind: "test.happened",
        subject_id: name.into(),
        org_id: String::new(),
        payload: serde_json::json!({ "name": name }),
    }
}

async fn last_seq(db: &agentshare_kit::db::Db) -> i64 {
    sqlx::query("SELECT last_seq FROM event_counter WHERE id = 1")
        .fetch_one(&db.pool)
        .await
        .expect("counter")
        .try_get(0)
        .expect("seq")
}

/// Waits until `count` other writers are held up by `first`. PostgreSQL
/// names the sessions each lock holds up; SQLite has one writer at a time,
/// which `first` is, so a writer holding its connection is waiting for it.
async fn held_up(
    db: &agentshare_kit::db::Db,
    first: &mut sqlx::Transaction<'static, sqlx::Any>,
    count: usize,
) {
    match db.backend {
        Backend::Postgres => {
            let holder: i32 = sqlx::query("SELECT pg_backend_pid()")
                .fetch_one(&mut **first)
                .await
                .expect("backend pid")
                .try_get(0)
                .expect("pid");
            eventually("the later writers waiting for the first", || async {
                // A writer queued behind another waiter is blocked by that
                // waiter, so follow the chain back to the first.
                let waiting: i64 = sqlx::query(
                    "WITH RECURSIVE held(pid) AS ( \
                       SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) \
                       UNION \
                       SELECT a.pid FROM pg_stat_activity a \
                       JOIN held h ON h.pid = ANY(pg_blocking_pids(a.pid))) \
                     SELECT count(*) FROM held",
                )
                .bind(holder)
                .fetch_one(&db.pool)
                .await
                .expect("blocked sessions")
                .try_get(0)
                .expect("count");
                if usize::try_from(waiting) == Ok(count) {
                    Ok(())
                } else {
                    Err(waiting)
                }
            })
            .await;
        }
        Backend::Sqlite => {
            eventually("the later writers waiting their turn to write", || async {
                let waiting = db.waiting_writes();
                if waiting == count {
                    Ok(())
                } else {
                    Err(waiting)
                }
            })
            .await;
        }
    }
}

/// The kind of the marker `receive` appends after what it expects.
const MARKER: &str = "test.marker";

/// Receives `n` events, then checks that nothing more arrives: it appends
/// a marker to the same log, and the next event must be that marker, since
/// the log is delivered in number order. Markers of earlier calls may come
/// first; they are the test's own.
async fn receive(
    stream: &mut tonic::Streaming<pb::WatchResponse>,
    n: usize,
    log: (&agentshare_kit::db::Db, &Clock),
) -> Vec<pb::Event> {
    let mut events = Vec::new();
    while events.len() < n {
        let event = next_event(stream).await;
        if event.kind != MARKER {
            events.push(event);
        }
    }
    let (db, clock) = log;
    let mut tx = db.begin_write().await.expect("begin");
    let marker = events::append(
        &mut tx,
        clock,
        &NewEvent {
            kind: MARKER,
            ..event("marker")
        },
    )
    .await
    .expect("append the marker");
    tx.commit().await.expect("commit the marker");
    loop {
        let next = next_event(stream).await;
        if i64::try_from(next.seq) == Ok(marker) {
            break;
        }
        assert_eq!(
            next.kind, MARKER,
            "no event beyond the {n} written: {next:?}"
        );
    }
    events
}

async fn next_event(stream: &mut tonic::Streaming<pb::WatchResponse>) -> pb::Event {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("an event within 20 s")
        .expect("stream ok")
        .expect("stream open")
        .event
        .expect("event")
}

#[tokio::test]
async fn a_late_commit_is_delivered_in_order_and_exactly_once() {
    let suite = Suite::start().await;
    let db = suite.db(ServiceName::Registry).await;
    let start = last_seq(&db).await;
    let mut watcher = EventLogServiceClient::new(
        suite
            .service_channel(ServiceName::Sharing, ServiceName::Registry, 0)
            .await,
    )
    .watch(pb::WatchRequest {
        after_seq: u64::try_from(start).expect("seq"),
        ..Default::default()
    })
    .await
    .expect("watch")
    .into_inner();

    // The first transaction takes its number and stays open.
    let mut first = db.begin_write().await.expect("begin");
    let first_seq = events::append(&mut first, &suite.clock, &event("first"))
        .await
        .expect("append");
    assert_eq!(first_seq, start + 1);

    // Later transactions try to commit meanwhile.
    let mut later = Vec::new();
    for name in ["second", "third"] {
        let db = db.clone();
        let clock = suite.clock.clone();
        later.push(tokio::spawn(async move {
            let mut tx = db.begin_write().await.expect("begin");
            let seq = events::append(&mut tx, &clock, &event(name))
                .await
                .expect("append");
            tx.commit().await.expect("commit");
            seq
        }));
    }
    held_up(&db, &mut first, later.len()).await;
    assert!(
        later.iter().all(|t| !t.is_finished()),
        "a later transaction committed while an earlier number was still open"
    );

    first.commit().await.expect("commit the first");
    let mut later_seqs = Vec::new();
    for task in later {
        later_seqs.push(task.await.expect("task"));
    }
    later_seqs.sort_unstable();
    assert_eq!(later_seqs, [start + 2, start + 3]);

    let events = receive(&mut watcher, 3, (&db, &suite.clock)).await;
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=3)
        .map(|i| u64::try_from(start + i).expect("seq"))
        .collect();
    assert_eq!(seqs, expected);
    assert_eq!(events[0].subject_id, "first");
    suite.stop().await;
}

#[tokio::test]
async fn concurrent_writers_through_the_gateway_are_each_seen_once() {
    let suite = Suite::start().await;
    let db = suite.db(ServiceName::Sharing).await;
    let start = last_seq(&db).await;
    let mut watcher = EventLogServiceClient::new(
        suite
            .service_channel(ServiceName::Registry, ServiceName::Sharing, 0)
            .await,
    )
    .watch(pb::WatchRequest {
        after_seq: u64::try_from(start).expect("seq"),
        ..Default::default()
    })
    .await
    .expect("watch")
    .into_inner();

    let writers = 12;
    let mut tasks = Vec::new();
    for i in 0..writers {
        let user = suite.user(&format!("writer{i}")).await;
        tasks.push(tokio::spawn(async move {
            user.tenancy()
                .create_org(sharing::CreateOrgRequest {
                    name: format!("Org {i}"),
                })
                .await
                .expect("create org")
                .into_inner()
                .org
                .expect("org")
                .id
        }));
    }
    let mut created = HashSet::new();
    for task in tasks {
        created.insert(task.await.expect("task"));
    }

    let events = receive(&mut watcher, writers, (&db, &suite.clock)).await;
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=writers)
        .map(|i| u64::try_from(start).expect("seq") + i as u64)
        .collect();
    assert_eq!(seqs, expected, "gapless and in order");
    let seen: HashSet<String> = events.iter().map(|e| e.subject_id.clone()).collect();
    assert_eq!(seen, created, "every org.created exactly once");
    assert!(events.iter().all(|e| e.kind == "org.created"));

    // A watcher that resumes from the middle gets exactly the rest.
    let middle = expected[writers / 2];
    let mut resumed = EventLogServiceClient::new(
        suite
            .service_channel(ServiceName::Registry, ServiceName::Sharing, 0)
            .await,
    )
    .watch(pb::WatchRequest {
        after_seq: middle,
        ..Default::default()
    })
    .await
    .expect("watch")
    .into_inner();
    let rest = receive(&mut resumed, writers - writers / 2 - 1, (&db, &suite.clock)).await;
    assert_eq!(rest.first().map(|e| e.seq), Some(middle + 1));
    suite.stop().await;
}
