//! UsageService: the billed account reads its usage, and an agent's owner
//! the usage of their agent. Nobody else reads a record: not an org admin
//! (but for the org default agent), not the user a run executed as.

use agentshare_kit::clock::timestamp;
use agentshare_kit::identity::{Principal, PrincipalKind};
use agentshare_kit::page::Page;
use agentshare_kit::server::ServiceChannel;
use agentshare_kit::{Error, Result, ids};
use agentshare_proto::sharing::v1 as sharing;
use agentshare_proto::store::v1 as pb;
use pb::usage_service_server::UsageService;
use prost_types::Timestamp;
use sharing::access_service_client::AccessServiceClient;
use tonic::Request;

use super::invocation_to_proto;
use crate::sessions::rules::{self, Period, Range, Status as RunStatus, SummaryRow, UsageFilter};
use crate::sessions::storage::Storage;

#[derive(Clone)]
pub struct Usage {
    pub storage: Storage,
    pub sharing: ServiceChannel,
}

/// The filters every usage request has.
struct Asked<'a> {
    scope: i32,
    agent_id: &'a str,
    start_time: Option<&'a Timestamp>,
    end_time: Option<&'a Timestamp>,
    page_size: i32,
    page_token: &'a str,
}

/// The filters of a request, which both usage requests name alike.
macro_rules! asked {
    ($message:expr) => {
        Asked {
            scope: $message.scope,
            agent_id: &$message.agent_id,
            start_time: $message.start_time.as_ref(),
            end_time: $message.end_time.as_ref(),
            page_size: $message.page_size,
            page_token: &$message.page_token,
        }
    };
}

/// What a usage request reads, decided before any record is.
struct Reading {
    filter: UsageFilter,
    range: Range,
    page: Page,
}

fn caller(principal: &Principal) -> Result<&str> {
    if principal.kind == PrincipalKind::Grant {
        return Err(Error::PermissionDenied(
            "usage is read by signed-in users only, not with a share token".into(),
        ));
    }
    principal.require_user()
}

impl Usage {
    /// The range, whose records the caller reads (its own bills, or one
    /// agent's runs when it owns the agent), and the page of `listing`,
    /// bound to every filter: `shape` holds the request's own.
    async fn reading(
        &self,
        principal: &Principal,
        asked: Asked<'_>,
        listing: &str,
        shape: String,
    ) -> Result<Reading> {
        let range = rules::range(
            asked.start_time,
            asked.end_time,
            self.storage.clock.now_micros(),
        )?;
        let user_id = caller(principal)?;
        let agent_id = ids::parse_optional("agent_id", asked.agent_id)?;
        let (key, filter) = match pb::UsageScope::try_from(asked.scope) {
            Ok(pb::UsageScope::BilledToCaller) => (
                format!("billed:{agent_id}"),
                UsageFilter::BilledTo {
                    user_id: user_id.to_string(),
                    agent_id,
                },
            ),
            Ok(pb::UsageScope::Agent) => {
                if agent_id.is_empty() {
                    return Err(Error::invalid(
                        "agent_id",
                        "required for scope AGENT: name the agent whose usage to read",
                    ));
                }
                self.check_owner(principal, user_id, &agent_id).await?;
                (format!("agent:{agent_id}"), UsageFilter::Agent { agent_id })
            }
            Ok(pb::UsageScope::Unspecified) | Err(_) => {
                return Err(Error::invalid(
                    "scope",
                    "required: BILLED_TO_CALLER for your own usage, or AGENT for an agent you own",
                ));
            }
        };
        let listing = format!(
            "{listing}:{key}:{}:{}:{shape}",
            time_key(asked.start_time),
            time_key(asked.end_time),
        );
        let page = Page::keyed(asked.page_size, asked.page_token, listing, 2)?;
        Ok(Reading {
            filter,
            range,
            page,
        })
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
    ) -> Result<()> {
        if self.storage.owned_runs(agent_id, user_id).await? {
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
            .map_err(|status| match Error::from(status) {
                Error::NotFound(_) => Error::not_found("agent"),
                Error::Unavailable(_) => {
                    Error::Unavailable("access checks are unavailable; retry shortly".into())
                }
                refusal => {
                    tracing::error!(%refusal, "sharing refused an owner check");
                    Error::internal("sharing refused an owner check")
                }
            })?
            .into_inner();
        rules::owner_reads_usage(decision.allowed, decision.reason)
    }
}

fn status_filter(wire: i32) -> Result<Option<RunStatus>> {
    match pb::InvocationStatus::try_from(wire) {
        Ok(pb::InvocationStatus::Unspecified) => Ok(None),
        Ok(_) => Ok(RunStatus::of_wire(wire)),
        Err(_) => Err(Error::invalid(
            "status",
            "must be RUNNING, SUCCEEDED, FAILED, CANCELLED or UNSPECIFIED for all",
        )),
    }
}

fn time_key(time: Option<&Timestamp>) -> String {
    time.map_or_else(String::new, |t| format!("{}.{}", t.seconds, t.nanos))
}

fn summary_row_to_proto(row: SummaryRow, by_agent: bool) -> pb::UsageSummaryRow {
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
        total_duration: Some(rules::duration(row.totals.duration_micros)),
        input_tokens: row.totals.input_tokens,
        output_tokens: row.totals.output_tokens,
    }
}

/// The UsageService handlers, one per unary call.
impl Usage {
    async fn list_invocations(
        &self,
        caller: Principal,
        message: pb::ListInvocationsRequest,
    ) -> agentshare_kit::Result<pb::ListInvocationsResponse> {
        let status = status_filter(message.status)?;
        let asked = asked!(message);
        let reading = self
            .reading(&caller, asked, "invocations", message.status.to_string())
            .await?;
        let records = self
            .storage
            .invocations(&reading.filter, reading.range, status, &reading.page)
            .await?;
        let (records, next_page_token) = reading.page.split_keyed(records, |record| {
            vec![record.facts.start_time.to_string(), record.id.clone()]
        });
        Ok(pb::ListInvocationsResponse {
            invocations: records.into_iter().map(invocation_to_proto).collect(),
            next_page_token,
        })
    }

    async fn summarize_usage(
        &self,
        caller: Principal,
        message: pb::SummarizeUsageRequest,
    ) -> agentshare_kit::Result<pb::SummarizeUsageResponse> {
        let by_agent = match pb::UsageGroupBy::try_from(message.group_by) {
            Ok(pb::UsageGroupBy::Agent) => true,
            Ok(pb::UsageGroupBy::BilledAccount) => false,
            Ok(pb::UsageGroupBy::Unspecified) | Err(_) => {
                return Err(Error::invalid(
                    "group_by",
                    "required: AGENT or BILLED_ACCOUNT",
                ));
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
                ));
            }
        };
        let asked = asked!(message);
        let shape = format!("{}:{}", message.group_by, message.period);
        let Reading {
            filter,
            range,
            page,
        } = self.reading(&caller, asked, "summary", shape).await?;
        let after = match page.after_parts() {
            Some([start, group]) => Some((rules::cursor_number(start)?, group.clone())),
            _ => None,
        };
        let days = self.storage.daily_totals(&filter, range, by_agent).await?;
        let rows = rules::summarize(days, period, range);
        let (rows, more) = rules::summary_page(rows, after.as_ref(), page.size);
        let next_page_token = match rows.last() {
            Some(last) if more => page.token_after(&[
                last.period_start.unwrap_or(0).to_string(),
                last.group.clone(),
            ]),
            _ => String::new(),
        };
        Ok(pb::SummarizeUsageResponse {
            rows: rows
                .into_iter()
                .map(|row| summary_row_to_proto(row, by_agent))
                .collect(),
            next_page_token,
        })
    }
}

#[tonic::async_trait]
impl UsageService for Usage {
    agentshare_kit::handlers! {
        list_invocations(pb::ListInvocationsRequest) -> pb::ListInvocationsResponse;
        summarize_usage(pb::SummarizeUsageRequest) -> pb::SummarizeUsageResponse;
    }
}
