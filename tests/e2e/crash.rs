//! Crash consistency: each service, run as its own process, is killed with
//! SIGKILL in the middle of a mixed write load through the gateway, then
//! started again. Every write the server acknowledged is there afterwards,
//! no write is half applied (a row without its dependent rows, a partition
//! whose counters disagree with its items), and each service's event outbox
//! matches its committed rows one for one, gapless. A call in flight at the
//! kill may answer UNAVAILABLE, never anything else.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use agentshare_e2e::load::{Failure, Recorder, WriteLoad};
use agentshare_e2e::{Suite, UserClient, draft_agent, eventually};
use agentshare_kit::identity::ServiceName;
use agentshare_proto::registry::v1 as registry;
use agentshare_proto::scheduler::v1 as scheduler;
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::store::v1 as store;
use scheduler::automations_service_client::AutomationsServiceClient;
use sharing::tenancy_service_client::TenancyServiceClient;
use sqlx::Row;
use store::workspace_store_service_client::WorkspaceStoreServiceClient;
use tonic::{Code, Status};

/// Writes acknowledged before the kill, so it lands mid-load.
const BEFORE_KILL: usize = 12;
/// Writes acknowledged after the restart, so the load is seen to recover.
const AFTER_RESTART: usize = 6;
const WORKERS: usize = 4;

/// One acknowledged write, as the test reads it back.
#[derive(Clone, Debug)]
enum Write {
    Agent(String),
    /// An agent and the version its deploy answered.
    Version(String, i64),
    Grant(String),
    Org(String),
    ApiKey(String),
    Item {
        key: String,
        value: String,
    },
    Run {
        session_id: String,
        invocation_id: String,
    },
    Subscription {
        agent_id: String,
        key: String,
    },
}

/// Starts the suite as child processes, one per service, each logging its
/// warnings and its starts and stops to a file the test prints when a
/// restart fails.
async fn processes() -> Suite {
    Suite::builder()
        .processes()
        .log_files()
        .env("RUST_LOG", "warn,agentshare_kit::server=info")
        .start()
        .await
}

/// Runs `load` until `BEFORE_KILL` writes are acknowledged, kills
/// `service` with SIGKILL, waits for the load to fail on it, starts it
/// again and waits for `AFTER_RESTART` more acknowledgements; returns the
/// acknowledged writes, once every failure is checked.
async fn kill_mid_load(
    suite: &mut Suite,
    service: ServiceName,
    load: WriteLoad<Write>,
) -> Vec<Write> {
    load.until_acknowledged(BEFORE_KILL).await;
    suite.kill_replica(service, 0).await;
    let failed = load.failed();
    load.until_failed(failed + 1).await;
    let restarted = std::panic::AssertUnwindSafe(suite.restart_replica(service, 0));
    if let Err(failure) = futures::FutureExt::catch_unwind(restarted).await {
        eprintln!(
            "{service} did not come back; the services' logs:\n{}",
            suite.logs()
        );
        std::panic::resume_unwind(failure);
    }
    let acknowledged = load.acknowledged();
    load.until_acknowledged(acknowledged + AFTER_RESTART).await;
    let (acked, failures) = load.stop().await;
    assert_only_unavailable(service, &failures);
    acked
}

/// A call in flight when its service died may fail, but only as
/// UNAVAILABLE: anything else tells the client something false. With the
/// gateway itself killed, a call whose connection broke under it is failed
/// by the client library, not by any server: tonic then says UNKNOWN
/// "transport error" or "h2 protocol error", or CANCELLED "operation was
/// canceled", and keeps the transport's error as the status's source. Those
/// are allowed too; a status a server sent has no source.
fn assert_only_unavailable(service: ServiceName, failures: &[Failure]) {
    let lost_connection = |status: &Status| {
        service == ServiceName::Gateway && std::error::Error::source(status).is_some()
    };
    let wrong: Vec<String> = failures
        .iter()
        .filter(|f| f.status.code() != Code::Unavailable && !lost_connection(&f.status))
        .map(|f| {
            let source = std::error::Error::source(&f.status).map(ToString::to_string);
            let (code, message) = (f.status.code(), f.status.message());
            format!("{}: {code:?} {message} (source: {source:?})", f.call)
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "with {service} killed, calls failed other than UNAVAILABLE ({} of {}):\n{}",
        wrong.len(),
        failures.len(),
        wrong.join("\n")
    );
}

fn agent_of(
    answer: Result<tonic::Response<registry::CreateAgentResponse>, Status>,
) -> Result<registry::Agent, Status> {
    answer.map(|r| r.into_inner().agent.expect("agent"))
}

/// Creates an agent and deploys it: two writes, each recorded.
async fn create_and_deploy(recorder: &Recorder<Write>, owner: &UserClient, name: &str) {
    let created = agent_of(owner.registry().create_agent(draft_agent(name)).await);
    let Some(agent) = recorder.record("CreateAgent", created, |a| Write::Agent(a.id.clone()))
    else {
        return;
    };
    let deployed = owner
        .registry()
        .deploy_agent(registry::DeployAgentRequest {
            agent_id: agent.id.clone(),
            expected_draft_revision: agent.draft_revision,
            notes: String::new(),
        })
        .await
        .map(|r| r.into_inner().agent.expect("agent"));
    recorder.record("DeployAgent", deployed, |a| {
        Write::Version(a.id.clone(), a.latest_version_number)
    });
}

async fn create_grant(recorder: &Recorder<Write>, owner: &UserClient, agent_id: &str) {
    let created = owner
        .sharing()
        .create_grant(sharing::CreateGrantRequest {
            agent_id: agent_id.into(),
            kind: sharing::GrantKind::Invoke as i32,
            label: "crash".into(),
            expire_time: None,
            pinned_version: None,
            limits: None,
        })
        .await
        .map(|r| r.into_inner().grant.expect("grant"));
    recorder.record("CreateGrant", created, |g| Write::Grant(g.id.clone()));
}

async fn write_item(recorder: &Recorder<Write>, owner: &UserClient, agent_id: &str, key: String) {
    let value = format!("value of {key}");
    let written = WorkspaceStoreServiceClient::new(owner.channel())
        .workspace_write(store::WorkspaceWriteRequest {
            agent_id: agent_id.into(),
            key: key.clone(),
            value: value.clone(),
            content_type: store::ItemContentType::Text as i32,
            expected_revision: None,
        })
        .await;
    recorder.record("WorkspaceWrite", written, |_| Write::Item { key, value });
}

#[tokio::test]
async fn registry_killed_mid_load_keeps_every_acknowledged_agent_and_its_events() {
    let mut suite = processes().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let load = WriteLoad::start(WORKERS, {
        let alice = alice.clone();
        move |recorder, worker, n| {
            let alice = alice.clone();
            async move {
                create_and_deploy(&recorder, &alice, &format!("Crash {worker}-{n}")).await;
                true
            }
        }
    });
    let acked = kill_mid_load(&mut suite, ServiceName::Registry, load).await;
    assert_acknowledged(&suite, &alice, &acked).await;
    assert_consistent(&suite).await;
    suite.stop().await;
}

#[tokio::test]
async fn sharing_killed_mid_load_keeps_every_acknowledged_grant_org_and_key() {
    let mut suite = processes().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let agent = alice.deployed_agent("Shared").await;
    // Each worker founds orgs as a user of its own.
    let mut founders = Vec::new();
    for worker in 0..WORKERS {
        founders.push(suite.user(&format!("founder{worker}")).await);
    }
    let founders = Arc::new(founders);
    let load = WriteLoad::start(WORKERS, {
        let alice = alice.clone();
        move |recorder, worker, n| {
            let (alice, founders, agent_id) = (alice.clone(), founders.clone(), agent.id.clone());
            async move {
                match n % 3 {
                    0 => create_grant(&recorder, &alice, &agent_id).await,
                    1 => {
                        let created = founders[worker]
                            .tenancy()
                            .create_org(sharing::CreateOrgRequest {
                                name: format!("Org {worker}-{n}"),
                            })
                            .await
                            .map(|r| r.into_inner().org.expect("org"));
                        recorder.record("CreateOrg", created, |o| Write::Org(o.id.clone()));
                    }
                    _ => {
                        let created = TenancyServiceClient::new(alice.channel())
                            .create_api_key(sharing::CreateApiKeyRequest {
                                label: format!("key {worker}-{n}"),
                                ..Default::default()
                            })
                            .await
                            .map(|r| r.into_inner().api_key.expect("key"));
                        recorder.record("CreateApiKey", created, |k| Write::ApiKey(k.id.clone()));
                    }
                }
                true
            }
        }
    });
    let acked = kill_mid_load(&mut suite, ServiceName::Sharing, load).await;
    assert_acknowledged(&suite, &alice, &acked).await;
    assert_consistent(&suite).await;
    suite.stop().await;
}

#[tokio::test]
async fn store_killed_mid_load_keeps_every_acknowledged_item_and_run() {
    let mut suite = processes().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let agent = alice.shared_agent("Notes").await;
    let load = WriteLoad::start(WORKERS, {
        let alice = alice.clone();
        move |recorder, worker, n| {
            let (alice, agent_id) = (alice.clone(), agent.id.clone());
            async move {
                if n % 2 == 0 {
                    write_item(&recorder, &alice, &agent_id, format!("k{worker}-{n}")).await;
                } else {
                    let ran = alice.run(&agent_id, &format!("note {worker}-{n}")).await;
                    recorder.record("Invoke", ran, |r| Write::Run {
                        session_id: r.session_id.clone(),
                        invocation_id: r.invocation_id.clone(),
                    });
                }
                true
            }
        }
    });
    let acked = kill_mid_load(&mut suite, ServiceName::Store, load).await;
    assert_acknowledged(&suite, &alice, &acked).await;
    assert_consistent(&suite).await;
    suite.stop().await;
}

/// Automations enough that no worker runs out of keys during the test.
const AUTOMATIONS: usize = 40;

#[tokio::test]
async fn scheduler_killed_mid_load_keeps_every_acknowledged_subscription() {
    let mut suite = processes().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let mut keys = Vec::new();
    for name in ["Briefs", "Digests", "Reports"] {
        let automations = (0..AUTOMATIONS)
            .map(|i| registry::Automation {
                key: format!("a{i}"),
                display_name: format!("Automation {i}"),
                schedule: Some(registry::Schedule {
                    kind: Some(registry::schedule::Kind::Hourly(registry::HourlySchedule {
                        minute: i32::try_from(i).expect("minute"),
                    })),
                }),
                time_zone: "UTC".into(),
                task: "Summarise.".into(),
                suggested_channels: Vec::new(),
                catch_up_policy: 0,
            })
            .collect();
        let agent = agent_of(
            alice
                .registry()
                .create_agent(registry::CreateAgentRequest {
                    draft: Some(registry::AgentDraft {
                        name: name.into(),
                        automations,
                        ..Default::default()
                    }),
                    is_managed: false,
                })
                .await,
        )
        .expect("agent");
        let agent = alice.deploy(&agent).await;
        keys.extend((0..AUTOMATIONS).map(|i| (agent.id.clone(), format!("a{i}"))));
    }
    let keys = Arc::new(keys);
    // A worker moves to its next key only once the last one is answered
    // OK, so an outage does not use the keys up.
    let next: Arc<Vec<AtomicUsize>> = Arc::new((0..WORKERS).map(|_| AtomicUsize::new(0)).collect());
    let load = WriteLoad::start(WORKERS, {
        let alice = alice.clone();
        move |recorder, worker, _| {
            let (alice, keys, next) = (alice.clone(), keys.clone(), next.clone());
            async move {
                let index = worker + WORKERS * next[worker].load(Ordering::Relaxed);
                let Some((agent_id, key)) = keys.get(index).cloned() else {
                    return false;
                };
                let answer = AutomationsServiceClient::new(alice.channel())
                    .subscribe(scheduler::SubscribeRequest {
                        agent_id: agent_id.clone(),
                        automation_key: key.clone(),
                        enabled: true,
                        channels: vec![scheduler::NotificationChannel::Web as i32],
                    })
                    .await
                    .map(|_| ())
                    // A retry after an answer lost to the kill finds the
                    // subscription made: that is the write acknowledged.
                    .or_else(|status| match status.code() {
                        Code::AlreadyExists => Ok(()),
                        _ => Err(status),
                    });
                let ok = answer.is_ok();
                recorder.record("Subscribe", answer, |()| Write::Subscription {
                    agent_id,
                    key,
                });
                if ok {
                    next[worker].fetch_add(1, Ordering::Relaxed);
                }
                true
            }
        }
    });
    let acked = kill_mid_load(&mut suite, ServiceName::Scheduler, load).await;
    assert_acknowledged(&suite, &alice, &acked).await;
    assert_consistent(&suite).await;
    suite.stop().await;
}

#[tokio::test]
async fn gateway_killed_mid_load_loses_no_acknowledged_write() {
    let mut suite = processes().await;
    let alice = suite.user("alice").await;
    alice.new_org("Acme").await;
    let agent = alice.shared_agent("Notes").await;
    let load = WriteLoad::start(WORKERS, {
        let alice = alice.clone();
        move |recorder, worker, n| {
            let (alice, agent_id) = (alice.clone(), agent.id.clone());
            async move {
                match n % 3 {
                    0 => create_and_deploy(&recorder, &alice, &format!("Crash {worker}-{n}")).await,
                    1 => write_item(&recorder, &alice, &agent_id, format!("k{worker}-{n}")).await,
                    _ => create_grant(&recorder, &alice, &agent_id).await,
                }
                true
            }
        }
    });
    let acked = kill_mid_load(&mut suite, ServiceName::Gateway, load).await;
    assert_acknowledged(&suite, &alice, &acked).await;
    assert_consistent(&suite).await;
    suite.stop().await;
}

type Snapshot = sqlx::Transaction<'static, sqlx::Any>;

/// A read transaction that sees one moment of `db` throughout, so the rows
/// and events it compares are of the same commits even while the service's
/// event followers keep writing (registry makes each new org's default
/// agent).
async fn snapshot(db: &agentshare_kit::db::Db) -> Snapshot {
    let mut tx = db.pool.begin().await.expect("begin");
    if db.backend == agentshare_kit::db::Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await
            .expect("repeatable read");
    }
    tx
}

/// One column of every row `sql` selects.
async fn strings(tx: &mut Snapshot, sql: &str) -> Vec<String> {
    sqlx::query(sql)
        .fetch_all(&mut **tx)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| row.try_get::<String, _>(0).expect("text"))
        .collect()
}

/// Whether `sql`, with one text bind, finds a row.
async fn exists(db: &agentshare_kit::db::Db, sql: &str, bind: &str) -> bool {
    sqlx::query(sql)
        .bind(bind)
        .fetch_optional(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .is_some()
}

/// Every acknowledged write is there: read through the gateway where a
/// client reads it, and in the owning service's rows.
async fn assert_acknowledged(suite: &Suite, alice: &UserClient, acked: &[Write]) {
    let registry_db = suite.db(ServiceName::Registry).await;
    let sharing_db = suite.db(ServiceName::Sharing).await;
    let store_db = suite.db(ServiceName::Store).await;
    let scheduler_db = suite.db(ServiceName::Scheduler).await;
    let items = WorkspaceStoreServiceClient::new(alice.channel());
    for write in acked {
        let present = match write {
            Write::Agent(id) => alice
                .registry()
                .get_agent(registry::GetAgentRequest { agent_id: id.clone() })
                .await
                .is_ok(),
            Write::Version(id, number) => sqlx::query(
                "SELECT 1 FROM agent_versions WHERE agent_id = $1 AND number = $2",
            )
            .bind(id)
            .bind(*number)
            .fetch_optional(&registry_db.pool)
            .await
            .expect("versions")
            .is_some(),
            Write::Grant(id) => exists(&sharing_db, "SELECT 1 FROM share_grants WHERE id = $1", id).await,
            Write::Org(id) => exists(&sharing_db, "SELECT 1 FROM orgs WHERE id = $1", id).await,
            Write::ApiKey(id) => exists(&sharing_db, "SELECT 1 FROM api_keys WHERE id = $1", id).await,
            Write::Item { key, value } => {
                // The owner of the item's agent reads it as written.
                let agent_id = &item_agent(&store_db, key).await;
                items
                    .clone()
                    .workspace_read(store::WorkspaceReadRequest {
                        agent_id: agent_id.clone(),
                        key: key.clone(),
                    })
                    .await
                    .is_ok_and(|r| r.into_inner().item.is_some_and(|i| &i.value == value))
            }
            Write::Run {
                session_id,
                invocation_id,
            } => {
                let session = alice
                    .sessions()
                    .get_session(store::GetSessionRequest {
                        session_id: session_id.clone(),
                        ..Default::default()
                    })
                    .await;
                let turn = session.is_ok_and(|s| s.into_inner().messages.len() >= 2);
                let finished = exists(
                    &store_db,
                    "SELECT 1 FROM invocations WHERE id = $1 AND status = 'succeeded'",
                    invocation_id,
                )
                .await;
                turn && finished
            }
            Write::Subscription { agent_id, key } => sqlx::query(
                "SELECT 1 FROM subscriptions WHERE agent_id = $1 AND automation_key = $2 AND enabled = 1",
            )
            .bind(agent_id)
            .bind(key)
            .fetch_optional(&scheduler_db.pool)
            .await
            .expect("subscriptions")
            .is_some(),
        };
        assert!(
            present,
            "an acknowledged write is missing after the restart: {write:?}"
        );
    }
    for db in [registry_db, sharing_db, store_db, scheduler_db] {
        db.pool.close().await;
    }
}

/// The agent whose partition holds `key`, from the partition's name
/// (`agent-<id>/<workspace>`).
async fn item_agent(store_db: &agentshare_kit::db::Db, key: &str) -> String {
    let partition: String = sqlx::query("SELECT partition FROM workspace_items WHERE key = $1")
        .bind(key)
        .fetch_one(&store_db.pool)
        .await
        .unwrap_or_else(|e| panic!("item {key}: {e}"))
        .try_get(0)
        .expect("partition");
    partition
        .strip_prefix("agent-")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("partition {partition}"))
        .to_string()
}

/// `rows` and `events` name the same things, each event exactly once.
#[track_caller]
fn one_for_one(what: &str, rows: &[String], events: &[String]) {
    let mut seen: HashMap<&String, usize> = HashMap::new();
    for event in events {
        *seen.entry(event).or_default() += 1;
    }
    let rows_set: BTreeSet<&String> = rows.iter().collect();
    assert_eq!(rows_set.len(), rows.len(), "{what}: a row is there twice");
    let without_event: Vec<_> = rows.iter().filter(|r| !seen.contains_key(r)).collect();
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    let without_row: Vec<_> = seen.keys().filter(|e| !rows_set.contains(*e)).collect();
    assert!(
        without_event.is_empty() && twice.is_empty() && without_row.is_empty(),
        "{what}: rows without their event {without_event:?}; events twice {twice:?}; events without their row {without_row:?}"
    );
}

/// A service's outbox: (kind, subject, payload) in number order, after
/// checking the numbers run 1, 2, … up to the counter with no hole.
async fn outbox(
    tx: &mut Snapshot,
    service: ServiceName,
) -> Vec<(String, String, serde_json::Value)> {
    let rows = sqlx::query("SELECT seq, kind, subject_id, payload FROM events ORDER BY seq")
        .fetch_all(&mut **tx)
        .await
        .expect("events");
    let last: i64 = sqlx::query("SELECT last_seq FROM event_counter WHERE id = 1")
        .fetch_one(&mut **tx)
        .await
        .expect("counter")
        .try_get(0)
        .expect("last");
    let seqs: Vec<i64> = rows
        .iter()
        .map(|r| r.try_get("seq").expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=last).collect::<Vec<_>>(),
        "{service}'s event numbers are not 1..={last} without a hole"
    );
    rows.iter()
        .map(|r| {
            let payload: String = r.try_get("payload").expect("payload");
            (
                r.try_get("kind").expect("kind"),
                r.try_get("subject_id").expect("subject"),
                serde_json::from_str(&payload).expect("payload is JSON"),
            )
        })
        .collect()
}

fn subjects(events: &[(String, String, serde_json::Value)], kind: &str) -> Vec<String> {
    events
        .iter()
        .filter(|(k, _, _)| k == kind)
        .map(|(_, subject, _)| subject.clone())
        .collect()
}

/// No write is half applied, and each outbox matches its rows one for one.
async fn assert_consistent(suite: &Suite) {
    // Registry: an agent and its agent.created; a deployed version and its
    // agent.deployed; the agent's latest version is its newest row.
    let db = suite.db(ServiceName::Registry).await;
    let mut tx = snapshot(&db).await;
    let events = outbox(&mut tx, ServiceName::Registry).await;
    let agents = strings(&mut tx, "SELECT id FROM agents").await;
    one_for_one(
        "agents and agent.created",
        &agents,
        &subjects(&events, "agent.created"),
    );
    let deployed: Vec<String> = strings(
        &mut tx,
        "SELECT agent_id || '#' || CAST(number AS TEXT) FROM agent_versions WHERE origin <> 'initial'",
    )
    .await;
    let deployed_events: Vec<String> = events
        .iter()
        .filter(|(kind, _, _)| kind == "agent.deployed")
        .map(|(_, subject, payload)| format!("{subject}#{}", payload["version"]))
        .collect();
    one_for_one("versions and agent.deployed", &deployed, &deployed_events);
    let stale = strings(
        &mut tx,
        "SELECT a.id FROM agents a WHERE a.latest_version <> \
         (SELECT COALESCE(MAX(v.number), 0) FROM agent_versions v WHERE v.agent_id = a.id)",
    )
    .await;
    assert!(
        stale.is_empty(),
        "agents whose latest version is not their newest row: {stale:?}"
    );
    let latest: BTreeMap<String, i64> = sqlx::query("SELECT id, latest_version FROM agents")
        .fetch_all(&mut *tx)
        .await
        .expect("agents")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    drop(tx);
    db.pool.close().await;

    // Sharing: an org with its owner, default workspace and org.created; a
    // grant and its grant.created; an API key, its audit row and its
    // api_key.created.
    let db = suite.db(ServiceName::Sharing).await;
    let mut tx = snapshot(&db).await;
    let events = outbox(&mut tx, ServiceName::Sharing).await;
    let orgs = strings(&mut tx, "SELECT id FROM orgs").await;
    one_for_one(
        "orgs and org.created",
        &orgs,
        &subjects(&events, "org.created"),
    );
    let incomplete = strings(
        &mut tx,
        "SELECT o.id FROM orgs o WHERE NOT EXISTS \
         (SELECT 1 FROM org_members m WHERE m.org_id = o.id AND m.role = 'owner') \
         OR NOT EXISTS (SELECT 1 FROM workspaces w WHERE w.org_id = o.id AND w.is_default = 1)",
    )
    .await;
    assert!(
        incomplete.is_empty(),
        "orgs without their owner or default workspace: {incomplete:?}"
    );
    let grants = strings(&mut tx, "SELECT id FROM share_grants").await;
    one_for_one(
        "grants and grant.created",
        &grants,
        &subjects(&events, "grant.created"),
    );
    let keys = strings(&mut tx, "SELECT id FROM api_keys").await;
    one_for_one(
        "API keys and api_key.created",
        &keys,
        &subjects(&events, "api_key.created"),
    );
    let audited = strings(
        &mut tx,
        "SELECT target_id FROM audit_events WHERE action = 'api_key.created'",
    )
    .await;
    one_for_one("API keys and their audit rows", &keys, &audited);
    // Registry's agents reach sharing, by SyncAgent or, when the kill came
    // between registry's commit and the sync, by the event backstop.
    eventually("sharing to know every agent registry committed", || async {
        let known: BTreeMap<String, i64> =
            sqlx::query("SELECT agent_id, latest_version FROM agent_access")
                .fetch_all(&db.pool)
                .await
                .expect("agent_access")
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
        let behind: Vec<_> = latest
            .iter()
            .filter(|(id, version)| known.get(*id) != Some(version))
            .collect();
        if behind.is_empty() {
            Ok(())
        } else {
            Err(format!("{behind:?}"))
        }
    })
    .await;
    drop(tx);
    db.pool.close().await;

    // Store: each partition's counters agree with its items, and each item
    // has the change that wrote it; each session's messages run 1, 2, ….
    let db = suite.db(ServiceName::Store).await;
    let mut tx = snapshot(&db).await;
    let wrong = strings(
        &mut tx,
        "SELECT p.partition FROM store_partitions p WHERE \
         p.item_count <> (SELECT COUNT(*) FROM workspace_items i WHERE i.partition = p.partition) \
         OR p.total_bytes <> (SELECT COALESCE(SUM(i.size_bytes), 0) FROM workspace_items i WHERE i.partition = p.partition) \
         OR p.revision <> (SELECT COALESCE(MAX(c.revision), 0) FROM item_changes c WHERE c.partition = p.partition)",
    )
    .await;
    assert!(
        wrong.is_empty(),
        "partitions whose counters disagree with their items: {wrong:?}"
    );
    let unrecorded = strings(
        &mut tx,
        "SELECT i.key FROM workspace_items i WHERE NOT EXISTS (SELECT 1 FROM item_changes c \
         WHERE c.partition = i.partition AND c.revision = i.revision AND c.kind = 'put' \
         AND c.key = i.key AND c.value = i.value)",
    )
    .await;
    assert!(
        unrecorded.is_empty(),
        "items without the change that wrote them: {unrecorded:?}"
    );
    let gapped = strings(
        &mut tx,
        "SELECT m.session_id FROM messages m GROUP BY m.session_id \
         HAVING MIN(m.sequence) <> 1 OR MAX(m.sequence) <> COUNT(*)",
    )
    .await;
    assert!(
        gapped.is_empty(),
        "sessions whose messages have a hole: {gapped:?}"
    );
    drop(tx);
    db.pool.close().await;
}
