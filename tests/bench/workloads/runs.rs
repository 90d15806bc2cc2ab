//! Invoke on the built-in echo runtime: the whole run path (plan, run
//! content, usage record, session turns, run token, runtime, completion)
//! as a member of the org calls it, in a new session, continuing one, and
//! with one tool call that writes to the workspace store.

use std::sync::Arc;

use agentshare_proto::gateway::v1 as gateway;

use super::Bench;
use crate::measure::{called, measure};
use crate::report::{Line, Target};

/// Keys the tool-call workload writes over.
const TOOL_KEYS: u64 = 500;

pub async fn run(bench: &mut Bench<'_>) -> Result<(), String> {
    let org = bench.org;
    let (client, agent) = (org.member.clone(), org.research.clone());
    let sample = measure(bench.load, move |worker, n| {
        let (client, agent) = (client.clone(), agent.clone());
        async move {
            let answer = called(client.run(&agent, &format!("question {worker}.{n}")).await)?;
            if answer.output_text.starts_with("echo: question") {
                Ok(())
            } else {
                Err(format!(
                    "the echo runtime answered {:?}",
                    answer.output_text
                ))
            }
        }
    })
    .await;
    let line = Line::rate("Invoke", bench.detail("echo runtime, new session"), &sample)
        .against(Some(&bench.limits.writes))
        .target(Target::RatioAtLeast(0.25));
    bench.report.add(line);

    // One session per worker, so the turns of a session never race.
    let mut sessions = Vec::with_capacity(bench.load.concurrency);
    for worker in 0..bench.load.concurrency {
        let opened = called(
            org.member
                .run(&org.research, &format!("session {worker}"))
                .await,
        )?;
        sessions.push(opened.session_id);
    }
    let sessions = Arc::new(sessions);
    let (client, agent) = (org.member.clone(), org.research.clone());
    let sample = measure(bench.load, move |worker, n| {
        let (mut invoke, agent) = (client.invoke(), agent.clone());
        let session = sessions[worker].clone();
        async move {
            called(
                invoke
                    .invoke(gateway::InvokeRequest {
                        agent_id: agent,
                        input: format!("follow-up {n}"),
                        session_id: Some(session),
                        ..Default::default()
                    })
                    .await,
            )?;
            Ok(())
        }
    })
    .await;
    let line = Line::rate(
        "Invoke",
        bench.detail("echo runtime, continued session"),
        &sample,
    )
    .against(Some(&bench.limits.writes));
    bench.report.add(line);

    let (client, agent) = (org.member.clone(), org.research.clone());
    let sample = measure(bench.load, move |worker, n| {
        let (client, agent) = (client.clone(), agent.clone());
        async move {
            let key = crate::limits::spread(worker, n) % TOOL_KEYS;
            let input = format!("/workspace_write {{\"key\":\"note-{key}\",\"value\":\"v\"}}");
            let answer = called(client.run(&agent, &input).await)?;
            match answer.tool_calls.iter().find(|c| !c.succeeded) {
                None if !answer.tool_calls.is_empty() => Ok(()),
                None => Err("the run made no tool call".into()),
                Some(call) => Err(format!("{}: {}", call.tool_name, call.error_message)),
            }
        }
    })
    .await;
    let line = Line::rate(
        "Invoke",
        bench.detail("echo runtime, one workspace_write tool call"),
        &sample,
    )
    .against(Some(&bench.limits.writes));
    bench.report.add(line);
    Ok(())
}
