//! `agentshare demo` tells the README's story of a shared agent against a
//! live `serve` and exits 0 only when every step behaved as the README says.

use agentshare_e2e::cli::Serve;

#[tokio::test]
async fn the_demo_tells_the_whole_story_twice_at_once_against_one_server() {
    let serve = Serve::start().await;
    // Each run makes its own org and users, so two at once keep out of each
    // other's way (and wait for the same minute boundary).
    let (first, second) =
        tokio::join!(serve.cli().arg("demo").run(), serve.cli().arg("demo").run());
    let (first, second) = (first.ok(), second.ok());
    for step in 1..=8 {
        assert!(
            first.stdout.contains(&format!("\n{step}. ")),
            "step {step} is told: {}",
            first.stdout
        );
    }
    assert!(!first.stdout.contains('✗'), "{}", first.stdout);
    assert!(first.stdout.contains("The story held"), "{}", first.stdout);
    assert!(first.stdout.contains("billed to Ben"), "{}", first.stdout);
    assert!(
        first.stdout.contains("Ben's very next run fails"),
        "{}",
        first.stdout
    );
    assert!(
        second.stdout.contains("The story held"),
        "{}",
        second.stdout
    );
}

#[tokio::test]
async fn the_demo_without_a_server_says_to_start_one_and_exits_1() {
    let serve = Serve::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    serve
        .cli()
        .args(&["demo", "--endpoint", &endpoint])
        .run()
        .await
        .failed(1, "UNAVAILABLE");
    let empty = tempfile::tempdir().expect("dir");
    serve
        .cli()
        .arg("demo")
        .env("AGENTSHARE_DATA_DIR", empty.path().to_str().expect("path"))
        .run()
        .await
        .failed(1, "agentshare serve");
}
