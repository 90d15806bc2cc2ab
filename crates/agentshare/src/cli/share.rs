//! `agentshare share|unshare|access|my-agents`: who reaches an agent, and
//! why (SharingService's share calls, AccessService's Check, Explain and My
//! Agents).
//!
//! `unshare --dry-run` asks PreviewUnshareAgent and says, in words, who
//! would lose the agent, which automations would stop and which grants
//! survive, changing nothing. `my-agents` shows each agent's setup status
//! as the product does, a dot: green when ready, orange when setup is
//! required; the colour only on a terminal, the word always.

use std::io::IsTerminal as _;

use agentshare_proto::sharing::v1 as pb;

use super::client::{Api, Target, every_page};
use super::failure::Outcome;
use super::output::{Output, View, word, word_or_blank};

/// `agentshare share AGENT`
#[derive(Debug, clap::Args)]
pub struct ShareArgs {
    /// The agent (its id, or its exact name); it must be deployed, and yours.
    #[arg(value_name = "AGENT")]
    agent_id: String,
}

/// `agentshare unshare AGENT [--dry-run]`
#[derive(Debug, clap::Args)]
pub struct UnshareArgs {
    /// The agent (its id, or its exact name); it must be yours.
    #[arg(value_name = "AGENT")]
    agent_id: String,
    /// Show who would lose access, which automations would stop and which
    /// grants survive, and change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `agentshare my-agents`
#[derive(Debug, clap::Args)]
pub struct MyAgentsArgs {
    /// Only the agents of this relation to you.
    #[arg(long, value_enum)]
    relation: Option<Relation>,
}

/// `agentshare access ...`
#[derive(Debug, clap::Subcommand)]
pub enum AccessCommand {
    /// Whether someone (you by default) may do an action on an agent.
    Check {
        #[command(flatten)]
        question: Question,
        /// The action.
        #[arg(long, value_parser = action_parser())]
        action: pb::Action,
    },
    /// Every path that gives someone (you by default) access to an agent,
    /// or every reason why not, and the facts behind the decision.
    Explain {
        #[command(flatten)]
        question: Question,
        /// The action to decide.
        #[arg(long, value_parser = action_parser(), default_value = "view")]
        action: pb::Action,
    },
}

/// Whose access to which agent.
#[derive(Debug, clap::Args)]
pub struct Question {
    /// The agent: its id, or its exact name.
    #[arg(value_name = "AGENT")]
    agent_id: String,
    /// Ask about this user instead of yourself (the agent's owner, and org
    /// owners and admins, may ask about anyone).
    #[arg(long, value_name = "USER_ID")]
    user: Option<String>,
    /// Ask about a holder of this grant (with --user, as the signed-in user
    /// who presents an INVOKE grant).
    #[arg(long, value_name = "GRANT_ID")]
    grant: Option<String>,
    /// The workspace the user acts in (default: yours for you, their
    /// default workspace for someone else).
    #[arg(long, value_name = "WORKSPACE_ID")]
    user_workspace: Option<String>,
}

impl Question {
    fn principal(&self) -> Option<pb::PrincipalRef> {
        if self.user.is_none() && self.grant.is_none() && self.user_workspace.is_none() {
            return None;
        }
        Some(pb::PrincipalRef {
            user_id: self.user.clone().unwrap_or_default(),
            grant_id: self.grant.clone().unwrap_or_default(),
            workspace_id: self.user_workspace.clone().unwrap_or_default(),
        })
    }

    /// Who is asked about, for sentences.
    fn who(&self) -> String {
        match (&self.user, &self.grant) {
            (None, None) => "you".into(),
            (Some(user), None) => format!("user {user}"),
            (None, Some(grant)) => format!("a holder of grant {grant}"),
            (Some(user), Some(grant)) => format!("user {user} holding grant {grant}"),
        }
    }
}

/// The actions as the command line names them: the contract's names
/// without `ACTION_`, in kebab case.
const ACTIONS: [&str; 8] = [
    "view",
    "run",
    "configure-own",
    "edit",
    "deploy",
    "share",
    "delete",
    "manage-grants",
];

/// Reads `--action` by the contract's own names, so the command line can
/// offer no action the contract lacks.
fn action_parser() -> impl clap::builder::TypedValueParser<Value = pb::Action> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(ACTIONS).map(|word| action(&word))
}

/// The contract's action a word of [`ACTIONS`] names.
fn action(word: &str) -> pb::Action {
    let name = format!("ACTION_{}", word.to_ascii_uppercase().replace('-', "_"));
    pb::Action::from_str_name(&name).unwrap_or_default()
}

/// How an agent comes to be in My Agents, as the command line names it.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Relation {
    /// Agents you own.
    Owned,
    /// Agents shared with you through a workspace.
    Shared,
    /// The org default agent.
    OrgDefault,
}

impl From<Relation> for pb::AgentRelation {
    fn from(relation: Relation) -> Self {
        match relation {
            Relation::Owned => Self::Owned,
            Relation::Shared => Self::SharedWithYou,
            Relation::OrgDefault => Self::OrgDefault,
        }
    }
}

/// `agentshare share AGENT`
pub async fn share(mut args: ShareArgs, target: &Target, out: Output) -> Outcome {
    let api = target.api()?;
    args.agent_id = api.agent_id(&args.agent_id).await?;
    let shared = api
        .sharing()
        .share_agent(pb::ShareAgentRequest {
            agent_id: args.agent_id,
        })
        .await?
        .into_inner();
    let sharing = shared.sharing.clone().unwrap_or_default();
    out.show(&shared, sharing_record(&sharing))?;
    out.say(&format!(
        "Members of {} now see and run it.",
        workspace_names(&sharing)
    ))
}

/// `agentshare unshare AGENT [--dry-run]`
pub async fn unshare(mut args: UnshareArgs, target: &Target, out: Output) -> Outcome {
    let api = target.api()?;
    args.agent_id = api.agent_id(&args.agent_id).await?;
    if args.dry_run {
        return preview_unshare(&api, args.agent_id, out).await;
    }
    let unshared = api
        .sharing()
        .unshare_agent(pb::UnshareAgentRequest {
            agent_id: args.agent_id.clone(),
        })
        .await?
        .into_inner();
    let sharing = unshared.sharing.clone().unwrap_or_default();
    out.show(&unshared, sharing_record(&sharing))?;
    out.say(&format!(
        "Only you see it now. Its workspace list is kept: `agentshare share {}` \
         restores the same reach.",
        args.agent_id
    ))
}

async fn preview_unshare(api: &Api, agent_id: String, out: Output) -> Outcome {
    let preview = api
        .sharing()
        .preview_unshare_agent(pb::PreviewUnshareAgentRequest {
            agent_id: agent_id.clone(),
        })
        .await?
        .into_inner();
    if !out.for_people() {
        let view =
            View::table(&preview.users_losing_access).id("USER", |user| user.user_id.clone());
        return out.show(&preview, view);
    }
    out.write(&impact_words(&agent_id, &preview))
}

/// What an unshare would do, in words.
fn impact_words(agent_id: &str, preview: &pb::PreviewUnshareAgentResponse) -> String {
    if !preview.shared {
        return format!(
            "Agent {agent_id} is not shared: unsharing it would change nothing.\n\
             Nothing was changed (dry run).\n"
        );
    }
    let mut text = format!("Unsharing agent {agent_id} now would:\n");
    let users = &preview.users_losing_access;
    let total = preview.users_losing_access_total;
    section(
        &mut text,
        total,
        "- take it away from nobody: only you can reach it.\n",
        &format!("- take it away from {}:\n", count(total, "user", "users")),
        users.iter().map(|user| {
            let via = if user.workspace_ids.is_empty() {
                String::new()
            } else {
                format!(" (through workspace {})", user.workspace_ids.join(", "))
            };
            format!("    {}{via}\n", person(user))
        }),
    );
    let total = preview.automations_disabled_total;
    section(
        &mut text,
        total,
        "- stop no automations.\n",
        &format!(
            "- stop {} (their subscriptions are disabled):\n",
            count(total, "automation", "automations")
        ),
        preview.automations_disabled.iter().map(|automation| {
            let owner = users
                .iter()
                .find(|user| user.user_id == automation.user_id)
                .map(person)
                .unwrap_or_else(|| automation.user_id.clone());
            format!(
                "    {} of {owner} (subscription {})\n",
                automation.automation_key, automation.subscription_id
            )
        }),
    );
    let total = preview.surviving_grants_total;
    section(
        &mut text,
        total,
        "- revoke no grant: grants survive an unshare, and it has no active one.\n",
        &format!(
            "- keep {} working: grants survive an unshare (revoke them with \
             `agentshare grant revoke GRANT`):\n",
            count(total, "active grant", "active grants")
        ),
        preview.surviving_grants.iter().map(|grant| {
            format!(
                "    {} {:?} ({}, token {}…)\n",
                grant.id,
                grant.label,
                kind(grant.kind),
                grant.token_prefix
            )
        }),
    );
    text.push_str(
        "Sessions stay readable by their users, and connections are kept.\n\
         Nothing was changed (dry run).\n",
    );
    text
}

fn person(user: &pb::UserImpact) -> String {
    match (user.email.is_empty(), user.display_name.is_empty()) {
        (true, _) => user.user_id.clone(),
        (false, true) => format!("{} ({})", user.email, user.user_id),
        (false, false) => format!("{} <{}> ({})", user.display_name, user.email, user.user_id),
    }
}

fn count(total: i32, one: &str, many: &str) -> String {
    if total == 1 {
        format!("1 {one}")
    } else {
        format!("{total} {many}")
    }
}

/// One part of a dry run: `none` when it touches nothing, else `heading`,
/// a line per listed entry and how many more there are: the lists hold at
/// most 1,000 entries, the totals are exact.
fn section(
    text: &mut String,
    total: i32,
    none: &str,
    heading: &str,
    listed: impl ExactSizeIterator<Item = String>,
) {
    if total == 0 {
        text.push_str(none);
        return;
    }
    text.push_str(heading);
    let shown = i32::try_from(listed.len()).unwrap_or(i32::MAX);
    text.extend(listed);
    if total > shown {
        text.push_str(&format!("    … and {} more\n", total - shown));
    }
}

fn sharing_record(sharing: &pb::AgentSharingState) -> View {
    View::record(
        sharing.agent_id.clone(),
        vec![
            ("agent", sharing.agent_id.clone()),
            ("shared", yes_no(sharing.shared)),
            ("home workspace", sharing.home_workspace_id.clone()),
            ("workspaces", workspace_names(sharing)),
        ],
    )
}

fn workspace_names(sharing: &pb::AgentSharingState) -> String {
    if sharing.workspaces.is_empty() {
        return format!("workspace {}", sharing.home_workspace_id);
    }
    sharing
        .workspaces
        .iter()
        .map(|ws| format!("{} ({})", ws.name, ws.id))
        .collect::<Vec<_>>()
        .join(", ")
}

impl AccessCommand {
    /// The question every access command asks.
    fn question(&mut self) -> &mut Question {
        match self {
            Self::Check { question, .. } | Self::Explain { question, .. } => question,
        }
    }
}

/// `agentshare access ...`
pub async fn access(mut command: AccessCommand, target: &Target, out: Output) -> Outcome {
    let api = target.api()?;
    let question = command.question();
    question.agent_id = api.agent_id(&question.agent_id).await?;
    let mut access = api.access();
    match command {
        AccessCommand::Check { question, action } => {
            let call = access.check(pb::CheckRequest {
                principal: question.principal(),
                agent_id: question.agent_id.clone(),
                action: action as i32,
            });
            out.answer(call.await?, |checked| {
                View::record(
                    question.agent_id.clone(),
                    vec![
                        ("agent", question.agent_id.clone()),
                        ("who", question.who()),
                        ("action", action_name(action as i32)),
                        ("allowed", yes_no(checked.allowed)),
                        ("because", reason_for(checked.reason, &question.who())),
                    ],
                )
            })
        }
        AccessCommand::Explain { question, action } => {
            let call = access.explain(pb::ExplainRequest {
                principal: question.principal(),
                agent_id: question.agent_id.clone(),
                action: action as i32,
            });
            let explained = call.await?.into_inner();
            if !out.for_people() {
                let view = View::record(question.agent_id.clone(), Vec::new());
                return out.show(&explained, view);
            }
            out.write(&explanation(&question, action as i32, &explained))
        }
    }
}

/// An explanation for people: the decision, each path, each denial reason,
/// then the facts read in order.
fn explanation(question: &Question, action: i32, explained: &pb::ExplainResponse) -> String {
    let who = question.who();
    let because = |reason: i32| reason_for(reason, &who);
    let action = action_name(action);
    let mut text = if explained.allowed {
        format!(
            "Allowed: {who} may {action} agent {}, because {}.\n",
            question.agent_id,
            because(explained.reason)
        )
    } else {
        format!(
            "Denied: {who} may not {action} agent {}, because {}.\n",
            question.agent_id,
            because(explained.reason)
        )
    };
    if explained.paths.is_empty() {
        text.push_str("\nNo path reaches the agent.\n");
    } else {
        text.push_str("\nAccess paths:\n");
        for path in &explained.paths {
            let actions: Vec<String> = path.actions.iter().map(|a| action_name(*a)).collect();
            text.push_str(&format!(
                "  - {}: allows {}\n",
                path_words(path),
                actions.join(", ")
            ));
        }
    }
    if !explained.denial_reasons.is_empty() {
        text.push_str("\nWhy not:\n");
        for reason in &explained.denial_reasons {
            text.push_str(&format!("  - {}\n", because(*reason)));
        }
    }
    if !explained.facts.is_empty() {
        text.push_str("\nFacts read, in order (+ supports access, - does not):\n");
        for fact in &explained.facts {
            let about = if fact.subject_id.is_empty() {
                String::new()
            } else {
                format!(" ({})", fact.subject_id)
            };
            let sign = if fact.supports_access { '+' } else { '-' };
            text.push_str(&format!("  {sign} {} = {}{about}\n", fact.code, fact.value));
        }
    }
    text
}

fn path_words(path: &pb::AccessPath) -> String {
    match pb::AccessPathKind::try_from(path.kind) {
        Ok(pb::AccessPathKind::Owner) => "owner of the agent".into(),
        Ok(pb::AccessPathKind::WorkspaceShare) => format!(
            "member of workspace {}, where it is shared",
            path.workspace_id
        ),
        Ok(pb::AccessPathKind::OrgDefaultAgent) => "the org default agent".into(),
        Ok(pb::AccessPathKind::OrgAdmin) => "org owner or admin".into(),
        Ok(pb::AccessPathKind::Grant) => {
            format!("grant {} ({})", path.grant_id, kind(path.grant_kind))
        }
        Ok(pb::AccessPathKind::Unspecified) | Err(_) => format!("path {}", path.kind),
    }
}

/// Why an action is allowed or denied, in words about `who`: "you own
/// it", "they own it".
fn reason_for(reason: i32, who: &str) -> String {
    let words = reason_words(reason);
    if who == "you" {
        words.replace("they ", "you ").replace("them", "you")
    } else {
        words.to_string()
    }
}

/// Why an action is allowed or denied, in words about "them".
fn reason_words(reason: i32) -> &'static str {
    use pb::DecisionReason as R;
    match R::try_from(reason) {
        Ok(R::Owner) => "they own it",
        Ok(R::WorkspaceMember) => "they are a member of a workspace it is shared with",
        Ok(R::OrgDefaultAgent) => "it is the org default agent, which every member sees",
        Ok(R::OrgAdmin) => "org owners and admins edit and deploy the org default agent",
        Ok(R::Grant) => "an active grant allows it",
        Ok(R::NotFound) => "the agent does not exist or is not visible to them",
        Ok(R::AgentDeleted) => "the agent is deleted",
        Ok(R::AgentDraft) => "the agent is a draft, which only its owner sees",
        Ok(R::NotShared) => "the agent is not shared (never shared, or unshared)",
        Ok(R::NotWorkspaceMember) => {
            "they are in none of the agent's workspaces (or not in the active one)"
        }
        Ok(R::NoActiveWorkspace) => "workspaces are on and they have no active workspace",
        Ok(R::ViewerRole) => "viewers read but never run, build or change anything",
        Ok(R::NotOrgMember) => "they are not a member of the agent's org and hold no grant",
        Ok(R::OwnerOnly) => "only the owner may do it",
        Ok(R::DefaultAgentProtected) => {
            "the org default agent cannot be shared, unshared, deleted or given grants"
        }
        Ok(R::ManagedAgent) => "a managed agent's workspaces cannot change",
        Ok(R::GrantOtherAgent) => "the grant is for another agent",
        Ok(R::GrantActionNotAllowed) => {
            "a grant allows running (and, for INVOKE, configuring one's own setup) only"
        }
        Ok(R::GrantExpired) => "the grant expired",
        Ok(R::GrantRevoked) => "the grant was revoked",
        Ok(R::GrantEnded) => "the grant ended when the agent was deleted",
        Ok(R::GrantNeedsUser) => "an INVOKE grant needs a signed-in user as well as the token",
        Ok(R::Unspecified) | Err(_) => "of a reason this client does not know",
    }
}

fn action_name(action: i32) -> String {
    word(action, pb::Action::as_str_name, "ACTION_")
}

/// A grant kind for people: `invoke` or `delegate`.
pub(super) fn kind(value: i32) -> String {
    word(value, pb::GrantKind::as_str_name, "GRANT_KIND_")
}

pub(super) fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.into()
}

/// `agentshare my-agents`
pub async fn my_agents(args: MyAgentsArgs, target: &Target, out: Output) -> Outcome {
    let api = target.api()?;
    let mut access = api.access();
    let relation = args
        .relation
        .map(pb::AgentRelation::from)
        .unwrap_or_default() as i32;
    let request = pb::ListMyAgentsRequest {
        relation,
        ..Default::default()
    };
    let listed = every_page(request, async |r| access.list_my_agents(r).await).await?;
    let colour = Colour::for_stdout();
    let view = View::table(&listed.agents)
        .id("ID", |agent| agent.agent_id.clone())
        .column("NAME", |agent| agent.name.clone())
        .column("RELATION", |agent| {
            word_or_blank(
                agent.relation,
                pb::AgentRelation::as_str_name,
                "AGENT_RELATION_",
            )
        })
        .column("OWNER", |agent| {
            if agent.owner_display_name.is_empty() {
                agent.owner_user_id.clone()
            } else {
                agent.owner_display_name.clone()
            }
        })
        .column("STATE", |agent| {
            word_or_blank(
                agent.state,
                pb::AgentAccessState::as_str_name,
                "AGENT_ACCESS_STATE_",
            )
        })
        .column("VERSION", |agent| agent.latest_version.to_string())
        .column("PINNED", |agent| {
            // "2", or "2, retires on …" once the owner deprecated it.
            match agent.pin_summary.strip_prefix("pinned to v") {
                Some(summary) => summary.to_string(),
                None => agent
                    .pinned_version
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
            }
        })
        .column("CAN RUN", |agent| yes_no(agent.can_run))
        .column("SETUP", |agent| setup_dot(agent.setup_status, colour));
    out.show(&listed, view)
}

/// Whether to colour what goes to stdout: a terminal, and no `NO_COLOR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Colour {
    On,
    Off,
}

impl Colour {
    pub(super) fn for_stdout() -> Self {
        let asked_not = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        if std::io::stdout().is_terminal() && !asked_not {
            Self::On
        } else {
            Self::Off
        }
    }
}

/// The setup status dot: green `●` and "ready", or orange `●` and "setup
/// required"; coloured only when `colour` is on, the word always.
pub(super) fn setup_dot(status: i32, colour: Colour) -> String {
    const GREEN: &str = "\x1b[32m";
    const ORANGE: &str = "\x1b[33m";
    const RESET: &str = "\x1b[0m";
    let (ansi, word) = match pb::SetupStatus::try_from(status) {
        Ok(pb::SetupStatus::Ready) => (GREEN, "ready"),
        Ok(pb::SetupStatus::SetupRequired) => (ORANGE, "setup required"),
        Ok(pb::SetupStatus::Unspecified) | Err(_) => return "unknown".into(),
    };
    match colour {
        Colour::On => format!("{ansi}●{RESET} {word}"),
        Colour::Off => format!("● {word}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_of_the_contract_has_its_word() {
        let named: Vec<pb::Action> = ACTIONS.iter().map(|word| action(word)).collect();
        let contract: Vec<pb::Action> = (1..).map_while(|n| pb::Action::try_from(n).ok()).collect();
        assert_eq!(named, contract);
    }

    #[test]
    fn the_setup_dot_always_carries_its_word_and_is_coloured_only_when_asked() {
        let ready = pb::SetupStatus::Ready as i32;
        let required = pb::SetupStatus::SetupRequired as i32;
        assert_eq!(setup_dot(ready, Colour::Off), "● ready");
        assert_eq!(setup_dot(required, Colour::Off), "● setup required");
        assert_eq!(setup_dot(ready, Colour::On), "\x1b[32m●\x1b[0m ready");
        assert!(setup_dot(required, Colour::On).ends_with("setup required"));
    }

    #[test]
    fn reasons_speak_to_you_or_about_them() {
        let owner = pb::DecisionReason::Owner as i32;
        assert_eq!(reason_for(owner, "you"), "you own it");
        assert_eq!(reason_for(owner, "user u-1"), "they own it");
        let hidden = pb::DecisionReason::NotFound as i32;
        assert!(reason_for(hidden, "you").ends_with("not visible to you"));
    }

    #[test]
    fn a_dry_run_names_who_loses_what_and_counts_what_it_does_not_list() {
        let preview = pb::PreviewUnshareAgentResponse {
            shared: true,
            users_losing_access: vec![pb::UserImpact {
                user_id: "u-bob".into(),
                email: "bob@example.com".into(),
                display_name: String::new(),
                workspace_ids: vec!["ws-1".into()],
            }],
            users_losing_access_total: 3,
            automations_disabled: vec![pb::AutomationImpact {
                user_id: "u-bob".into(),
                automation_key: "daily".into(),
                subscription_id: "sub-1".into(),
            }],
            automations_disabled_total: 1,
            surviving_grants: Vec::new(),
            surviving_grants_total: 0,
        };
        let text = impact_words("a-1", &preview);
        assert!(text.contains("3 users"), "{text}");
        assert!(
            text.contains("bob@example.com (u-bob) (through workspace ws-1)"),
            "{text}"
        );
        assert!(text.contains("… and 2 more"), "{text}");
        assert!(
            text.contains("daily of bob@example.com (u-bob) (subscription sub-1)"),
            "{text}"
        );
        assert!(text.contains("revoke no grant"), "{text}");
        assert!(text.contains("Nothing was changed"), "{text}");
    }
}
