//! `agentshare serve` on a PostgreSQL server: every service in one process,
//! each in a database of its own, made on first start.

use agentshare_e2e::POSTGRES_URL_VAR;
use agentshare_e2e::cli::Serve;
use agentshare_kit::identity::ServiceName;
use sqlx::{Connection, Executor, Row};

#[tokio::test]
async fn serve_on_postgres_makes_a_database_per_service_and_the_demo_holds() {
    // PostgreSQL's suite: without a server there is nothing to serve on.
    let Ok(admin_url) = std::env::var(POSTGRES_URL_VAR) else {
        return;
    };
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let prefix = format!("e2e_serve_{}", &tag[tag.len() - 12..]);
    let url = agentshare::with_database(&admin_url, &prefix).expect("a PostgreSQL URL");
    let databases: Vec<(ServiceName, String)> = agentshare::BACKENDS
        .iter()
        .map(|backend| {
            let url = agentshare::service_database(&url, backend.name).expect("named");
            (backend.name, url)
        })
        .collect();

    let serve = Serve::start_with_args(&["--database-url", &url]).await;
    let demo = serve.cli().arg("demo").run().await.ok();
    assert!(demo.stdout.contains("The story held"), "{}", demo.stdout);
    drop(serve);

    sqlx::any::install_default_drivers();
    let mut admin = sqlx::AnyConnection::connect(&admin_url)
        .await
        .expect("connect");
    for (service, database_url) in &databases {
        let database = agentshare::database_of(database_url).expect("named");
        let mut own = sqlx::AnyConnection::connect(database_url)
            .await
            .unwrap_or_else(|e| panic!("{database} was made: {e}"));
        let migrated: i64 = own
            .fetch_one("SELECT count(*) FROM _sqlx_migrations")
            .await
            .expect("migrations")
            .get(0);
        assert!(migrated > 0, "{database} is migrated");
        if *service == ServiceName::Sharing {
            let users: i64 = own
                .fetch_one("SELECT count(*) FROM users")
                .await
                .expect("users")
                .get(0);
            assert!(users >= 2, "the demo's users live in {database}");
        }
        let _ = own.close().await;
        admin
            .execute(format!("DROP DATABASE \"{database}\" WITH (FORCE)").as_str())
            .await
            .expect("drop");
    }
    let _ = admin.close().await;
}
