//! Database faults under a call: a PostgreSQL connection dropped in the
//! middle of a service's write transaction rolls the write back, the call
//! answers UNAVAILABLE (the client may retry), and the service's pool
//! recovers for the very next call.

use agentshare_e2e::{POSTGRES_URL_VAR, Suite, draft_agent, eventually};
use agentshare_kit::identity::ServiceName;
use sqlx::Row;
use tonic::Code;

use crate::assert_status;

#[tokio::test]
async fn a_postgres_connection_dropped_mid_write_rolls_back_and_answers_unavailable() {
    if std::env::var(POSTGRES_URL_VAR).is_err() {
        eprintln!(
            "skipped: a PostgreSQL connection dropped mid-transaction needs PostgreSQL; set {POSTGRES_URL_VAR}"
        );
        return;
    }
    let suite = Suite::start().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let db = suite.db(ServiceName::Registry).await;
    // Registry makes the new org's default agent on its own time; once it
    // has, the test's call is the only write to agents.
    eventually("registry to make the org's default agent", || async {
        sqlx::query("SELECT 1 FROM agents WHERE is_default = 1")
            .fetch_optional(&db.pool)
            .await
            .expect("agents")
    })
    .await;

    // Hold a lock that registry's insert of an agent waits for, so its
    // write transaction is surely open when its connection is cut.
    let mut holder = db.pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE agents IN EXCLUSIVE MODE")
        .execute(&mut *holder)
        .await
        .expect("lock agents");
    let holder_pid: i32 = sqlx::query("SELECT pg_backend_pid()")
        .fetch_one(&mut *holder)
        .await
        .expect("pid")
        .try_get(0)
        .expect("pid");
    let call = tokio::spawn({
        let alice = alice.clone();
        async move { alice.registry().create_agent(draft_agent("Cut off")).await }
    });
    let writer: i32 = eventually("registry's write waiting for the lock", || async {
        sqlx::query(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
             AND $1 = ANY(pg_blocking_pids(pid)) AND query LIKE 'INSERT INTO agents %'",
        )
        .bind(holder_pid)
        .fetch_optional(&db.pool)
        .await
        .expect("pg_stat_activity")
        .map(|row| row.try_get::<i32, _>(0).expect("pid"))
    })
    .await;
    let terminated: bool = sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(writer)
        .fetch_one(&db.pool)
        .await
        .expect("terminate")
        .try_get(0)
        .expect("terminated");
    assert!(terminated, "registry's backend {writer} was terminated");
    holder.rollback().await.expect("release the lock");

    let answer = call.await.expect("call task");
    assert_status(answer, Code::Unavailable, "database is unavailable");
    let (agents, events): (i64, i64) = {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM agents WHERE name = 'Cut off'), \
                    (SELECT COUNT(*) FROM events WHERE kind = 'agent.created' \
                     AND subject_id NOT IN (SELECT id FROM agents))",
        )
        .fetch_one(&db.pool)
        .await
        .expect("counts");
        (
            row.try_get(0).expect("agents"),
            row.try_get(1).expect("events"),
        )
    };
    assert_eq!(agents, 0, "the cut-off write left no agent");
    assert_eq!(events, 0, "the cut-off write left no event");

    // The pool recovers at once: the very next write succeeds.
    let next = alice
        .new_agent_result("Next")
        .await
        .expect("the next call succeeds");
    assert_eq!(next.draft.map(|d| d.name).as_deref(), Some("Next"));
    db.pool.close().await;
    suite.stop().await;
}
