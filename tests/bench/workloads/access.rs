//! The decision on every agent call (Check, CheckBulk, ResolveInvocation),
//! the caller's list of agents, and the registry's most common read; the
//! server's resident set is sampled while Check runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agentshare_proto::registry::v1 as registry;
use agentshare_proto::sharing::v1 as sharing;

use super::Bench;
use crate::measure::{Load, called, measure};
use crate::report::{Line, Target};
use crate::target::rss_mib;

/// Agents one CheckBulk asks about.
const BULK: usize = 100;
/// How often the resident set is sampled under load.
const RSS_SAMPLE: Duration = Duration::from_millis(50);

pub async fn run(bench: &mut Bench<'_>) {
    let org = bench.org;
    let agents = Arc::new(org.agents.clone());

    let check = |load: Load| {
        let (client, agents) = (org.member.clone(), agents.clone());
        measure(load, move |worker, n| {
            let (mut access, agents) = (client.access(), agents.clone());
            async move {
                let agent = &agents[crate::limits::spread(worker, n) as usize % agents.len()];
                let answer = called(
                    access
                        .check(sharing::CheckRequest {
                            principal: None,
                            agent_id: agent.clone(),
                            action: sharing::Action::Run as i32,
                        })
                        .await,
                )?;
                allowed(answer.into_inner().allowed)
            }
        })
    };

    let pid = bench.server.pid();
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(RSS_SAMPLE);
            let mut peak: Option<f64> = None;
            while sampling.load(Ordering::Relaxed) {
                every.tick().await;
                if let Some(mib) = pid.and_then(rss_mib) {
                    peak = Some(peak.map_or(mib, |p: f64| p.max(mib)));
                }
            }
            peak
        })
    };
    let sample = check(bench.load).await;
    sampling.store(false, Ordering::Relaxed);
    let line = Line::rate("Check", bench.detail("RUN"), &sample)
        .against(Some(&bench.limits.echo))
        .target(Target::RatioAtLeast(0.15))
        .target(Target::P99Under(3.0));
    bench.report.add(line);
    if let Ok(Some(peak)) = sampler.await {
        let line = Line::value(
            "serve RSS under Check load",
            bench.detail("peak"),
            peak,
            "MiB",
        )
        .target(Target::Under(200.0));
        bench.report.add(line);
    }

    let one = Load {
        concurrency: 1,
        ..bench.load
    };
    let sample = check(one).await;
    let line = Line::rate("Check", bench.detail_at(1, "RUN, one caller"), &sample)
        .target(Target::P50Under(0.5));
    bench.report.add(line);

    let (client, all) = (org.member.clone(), agents.clone());
    let sample = measure(bench.load, move |_, _| {
        let (mut access, all) = (client.access(), all.clone());
        async move {
            let ids: Vec<String> = all.iter().take(BULK).cloned().collect();
            let asked = ids.len();
            let answer = called(
                access
                    .check_bulk(sharing::CheckBulkRequest {
                        principal: None,
                        agent_ids: ids,
                        action: sharing::Action::Run as i32,
                    })
                    .await,
            )?;
            let decisions = answer.into_inner().decisions;
            if decisions.len() != asked {
                return Err(format!("{} decisions for {asked} agents", decisions.len()));
            }
            Ok(())
        }
    })
    .await;
    let what = format!("{} agents", BULK.min(agents.len()));
    let line = Line::rate("CheckBulk", bench.detail(&what), &sample);
    bench.report.add(line);

    let (client, visible) = (org.member.clone(), agents.len());
    let sample = measure(bench.load, move |_, _| {
        let mut access = client.access();
        async move {
            let mut seen = 0;
            let mut page_token = String::new();
            loop {
                let page = called(
                    access
                        .list_my_agents(sharing::ListMyAgentsRequest {
                            relation: sharing::AgentRelation::Unspecified as i32,
                            page_size: 1000,
                            page_token,
                        })
                        .await,
                )?
                .into_inner();
                seen += page.agents.len();
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            // The research agent is visible too.
            if seen < visible {
                return Err(format!("listed {seen} agents of {visible}"));
            }
            Ok(())
        }
    })
    .await;
    let what = format!("{visible} visible agents, every page");
    let line =
        Line::rate("ListMyAgents", bench.detail(&what), &sample).target(Target::P99Under(20.0));
    bench.report.add(line);

    let (client, agents_for_get) = (org.member.clone(), agents.clone());
    let sample = measure(bench.load, move |worker, n| {
        let (mut registry, agents) = (client.registry(), agents_for_get.clone());
        async move {
            let agent = &agents[crate::limits::spread(worker, n) as usize % agents.len()];
            called(
                registry
                    .get_agent(registry::GetAgentRequest {
                        agent_id: agent.clone(),
                    })
                    .await,
            )?;
            Ok(())
        }
    })
    .await;
    let line = Line::rate("GetAgent", bench.detail(""), &sample)
        .against(Some(&bench.limits.echo))
        .target(Target::RatioAtLeast(0.10));
    bench.report.add(line);

    let (client, research) = (org.member.clone(), org.research.clone());
    let sample = measure(bench.load, move |_, _| {
        let (mut access, research) = (client.access(), research.clone());
        async move {
            let answer = called(
                access
                    .resolve_invocation(sharing::ResolveInvocationRequest {
                        agent_id: research,
                        ..Default::default()
                    })
                    .await,
            )?;
            match answer.into_inner().plan {
                Some(_) => Ok(()),
                None => Err("a plan without a plan".into()),
            }
        }
    })
    .await;
    let line = Line::rate("ResolveInvocation", bench.detail("2 integrations"), &sample)
        .against(Some(&bench.limits.echo))
        .target(Target::RatioAtLeast(0.10));
    bench.report.add(line);
}

fn allowed(allowed: bool) -> Result<(), String> {
    if allowed {
        Ok(())
    } else {
        Err("a member was refused an agent shared with the org".into())
    }
}
