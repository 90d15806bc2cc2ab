//! UsageService: the billed account reads its usage, and an agent's owner
//! the usage of their agent. Nobody else reads a record: not an org admin
//! (but for the org default agent), not the user a run executed as.

use agentshare_kit::Error;
use agentshare_kit::clock::timestamp;
use agentshare_kit::identity::{Principal, PrincipalKind};
use agentshare_kit::ids;
use agentshare_kit::server::ServiceChannel;
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::store::v1 as pb;
use pb::usage_service_server::UsageService;
use sharing::access_service_client::AccessServiceClient;
use tonic::{Code, Request, Response, Status};

use agentshare_kit::page::Page;

use super::domain::{self, Period, Range, Status as RunStatus, UsageFilter};
use super::storage::Storage;
use super::wire;

#[derive(Clone)]
pub struct Usage {
    pub storage: Storage,
    pub sharing: ServiceChannel,
}

/// What a usage request reads, decided before any record is.
struct Scope {
    filter: UsageFilter,
    /// The request's filters, bound into its page tokens.
    key: String,
}

fn caller(principal: &Principal) -> Result<&str, Error> {
    if principal.kind == PrincipalKind::Grant {
        return Err(Error::PermissionDenied(
            "usage is read by signed-in users only, not with a share token".into(),
        ));
    }
    principal.require_user()
}

impl Usage {
    /// Whose records the caller reads: its own bills, or one agent's runs
    /// when it owns the agent.
    async fn scope<T>(
        &self,
        request: &Request<T>,
        scope: i32,
        agent_id: &str,
    ) -> Result<Scope, Status> {
        let principal = Principal::of(request)?;
        let user_id = caller(principal)?;
        let agent_id = ids::parse_optional("agent_id", agent_id)?;
        match pb::UsageScope::try_from(scope) {
            Ok(pb::UsageScope::BilledToCaller) => Ok(Scope {
                key: format!("billed:{agent_id}"),
                filter: UsageFilter::BilledTo {
                    user_id: user_id.to_string(),
                    agent_id,
                },
            }),
            Ok(pb::UsageScope::Agent) => {
                if agent_id.is_empty() {
                    return Err(Error::invalid(
                        "agent_id",
                        "required for scope AGENT: name the agent whose usage to read",
                    )
                    .into());
                }
                self.check_owner(principal, user_id, &agent_id).await?;
                Ok(Scope {
                    key: format!("agent:{agent_id}"),
                    filter: UsageFilter::Agent { agent_id },
                })
            }
            Ok(pb::UsageScope::Unspecified) | Err(_) => Err(Error::invalid(
                "scope",
                "required: BILLED_TO_CALLER for your own usage, or AGENT for an agent you own",
            )
            .into()),
        }
    }

    /// The owner reads their agent's usage, even once it is deleted: the
    /// records name the owner. Without such a record, sharing says whether
    /// the caller owns the agent (or, for the org default agent,
    /// administers the org), merely sees it, or sees nothing.
    async fn check_owner(
        &self,
        principal: &Principal,
        user_id: &str,
        agent_id: &str,
    ) -> Result<(), Status> {
        if self
            .storage
            .owned_runs(agent_id, user_id)
            .await
            .map_err(Error::from)?
        {
            return Ok(());
        }
        let mut check = Request::new(sharing::CheckRequest {
            principal: None,
            agent_id: agent_id.to_string(),
            action: sharing::Action::Edit.into(),
        });
        principal.forward(&mut check);
        let decision = AccessServiceClient::new(self.sharing.clone())
            .check(check)
            .await
            .map_err(|status| match status.code() {
                Code::NotFound => Error::not_found("agent").into(),
                Code::Unavailable => {
                    Status::unavailable("access checks are unavailable; retry shortly")
                }
                _ => {
                    tracing::error!(%status, "sharing refused an owner check");
                    Status::from(Error::internal("sharing refused an owner check"))
                }
            })?
            .into_inner();
        let owner_or_admin = [
            sharing::DecisionReason::Owner,
            sharing::DecisionReason::OrgAdmin,
        ]
        .map(i32::from);
        if decision.allowed && owner_or_admin.contains(&decision.reason) {
            return Ok(());
        }
        if decision.reason == i32::from(sharing::DecisionReason::NotFound)
            || decision.reason == i32::from(sharing::DecisionReason::AgentDeleted)
        {
            return Err(Error::not_found("agent").into());
        }
        Err(Error::PermissionDenied(
            "only the agent's owner reads its usage; read your own with scope BILLED_TO_CALLER"
                .into(),
        )
        .into())
    }
}

fn status_filter(wire: i32) -> Result<Option<RunStatus>, Error> {
    match pb::InvocationStatus::try_from(wire) {
        Ok(pb::InvocationStatus::Unspecified) => Ok(None),
        Ok(_) => Ok(RunStatus::of_wire(wire)),
        Err(_) => Err(Error::invalid(
            "status",
            "must be RUNNING, SUCCEEDED, FAILED, CANCELLED or UNSPECIFIED for all",
        )),
    }
}

fn time_key(time: Option<&prost_types::Timestamp>) -> String {
    time.map_or_else(String::new, |t| format!("{}.{}", t.seconds, t.nanos))
}

#[tonic::async_trait]
impl UsageService for Usage {
    async fn list_invocations(
        &self,
        request: Request<pb::ListInvocationsRequest>,
    ) -> Result<Response<pb::ListInvocationsResponse>, Status> {
        let message = request.get_ref();
        let status = status_filter(message.status)?;
        let range = domain::range(
            message.start_time.as_ref(),
            message.end_time.as_ref(),
            self.storage.clock.now_micros(),
        )?;
        let scope = self
            .scope(&request, message.scope, &message.agent_id)
            .await?;
        let list = format!(
            "invocations:{}:{}:{}:{}",
            scope.key,
            time_key(message.start_time.as_ref()),
            time_key(message.end_time.as_ref()),
            message.status
        );
        let page = Page::keyed(message.page_size, &message.page_token, list, 2)?;
        let after = match page.after_parts() {
            Some(after) => Some((domain::cursor_number(&after[0])?, after[1].clone())),
            None => None,
        };
        let records = self
            .storage
            .invocations(&scope.filter, range, status, after, page.limit())
            .await
            .map_err(Error::from)?;
        let (records, next_page_token) = page.split_keyed(records, |record| {
            vec![record.facts.start_time.to_string(), record.id.clone()]
        });
        Ok(Response::new(pb::ListInvocationsResponse {
            invocations: records.into_iter().map(wire::invocation).collect(),
            next_page_token,
        }))
    }

    async fn summarize_usage(
        &self,
        request: Request<pb::SummarizeUsageRequest>,
    ) -> Result<Response<pb::SummarizeUsageResponse>, Status> {
        let message = request.get_ref();
        let by_agent = match pb::UsageGroupBy::try_from(message.group_by) {
            Ok(pb::UsageGroupBy::Agent) => true,
            Ok(pb::UsageGroupBy::BilledAccount) => false,
            Ok(pb::UsageGroupBy::Unspecified) | Err(_) => {
                return Err(Error::invalid("group_by", "required: AGENT or BILLED_ACCOUNT").into());
            }
        };
        let period = match pb::UsagePeriod::try_from(message.period) {
            Ok(pb::UsagePeriod::Unspecified) => Period::Whole,
            Ok(pb::UsagePeriod::Day) => Period::Day,
            Ok(pb::UsagePeriod::Month) => Period::Month,
            Err(_) => {
                return Err(Error::invalid(
                    "period",
                    "must be DAY, MONTH or UNSPECIFIED for the whole range",
                )
                .into());
            }
        };
        let range: Range = domain::range(
            message.start_time.as_ref(),
            message.end_time.as_ref(),
            self.storage.clock.now_micros(),
        )?;
        let scope = self
            .scope(&request, message.scope, &message.agent_id)
            .await?;
        let list = format!(
            "summary:{}:{}:{}:{}:{}",
            scope.key,
            time_key(message.start_time.as_ref()),
            time_key(message.end_time.as_ref()),
            message.group_by,
            message.period
        );
        let page = Page::keyed(message.page_size, &message.page_token, list, 2)?;
        let after = match page.after_parts() {
            Some(after) => Some((domain::cursor_number(&after[0])?, after[1].clone())),
            None => None,
        };
        let days = self
            .storage
            .daily_totals(&scope.filter, range, by_agent)
            .await
            .map_err(Error::from)?;
        let rows = domain::summarize(days, period, range);
        let (rows, more) = domain::summary_page(rows, after.as_ref(), page.size);
        let next_page_token = match rows.last() {
            Some(last) if more => page.token_after(&[
                last.period_start.unwrap_or(0).to_string(),
                last.group.clone(),
            ]),
            _ => String::new(),
        };
        let rows = rows
            .into_iter()
            .map(|row| {
                let (agent_id, billed_to_user_id) = if by_agent {
                    (row.group, String::new())
                } else {
                    (String::new(), row.group)
                };
                pb::UsageSummaryRow {
                    agent_id,
                    billed_to_user_id,
                    period_start_time: row.period_start.map(timestamp),
                    period_end_time: Some(timestamp(row.period_end)),
                    invocation_count: row.totals.invocations,
                    succeeded_count: row.totals.succeeded,
                    failed_count: row.totals.failed,
                    cancelled_count: row.totals.cancelled,
                    running_count: row.totals.running,
                    total_duration: Some(domain::duration(row.totals.duration_micros)),
                    input_tokens: row.totals.input_tokens,
                    output_tokens: row.totals.output_tokens,
                }
            })
            .collect();
        Ok(Response::new(pb::SummarizeUsageResponse {
            rows,
            next_page_token,
        }))
    }
}
