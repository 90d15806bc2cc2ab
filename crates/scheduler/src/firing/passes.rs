//! The firing loop, one per replica. Each pass takes over the runs whose
//! lease expired, then claims due subscriptions, never more than it has
//! free slots for, so a claimed run starts at once and its lease is renewed
//! from the start. Each run goes through the gateway's
//! `InvokeInternalService.RunAutomation` as its user, the one run path that
//! plans, records usage, opens the session and calls the runtime, and that
//! checks access again at fire time.
//!
//! Time comes from the context's clock only; the loop's own pace (the poll
//! interval, the lease renewals) is real time, so tests on a manual clock
//! move schedules without waiting for them.

use agentshare_kit::clock::duration_micros;
use std::sync::Arc;
use std::time::Duration;

use agentshare_kit::clock::Clock;
use agentshare_kit::config::Scheduler as Settings;
use agentshare_kit::db::new_id;
use agentshare_kit::identity::{Identity, Principal};
use agentshare_kit::server::{Passes, ServiceChannel, Shutdown};
use agentshare_proto::gateway::v1 as gateway;
use agentshare_proto::gateway::v1::invoke_internal_service_client::InvokeInternalServiceClient;
use tokio::sync::Semaphore;
use tonic::Code;
use tracing::Instrument as _;

use crate::firing::metrics::FireMetrics;
use crate::firing::storage::{Claimed, Lease, Outcome};
use crate::retirements::Retirements;
use crate::subscriptions::storage::Storage;

/// Transport failures of one run are retried this many times in place,
/// with doubling waits from `RETRY_WAIT`, before the run is recorded
/// FAILED.
const TRANSPORT_RETRIES: u32 = 4;
const RETRY_WAIT: Duration = Duration::from_millis(250);
/// Codes with which the run path says the user may no longer run the
/// agent (unshared, removed, deleted, setup gone): the run is skipped and
/// the subscription disabled, never retried.
const ACCESS_LOST_CODES: &[&str] = &["PERMISSION_DENIED", "NOT_FOUND", "FAILED_PRECONDITION"];

#[derive(Clone)]
pub struct Firing {
    pub storage: Storage,
    pub gateway: InvokeInternalServiceClient<ServiceChannel>,
    pub identity: Identity,
    pub settings: Settings,
    /// This replica, as it names itself in the leases it holds.
    pub owner: Arc<str>,
    /// Counts each finished pass, so a host can wait for the loop to come
    /// round (see `Passes`).
    pub passes: Passes,
    /// Versions whose sunset each pass looks for.
    pub retirements: Retirements,
    metrics: FireMetrics,
}

impl Firing {
    pub fn new(
        storage: Storage,
        gateway: ServiceChannel,
        identity: Identity,
        settings: Settings,
        passes: Passes,
        retirements: Retirements,
    ) -> Self {
        Self {
            storage,
            gateway: InvokeInternalServiceClient::new(gateway),
            identity,
            settings,
            owner: Arc::from(new_id()),
            passes,
            retirements,
            metrics: FireMetrics::new(),
        }
    }

    fn lease(&self) -> Duration {
        self.settings.fire_lease
    }

    fn clock(&self) -> &Clock {
        &self.storage.clock
    }

    /// Fires until `shutdown`.
    pub fn spawn(self, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    async fn run(self, shutdown: Shutdown) {
        let slots = Arc::new(Semaphore::new(
            usize::try_from(self.settings.fire_concurrency).unwrap_or(1),
        ));
        let poll = self.settings.fire_poll;
        let mut stop = shutdown.clone();
        loop {
            if shutdown.is_triggered() {
                return;
            }
            let started = match self.pass(&slots, &shutdown).await {
                Ok(started) => started,
                Err(error) => {
                    tracing::warn!(%error, "firing pass failed; retrying");
                    0
                }
            };
            if let Err(error) = self.retirements.pass(&self.owner, self.lease()).await {
                tracing::warn!(%error, "retirement pass failed; retrying");
            }
            self.passes.completed();
            // A full pass means more is waiting: go again once a slot frees.
            let full = started > 0 && slots.available_permits() == 0;
            tokio::select! {
                () = tokio::time::sleep(poll), if !full => {}
                permit = slots.clone().acquire_owned(), if full => drop(permit),
                () = stop.wait() => return,
            }
        }
    }

    /// Takes over expired leases, then claims due subscriptions, as many as
    /// there are free slots; starts each run. Returns how many started.
    async fn pass(
        &self,
        slots: &Arc<Semaphore>,
        shutdown: &Shutdown,
    ) -> agentshare_kit::Result<usize> {
        let lease = duration_micros(self.lease());
        let mut started = 0;
        for reclaim in [true, false] {
            let free = slots
                .available_permits()
                .min(usize::try_from(self.settings.fire_batch).unwrap_or(1));
            if free == 0 {
                break;
            }
            let limit = i64::try_from(free).unwrap_or(1);
            let runs = if reclaim {
                self.storage
                    .reclaim_expired(&self.owner, lease, limit)
                    .await?
            } else {
                let missed_after = duration_micros(self.settings.fire_missed_after);
                let claims = self
                    .storage
                    .claim_due(&self.owner, lease, missed_after, limit)
                    .await?;
                self.metrics.not_run(claims.missed, claims.skipped);
                claims.runs
            };
            for run in runs {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return Ok(started);
                };
                let firing = self.clone();
                let shutdown = shutdown.clone();
                // The root of the run's trace: the gateway's RunAutomation
                // and everything it calls continue it.
                let span = tracing::info_span!(
                    "fire",
                    otel.name = "fire automation run",
                    run = %run.run_id,
                    attempt = run.attempt,
                    subscription = %run.subscription_id,
                );
                tokio::spawn(
                    async move {
                        firing.execute(run, shutdown).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
                started += 1;
            }
        }
        Ok(started)
    }

    /// Runs one claimed run to its record, renewing the lease meanwhile.
    /// When the replica stops first, the lease is given up so another
    /// replica retries the run at once.
    async fn execute(&self, run: Claimed, shutdown: Shutdown) {
        let lease = Lease {
            owner: &self.owner,
            run_id: &run.run_id,
            attempt: run.attempt,
        };
        let lateness_micros = self.clock().now_micros() - run.scheduled_at;
        self.metrics.started(lateness_micros);
        tracing::debug!(
            run = %run.run_id,
            attempt = run.attempt,
            subscription = %run.subscription_id,
            scheduled_at = run.scheduled_at,
            lateness_micros,
            "firing"
        );
        let mut stop = shutdown.clone();
        let outcome = tokio::select! {
            outcome = self.call_gateway(&run) => outcome,
            lost = self.keep_lease(&lease) => {
                tracing::warn!(run = %run.run_id, attempt = run.attempt, lost, "lease lost mid-run; the replica that took the run over records it");
                return;
            }
            () = stop.wait() => {
                if let Err(error) = self.storage.release_lease(&lease).await {
                    tracing::warn!(run = %run.run_id, %error, "could not give up the lease; it expires by itself");
                }
                return;
            }
        };
        // The record is written even while stopping: the run is done.
        match self.storage.finish_run(&lease, &outcome).await {
            Ok(true) => self.metrics.finished(&outcome),
            Ok(false) => {
                tracing::warn!(run = %run.run_id, attempt = run.attempt, "lease lost before the run was recorded; the replica that took it over records it");
            }
            Err(error) => {
                // The lease then expires and another replica retries the
                // run under the same id; the runtime de-duplicates.
                tracing::error!(run = %run.run_id, %error, "could not record the run");
            }
        }
    }

    /// Renews the lease every third of its length; returns only when the
    /// lease was lost to another replica (true) or cannot be renewed
    /// (false) before it expires.
    async fn keep_lease(&self, lease: &Lease<'_>) -> bool {
        let length = self.lease();
        let mut failing_since: Option<i64> = None;
        loop {
            tokio::time::sleep(length / 3).await;
            match self
                .storage
                .renew_lease(lease, duration_micros(length))
                .await
            {
                Ok(true) => failing_since = None,
                Ok(false) => return true,
                Err(error) => {
                    let now = self.clock().now_micros();
                    let since = *failing_since.get_or_insert(now);
                    tracing::warn!(run = %lease.run_id, %error, "lease renewal failed");
                    if now - since >= duration_micros(length) * 2 / 3 {
                        return false;
                    }
                }
            }
        }
    }

    /// The signed Principal of the subscribing user, in the subscription's
    /// org and workspace: the scheduler acts for users when automations
    /// fire, and the gateway resolves the rest of their access itself.
    fn principal(&self, run: &Claimed) -> Result<Principal, agentshare_kit::Error> {
        let mut principal = Principal::user(run.user_id.clone());
        principal.org_id = Some(run.org_id.clone());
        principal.workspace_id = Some(run.workspace_id.clone()).filter(|w| !w.is_empty());
        principal.token = self.identity.sign_principal(&principal)?;
        Ok(principal)
    }

    /// One RunAutomation, retried in place on transport failures.
    async fn call_gateway(&self, run: &Claimed) -> Outcome {
        let mut wait = RETRY_WAIT;
        let mut tries = 0;
        loop {
            let status = match self.call_once(run).await {
                Ok(response) => return outcome_of(response),
                Err(status) => status,
            };
            let retryable = matches!(
                status.code(),
                Code::Unavailable | Code::Cancelled | Code::Unknown | Code::ResourceExhausted
            );
            if !retryable || tries >= TRANSPORT_RETRIES {
                return Outcome::Failed {
                    code: agentshare_kit::error::code_name(status.code()).into(),
                    message: format!("the run could not be started: {}", status.message()),
                    invocation_id: String::new(),
                    session_id: String::new(),
                    version: 0,
                };
            }
            tries += 1;
            tracing::info!(run = %run.run_id, code = ?status.code(), "gateway unavailable; retrying the run");
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }

    async fn call_once(
        &self,
        run: &Claimed,
    ) -> Result<gateway::RunAutomationResponse, tonic::Status> {
        let principal = self.principal(run).map_err(tonic::Status::from)?;
        let mut request = tonic::Request::new(gateway::RunAutomationRequest {
            run_id: run.run_id.clone(),
            attempt: i32::try_from(run.attempt).unwrap_or(i32::MAX),
            agent_id: run.agent_id.clone(),
            automation_key: run.automation_key.clone(),
            task: run.task.clone(),
        });
        principal.forward(&mut request);
        request.set_timeout(self.settings.fire_run_timeout);
        Ok(self
            .gateway
            .clone()
            .run_automation(request)
            .await?
            .into_inner())
    }
}

fn outcome_of(response: gateway::RunAutomationResponse) -> Outcome {
    let succeeded = response.outcome == gateway::AutomationRunOutcome::Succeeded as i32;
    if succeeded {
        return Outcome::Succeeded {
            summary: response.output_summary,
            invocation_id: response.invocation_id,
            session_id: response.session_id,
            version: response.version_number,
        };
    }
    if ACCESS_LOST_CODES.contains(&response.error_code.as_str()) {
        return Outcome::AccessLost {
            code: response.error_code,
            message: response.error_message,
        };
    }
    let code = if response.error_code.is_empty() {
        "UNKNOWN".to_string()
    } else {
        response.error_code
    };
    Outcome::Failed {
        code,
        message: response.error_message,
        invocation_id: response.invocation_id,
        session_id: response.session_id,
        version: response.version_number,
    }
}
