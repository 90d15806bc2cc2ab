//! The builder's rules for an agent design: what a draft may hold, who may
//! see and change an agent (DESIGN.md, "Access model (sharing)"), when a
//! draft may become a version, and the access facts sharing keeps about it
//! ("Who owns what").

use std::collections::HashSet;

use agentshare_kit::Error;
use agentshare_kit::error::FieldViolation;
use agentshare_kit::identity::Principal;
use agentshare_proto::registry::v1 as pb;
use agentshare_proto::sharing::v1 as sharing;

mod templates;
mod versions;

pub use templates::{agent_name_from_template, template_description, template_name};
pub use versions::{
    DiffSide, DraftWrite, Head, NextVersion, aborted_draft, check_expected_revision, check_publish,
    check_rollback, deploy_content, next_version, require_draft_revision, side_shown, writes_raced,
};

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_INSTRUCTIONS_BYTES: usize = 100 * 1024;
pub const MAX_TOOLS: usize = 128;
pub const MAX_KEY_CHARS: usize = 64;
pub const MAX_LABEL_CHARS: usize = 200;
pub const MAX_FILE_NAME_CHARS: usize = 255;
pub const MAX_TASK_BYTES: usize = 100 * 1024;
pub const MAX_NOTES_CHARS: usize = 2000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentState {
    Draft,
    Active,
    Deleted,
}

impl AgentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Active => "active",
            Self::Deleted => "deleted",
        }
    }

    pub fn parse(state: &str) -> Option<Self> {
        [Self::Draft, Self::Active, Self::Deleted]
            .into_iter()
            .find(|s| s.as_str() == state)
    }

    pub fn to_proto(self) -> pb::AgentState {
        match self {
            Self::Draft => pb::AgentState::Draft,
            Self::Active => pb::AgentState::Active,
            Self::Deleted => pb::AgentState::Deleted,
        }
    }

    fn to_access(self) -> sharing::AgentAccessState {
        match self {
            Self::Draft => sharing::AgentAccessState::Draft,
            Self::Active => sharing::AgentAccessState::Active,
            Self::Deleted => sharing::AgentAccessState::Deleted,
        }
    }
}

/// How a version came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Initial,
    Deploy,
    Rollback,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Deploy => "deploy",
            Self::Rollback => "rollback",
        }
    }

    pub fn parse(origin: &str) -> Option<Self> {
        [Self::Initial, Self::Deploy, Self::Rollback]
            .into_iter()
            .find(|o| o.as_str() == origin)
    }

    pub fn to_proto(self) -> pb::VersionOrigin {
        match self {
            Self::Initial => pb::VersionOrigin::Initial,
            Self::Deploy => pb::VersionOrigin::Deploy,
            Self::Rollback => pb::VersionOrigin::Rollback,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrgRole {
    Owner,
    Admin,
    Member,
    Viewer,
}

impl OrgRole {
    fn parse(role: &str) -> Option<Self> {
        match role {
            "owner" => Some(Self::Owner),
            "admin" => Some(Self::Admin),
            "member" => Some(Self::Member),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }

    fn runs_the_org(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }
}

/// The signed-in user of a request, in the org of that request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Forwarded when registry asks sharing about this caller.
    pub principal: Principal,
    pub user_id: String,
    pub org_id: String,
    pub role: OrgRole,
    pub workspace_id: Option<String>,
}

impl Caller {
    /// The caller of `principal`. The gateway has checked membership, so a
    /// Principal without a role is not a member of the org it names.
    pub fn of(principal: &Principal) -> Result<Self, Error> {
        let user_id = principal.require_user()?.to_string();
        let org_id = principal.require_org()?.to_string();
        let role = principal
            .org_role
            .as_deref()
            .and_then(OrgRole::parse)
            .ok_or_else(|| Error::not_found(format!("org {org_id}")))?;
        Ok(Self {
            principal: principal.clone(),
            user_id,
            org_id,
            role,
            workspace_id: principal.workspace_id.clone(),
        })
    }

    /// Who may build in the org: every role but viewer.
    pub fn require_builder(&self) -> Result<(), Error> {
        if self.role == OrgRole::Viewer {
            return Err(Error::PermissionDenied(
                "viewers cannot build agents; ask an org admin for the member role".into(),
            ));
        }
        Ok(())
    }

    /// The workspace a new agent lives in.
    pub fn home_workspace(&self) -> Result<&str, Error> {
        self.workspace_id.as_deref().ok_or_else(|| {
            Error::PermissionDenied(
                "you have no workspace in this org; ask an admin to add you to one".into(),
            )
        })
    }

    /// Managed agents are an org decision.
    pub fn require_may_manage(&self) -> Result<(), Error> {
        if !self.role.runs_the_org() {
            return Err(Error::PermissionDenied(
                "only org owners and admins may create managed agents".into(),
            ));
        }
        Ok(())
    }
}

/// What a caller may do with an agent they can see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Edit, deploy, roll back and publish; sees the full design.
    Edit,
    /// Sees the holder view of the latest deployed version.
    Read,
}

/// How much of an agent a caller sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// The full draft; the caller may change it.
    Editor,
    /// The holder view of the latest version.
    Holder,
    /// A deleted agent, shown to its owner in full but read-only.
    History,
}

impl From<Access> for View {
    fn from(access: Access) -> Self {
        match access {
            Access::Edit => Self::Editor,
            Access::Read => Self::Holder,
        }
    }
}

/// What `access` shows of a design: all of it to an editor, the holder view
/// to anyone else.
pub fn shown(access: Access, content: &pb::AgentDraft) -> pb::AgentDraft {
    match access {
        Access::Edit => content.clone(),
        Access::Read => holder_view(content),
    }
}

/// The parts of an agent that decide who sees it.
pub struct Standing<'a> {
    pub owner_user_id: &'a str,
    pub is_default: bool,
    pub state: AgentState,
}

/// Who may see a live agent, and how. `None` means the caller must get
/// NOT_FOUND, exactly as for an id that never existed. This is the one place
/// that decides it: holders of shared agents and grants join here.
pub fn access(agent: &Standing<'_>, caller: &Caller) -> Option<Access> {
    // Viewers read agents but never change them, even ones they built
    // before they became viewers.
    let edit_unless_viewer = if caller.role == OrgRole::Viewer {
        Access::Read
    } else {
        Access::Edit
    };
    match agent.state {
        AgentState::Deleted => None,
        _ if agent.is_default => Some(if caller.role.runs_the_org() {
            Access::Edit
        } else {
            Access::Read
        }),
        _ if agent.owner_user_id == caller.user_id => Some(edit_unless_viewer),
        _ => None,
    }
}

/// A deleted agent stays readable by its owner, for history.
pub fn sees_deleted(agent: &Standing<'_>, caller: &Caller) -> bool {
    agent.state == AgentState::Deleted && agent.owner_user_id == caller.user_id
}

/// Which agents ListAgents may return to `caller`: the SQL form of
/// [`access`], which must agree with it.
pub struct Listing {
    pub owner_user_id: String,
    pub include_default: bool,
}

pub fn listing(caller: &Caller, owned_by_caller: bool) -> Listing {
    Listing {
        owner_user_id: caller.user_id.clone(),
        include_default: !owned_by_caller,
    }
}

/// The state a listing asks for; `None` lists every live state. Deleted
/// agents are in no list: their owner reads each one by id.
pub fn listed_state(state: pb::AgentState) -> Result<Option<AgentState>, Error> {
    match state {
        pb::AgentState::Unspecified => Ok(None),
        pb::AgentState::Draft => Ok(Some(AgentState::Draft)),
        pb::AgentState::Active => Ok(Some(AgentState::Active)),
        pb::AgentState::Deleted => Err(Error::invalid(
            "state",
            "deleted agents are in no list; read one with GetAgent",
        )),
    }
}

/// NOT_FOUND for an invisible agent, PERMISSION_DENIED for a visible one the
/// caller may not change.
pub fn require_edit(access: Option<Access>, agent_id: &str) -> Result<(), Error> {
    match access {
        Some(Access::Edit) => Ok(()),
        Some(Access::Read) => Err(Error::PermissionDenied(
            "only the agent's owner may change it (org owners and admins for the org default agent)"
                .into(),
        )),
        None => Err(not_found(agent_id)),
    }
}

pub fn not_found(agent_id: &str) -> Error {
    Error::not_found(format!("agent {agent_id}"))
}

/// Delete belongs to the owner alone, and never to the default or a managed
/// agent.
pub fn require_may_delete(
    agent: &Standing<'_>,
    is_managed: bool,
    access: Option<Access>,
    caller: &Caller,
    agent_id: &str,
) -> Result<(), Error> {
    let Some(access) = access else {
        return Err(not_found(agent_id));
    };
    if agent.is_default {
        return Err(Error::PermissionDenied(
            "the org default agent cannot be deleted; edit and redeploy it instead".into(),
        ));
    }
    if is_managed {
        return Err(Error::PermissionDenied(
            "managed agents cannot be deleted".into(),
        ));
    }
    if access != Access::Edit || agent.owner_user_id != caller.user_id {
        return Err(Error::PermissionDenied(
            "only the agent's owner may delete it".into(),
        ));
    }
    Ok(())
}

/// A draft edit: the fields named in `paths` are taken from `update`.
pub fn apply_mask(
    draft: &mut pb::AgentDraft,
    update: &pb::AgentDraft,
    paths: &[String],
) -> Result<(), Error> {
    if paths.is_empty() {
        return Err(Error::invalid(
            "update_mask",
            "name the fields to change, for example `name` or `tools`; `*` replaces the whole draft",
        ));
    }
    let mut violations = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        match path.as_str() {
            "*" => *draft = update.clone(),
            "name" => draft.name.clone_from(&update.name),
            "description" => draft.description.clone_from(&update.description),
            "instructions" => draft.instructions.clone_from(&update.instructions),
            "model" => draft.model.clone_from(&update.model),
            "model.provider" | "model.model" | "model.parameters" => {
                let from = update.model.clone().unwrap_or_default();
                let model = draft.model.get_or_insert_with(Default::default);
                match path.as_str() {
                    "model.provider" => model.provider = from.provider,
                    "model.model" => model.model = from.model,
                    _ => model.parameters = from.parameters,
                }
            }
            "tools" => draft.tools.clone_from(&update.tools),
            "files" => draft.files.clone_from(&update.files),
            "automations" => draft.automations.clone_from(&update.automations),
            _ => violations.push(FieldViolation::new(
                format!("update_mask.paths[{i}]"),
                "is not a field of the draft: use name, description, instructions, model, \
                 model.provider, model.model, model.parameters, tools, files, automations or *",
            )),
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(violations))
    }
}

/// Checks every rule of a draft and reports all violations at once, each
/// naming its field under `prefix` (`draft`, or `name` for a bare name).
/// Returns the draft as stored: the name trimmed.
pub fn validate_draft(prefix: &str, mut draft: pb::AgentDraft) -> Result<pb::AgentDraft, Error> {
    let mut v = Vec::new();
    let field = |name: &str| format!("{prefix}.{name}");
    draft.name = draft.name.trim().to_string();
    if let Err(why) = check_name(&draft.name) {
        v.push(FieldViolation::new(field("name"), why));
    }
    if draft.instructions.len() > MAX_INSTRUCTIONS_BYTES {
        v.push(FieldViolation::new(
            field("instructions"),
            "must be at most 100 KiB",
        ));
    }
    check_tools(&draft.tools, &field("tools"), &mut v);
    check_files(&draft.files, &field("files"), &mut v);
    check_automations(&draft.automations, &field("automations"), &mut v);
    if v.is_empty() {
        Ok(draft)
    } else {
        Err(Error::InvalidArgument(v))
    }
}

/// A display name: not blank, at most 200 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("must be at most {MAX_NAME_CHARS} characters"));
    }
    Ok(())
}

/// Integration and automation keys: `a-z`, `0-9`, `_` and `-`, starting with
/// a letter, 1 to 64 characters. Stable keys outlive versions, so they stay
/// plain.
fn check_key(key: &str) -> Result<(), String> {
    let starts_with_letter = key.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let plain = key
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !starts_with_letter || !plain || key.len() > MAX_KEY_CHARS {
        return Err(format!(
            "must be 1 to {MAX_KEY_CHARS} characters of a-z, 0-9, _ and -, starting with a letter"
        ));
    }
    Ok(())
}

fn check_label(label: &str, field: String, v: &mut Vec<FieldViolation>) {
    if label.chars().count() > MAX_LABEL_CHARS {
        v.push(FieldViolation::new(
            field,
            format!("must be at most {MAX_LABEL_CHARS} characters"),
        ));
    }
}

fn check_tools(tools: &[pb::Tool], field: &str, v: &mut Vec<FieldViolation>) {
    if tools.len() > MAX_TOOLS {
        v.push(FieldViolation::new(
            field,
            format!("at most {MAX_TOOLS} tools; remove some"),
        ));
    }
    let mut keys = HashSet::new();
    for (i, tool) in tools.iter().enumerate() {
        let at = |name: &str| format!("{field}[{i}].{name}");
        if let Err(why) = check_key(&tool.integration_key) {
            v.push(FieldViolation::new(at("integration_key"), why));
        } else if !keys.insert(tool.integration_key.as_str()) {
            v.push(FieldViolation::new(
                at("integration_key"),
                format!(
                    "duplicate integration key {:?}; each tool needs its own",
                    tool.integration_key
                ),
            ));
        }
        if tool.provider.trim().is_empty() {
            v.push(FieldViolation::new(at("provider"), "must not be empty"));
        }
        match pb::IntegrationScope::try_from(tool.scope) {
            Ok(pb::IntegrationScope::Shared) => {}
            Ok(pb::IntegrationScope::UserConfigured) => {
                if !tool.connection_id.is_empty() {
                    v.push(FieldViolation::new(
                        at("connection_id"),
                        "must be empty for a USER_CONFIGURED tool: each user binds their own",
                    ));
                }
            }
            _ => v.push(FieldViolation::new(
                at("scope"),
                "must be INTEGRATION_SCOPE_SHARED or INTEGRATION_SCOPE_USER_CONFIGURED",
            )),
        }
        check_label(&tool.display_name, at("display_name"), v);
    }
}

fn check_files(files: &[pb::LinkedFile], field: &str, v: &mut Vec<FieldViolation>) {
    let mut names = HashSet::new();
    for (i, file) in files.iter().enumerate() {
        let at = |name: &str| format!("{field}[{i}].{name}");
        if file.name.trim().is_empty() || file.name.chars().count() > MAX_FILE_NAME_CHARS {
            v.push(FieldViolation::new(
                at("name"),
                format!("must be 1 to {MAX_FILE_NAME_CHARS} characters"),
            ));
        } else if !names.insert(file.name.as_str()) {
            v.push(FieldViolation::new(
                at("name"),
                format!("duplicate file name {:?}", file.name),
            ));
        }
        let hash_ok = file.content_hash.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty()
                && alg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && !hex.is_empty()
                && hex
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        });
        if !hash_ok {
            v.push(FieldViolation::new(
                at("content_hash"),
                "must be `<algorithm>:<lowercase hex>`, for example `sha256:9f86d0…`",
            ));
        }
        if file.size_bytes < 0 {
            v.push(FieldViolation::new(
                at("size_bytes"),
                "must not be negative",
            ));
        }
        if file.uri.trim().is_empty() {
            v.push(FieldViolation::new(at("uri"), "must not be empty"));
        }
    }
}

fn check_automations(automations: &[pb::Automation], field: &str, v: &mut Vec<FieldViolation>) {
    let mut keys = HashSet::new();
    for (i, automation) in automations.iter().enumerate() {
        let at = |name: &str| format!("{field}[{i}].{name}");
        if let Err(why) = check_key(&automation.key) {
            v.push(FieldViolation::new(at("key"), why));
        } else if !keys.insert(automation.key.as_str()) {
            v.push(FieldViolation::new(
                at("key"),
                format!(
                    "duplicate automation key {:?}; each automation needs its own",
                    automation.key
                ),
            ));
        }
        check_label(&automation.display_name, at("display_name"), v);
        if let Err((name, why)) = check_schedule(automation.schedule.as_ref()) {
            v.push(FieldViolation::new(at(&format!("schedule{name}")), why));
        }
        if automation.time_zone.parse::<chrono_tz::Tz>().is_err() {
            v.push(FieldViolation::new(
                at("time_zone"),
                "is not an IANA time zone; use a name such as `Europe/Berlin` or `UTC`",
            ));
        }
        if automation.task.trim().is_empty() {
            v.push(FieldViolation::new(at("task"), "must not be empty"));
        } else if automation.task.len() > MAX_TASK_BYTES {
            v.push(FieldViolation::new(at("task"), "must be at most 100 KiB"));
        }
        for (j, channel) in automation.suggested_channels.iter().enumerate() {
            let known = pb::NotificationChannel::try_from(*channel)
                .is_ok_and(|c| c != pb::NotificationChannel::Unspecified);
            if !known {
                v.push(FieldViolation::new(
                    at(&format!("suggested_channels[{j}]")),
                    "must be WEB, EMAIL or PUSH",
                ));
            }
        }
        if pb::CatchUpPolicy::try_from(automation.catch_up_policy).is_err() {
            v.push(FieldViolation::new(
                at("catch_up_policy"),
                "unknown catch-up policy",
            ));
        }
    }
}

/// A schedule that can fire; the error names the sub-field (`.cron.expression`).
fn check_schedule(schedule: Option<&pb::Schedule>) -> Result<(), (&'static str, String)> {
    use pb::schedule::Kind;
    let time = |time: Option<&pb::TimeOfDay>, name: &'static str| match time {
        Some(t) if (0..24).contains(&t.hours) && (0..60).contains(&t.minutes) => Ok(()),
        _ => Err((name, "needs hours 0 to 23 and minutes 0 to 59".to_string())),
    };
    match schedule.and_then(|s| s.kind.as_ref()) {
        None => Err((
            "",
            "set exactly one of cron, hourly, daily or weekly".to_string(),
        )),
        Some(Kind::Cron(cron)) => parse_cron(&cron.expression).map(drop).map_err(|why| {
            (
                ".cron.expression",
                format!(
                    "does not parse as a five-field cron expression ({why}); for example `0 8 * * 1-5`"
                ),
            )
        }),
        Some(Kind::Hourly(hourly)) if (0..60).contains(&hourly.minute) => Ok(()),
        Some(Kind::Hourly(_)) => Err((".hourly.minute", "must be 0 to 59".to_string())),
        Some(Kind::Daily(daily)) => time(daily.time_of_day.as_ref(), ".daily.time_of_day"),
        Some(Kind::Weekly(weekly)) => {
            let day = pb::DayOfWeek::try_from(weekly.day_of_week)
                .is_ok_and(|d| d != pb::DayOfWeek::Unspecified);
            if !day {
                return Err((".weekly.day_of_week", "must be a day of the week".to_string()));
            }
            time(weekly.time_of_day.as_ref(), ".weekly.time_of_day")
        }
    }
}

/// Classic cron: minute, hour, day of month, month, day of week.
pub fn parse_cron(expression: &str) -> Result<croner::Cron, String> {
    use croner::parser::{CronParser, Seconds, Year};
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|e| e.to_string())
}

/// The SHARED tools that name no builder connection: a version may not have
/// them.
pub fn tools_without_connection(draft: &pb::AgentDraft) -> Vec<String> {
    draft
        .tools
        .iter()
        .filter(|t| t.scope == pb::IntegrationScope::Shared as i32 && t.connection_id.is_empty())
        .map(|t| t.integration_key.clone())
        .collect()
}

/// What holders see of a version: never the instructions, the model, the
/// files or the builder's connections.
pub fn holder_view(content: &pb::AgentDraft) -> pb::AgentDraft {
    pb::AgentDraft {
        name: content.name.clone(),
        description: content.description.clone(),
        instructions: String::new(),
        model: None,
        tools: content
            .tools
            .iter()
            .map(|t| pb::Tool {
                connection_id: String::new(),
                ..t.clone()
            })
            .collect(),
        files: Vec::new(),
        automations: content.automations.clone(),
    }
}

/// A copy for others to start from: the builder's connections stay behind.
pub fn without_connections(content: &pb::AgentDraft) -> pb::AgentDraft {
    let mut copy = content.clone();
    for tool in &mut copy.tools {
        tool.connection_id.clear();
    }
    copy
}

/// The org default agent as it is first created: a general assistant with no
/// tools, which org owners and admins then shape.
pub fn default_agent_design() -> pb::AgentDraft {
    pb::AgentDraft {
        name: "Assistant".into(),
        description: "The org's default agent, available to every member.".into(),
        instructions: "You are this organisation's general assistant. Answer clearly and say when you do not know.".into(),
        ..Default::default()
    }
}

/// The state of an agent from which its access facts are built.
pub struct FactsSource<'a> {
    pub agent_id: &'a str,
    pub org_id: &'a str,
    pub owner_user_id: &'a str,
    pub home_workspace_id: &'a str,
    pub state: AgentState,
    pub is_default: bool,
    pub is_managed: bool,
    pub revision: i64,
    pub draft: &'a pb::AgentDraft,
    /// Every deployed version, oldest first.
    pub versions: &'a [(i64, pb::AgentDraft)],
}

fn integrations(draft: &pb::AgentDraft) -> Vec<sharing::SyncedIntegration> {
    draft
        .tools
        .iter()
        .map(|t| sharing::SyncedIntegration {
            key: t.integration_key.clone(),
            provider: t.provider.clone(),
            // The two enums share their numbers.
            scope: t.scope,
            builder_connection_set: !t.connection_id.is_empty(),
            builder_connection_id: t.connection_id.clone(),
        })
        .collect()
}

/// Everything sharing keeps about an agent. Every version is sent, so a
/// sync after missed ones repairs them all.
pub fn facts(source: &FactsSource<'_>) -> sharing::AgentAccessFacts {
    let latest = source.versions.last();
    let shown = latest.map_or(source.draft, |(_, content)| content);
    sharing::AgentAccessFacts {
        agent_id: source.agent_id.into(),
        org_id: source.org_id.into(),
        owner_user_id: source.owner_user_id.into(),
        home_workspace_id: source.home_workspace_id.into(),
        state: source.state.to_access() as i32,
        is_default: source.is_default,
        is_managed: source.is_managed,
        latest_version: latest.map_or(0, |(number, _)| *number),
        revision: source.revision,
        name: shown.name.clone(),
        description: shown.description.clone(),
        versions: source
            .versions
            .iter()
            .map(|(number, content)| sharing::VersionIntegrations {
                version: *number,
                integrations: integrations(content),
            })
            .collect(),
        draft_integrations: integrations(source.draft),
    }
}

/// The facts that end access, sent before a delete changes anything here:
/// the next revision, DELETED.
pub fn deleted_facts(mut facts: sharing::AgentAccessFacts) -> sharing::AgentAccessFacts {
    facts.state = sharing::AgentAccessState::Deleted as i32;
    facts.revision += 1;
    facts
}

/// Whether a draft edit changes what sharing knows: the draft's tools, and
/// while the agent is a DRAFT its name and description.
pub fn edit_changes_facts(
    state: AgentState,
    before: &pb::AgentDraft,
    after: &pb::AgentDraft,
) -> bool {
    integrations(before) != integrations(after)
        || (state == AgentState::Draft
            && (before.name != after.name || before.description != after.description))
}

/// The integrations of a version, for `agent.deployed`.
pub fn integrations_json(content: &pb::AgentDraft) -> serde_json::Value {
    content
        .tools
        .iter()
        .map(|t| {
            serde_json::json!({
                "key": t.integration_key,
                "provider": t.provider,
                "scope": pb::IntegrationScope::try_from(t.scope)
                    .map_or("INTEGRATION_SCOPE_UNSPECIFIED", |s| s.as_str_name()),
                "builder_connection_set": !t.connection_id.is_empty(),
            })
        })
        .collect()
}

/// The notes stored with a version.
pub fn check_notes(notes: &str) -> Result<(), Error> {
    if notes.chars().count() > MAX_NOTES_CHARS {
        return Err(Error::invalid(
            "notes",
            format!("must be at most {MAX_NOTES_CHARS} characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(error: Error) -> Vec<String> {
        let Error::InvalidArgument(violations) = error else {
            panic!("expected INVALID_ARGUMENT, got {error:?}");
        };
        violations.into_iter().map(|v| v.field).collect()
    }

    fn tool(key: &str, scope: pb::IntegrationScope, connection: &str) -> pb::Tool {
        pb::Tool {
            integration_key: key.into(),
            provider: "brave".into(),
            scope: scope as i32,
            connection_id: connection.into(),
            display_name: String::new(),
        }
    }

    fn automation(key: &str, schedule: pb::schedule::Kind, zone: &str) -> pb::Automation {
        pb::Automation {
            key: key.into(),
            schedule: Some(pb::Schedule {
                kind: Some(schedule),
            }),
            time_zone: zone.into(),
            task: "Summarise".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_draft_needs_a_name_and_bounded_instructions() {
        let error = validate_draft(
            "draft",
            pb::AgentDraft {
                name: " ".into(),
                instructions: "x".repeat(MAX_INSTRUCTIONS_BYTES + 1),
                ..Default::default()
            },
        )
        .expect_err("invalid");
        assert_eq!(fields(error), ["draft.name", "draft.instructions"]);
    }

    #[test]
    fn keys_are_unique_and_schedules_parse_in_known_zones() {
        use pb::schedule::Kind;
        let cron = |e: &str| {
            Kind::Cron(pb::CronSchedule {
                expression: e.into(),
            })
        };
        let error = validate_draft(
            "draft",
            pb::AgentDraft {
                name: "A".into(),
                tools: vec![
                    tool("crm", pb::IntegrationScope::Shared, ""),
                    tool("crm", pb::IntegrationScope::UserConfigured, ""),
                ],
                automations: vec![
                    automation("daily", cron("0 8 * * 1-5"), "Europe/Berlin"),
                    automation("daily", cron("0 8 * *"), "Mars/Olympus"),
                ],
                ..Default::default()
            },
        )
        .expect_err("invalid");
        assert_eq!(
            fields(error),
            [
                "draft.tools[1].integration_key",
                "draft.automations[1].key",
                "draft.automations[1].schedule.cron.expression",
                "draft.automations[1].time_zone",
            ]
        );
        assert!(parse_cron("*/5 * * * *").is_ok());
        assert!(
            parse_cron("0 0 8 * * *").is_err(),
            "six fields are not classic cron"
        );
        assert!(parse_cron("61 * * * *").is_err());
    }

    #[test]
    fn at_most_128_tools() {
        let tools = (0..=MAX_TOOLS)
            .map(|i| tool(&format!("t{i}"), pb::IntegrationScope::UserConfigured, ""))
            .collect();
        let error = validate_draft(
            "draft",
            pb::AgentDraft {
                name: "A".into(),
                tools,
                ..Default::default()
            },
        )
        .expect_err("too many");
        assert_eq!(fields(error), ["draft.tools"]);
    }

    fn caller(user: &str, role: OrgRole) -> Caller {
        Caller {
            principal: Principal::user(user),
            user_id: user.into(),
            org_id: "o".into(),
            role,
            workspace_id: None,
        }
    }

    #[test]
    fn owners_edit_members_read_the_default_and_strangers_see_nothing() {
        let own = Standing {
            owner_user_id: "alice",
            is_default: false,
            state: AgentState::Draft,
        };
        let default = Standing {
            owner_user_id: "",
            is_default: true,
            state: AgentState::Active,
        };
        let alice = caller("alice", OrgRole::Member);
        let bob = caller("bob", OrgRole::Member);
        let admin = caller("carol", OrgRole::Admin);
        let viewer = caller("alice", OrgRole::Viewer);
        assert_eq!(access(&own, &alice), Some(Access::Edit));
        assert_eq!(access(&own, &bob), None);
        assert_eq!(access(&own, &admin), None, "admins do not see drafts");
        assert_eq!(access(&own, &viewer), Some(Access::Read));
        assert_eq!(access(&default, &bob), Some(Access::Read));
        assert_eq!(access(&default, &admin), Some(Access::Edit));
        let deleted = Standing {
            state: AgentState::Deleted,
            ..own
        };
        assert_eq!(access(&deleted, &alice), None);
        assert!(sees_deleted(&deleted, &alice));
        assert!(!sees_deleted(&deleted, &bob));
    }

    #[test]
    fn lists_hold_live_agents_only() {
        assert_eq!(
            listed_state(pb::AgentState::Unspecified).expect("all"),
            None
        );
        assert_eq!(
            listed_state(pb::AgentState::Active).expect("active"),
            Some(AgentState::Active)
        );
        assert_eq!(
            listed_state(pb::AgentState::Draft).expect("draft"),
            Some(AgentState::Draft)
        );
        assert!(matches!(
            listed_state(pb::AgentState::Deleted),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn only_the_owner_deletes_and_never_the_default() {
        let default = Standing {
            owner_user_id: "",
            is_default: true,
            state: AgentState::Active,
        };
        let owner = caller("o", OrgRole::Owner);
        let error = require_may_delete(&default, false, access(&default, &owner), &owner, "a")
            .expect_err("denied");
        assert!(matches!(error, Error::PermissionDenied(_)));
    }

    #[test]
    fn facts_round_trip_through_the_event_json() {
        let draft = pb::AgentDraft {
            name: "A".into(),
            tools: vec![tool("search", pb::IntegrationScope::Shared, "c1")],
            ..Default::default()
        };
        let versions = vec![(1, draft.clone())];
        let facts = facts(&FactsSource {
            agent_id: "a",
            org_id: "o",
            owner_user_id: "u",
            home_workspace_id: "w",
            state: AgentState::Active,
            is_default: false,
            is_managed: true,
            revision: 7,
            draft: &draft,
            versions: &versions,
        });
        assert_eq!(facts.latest_version, 1);
        assert!(facts.versions[0].integrations[0].builder_connection_set);
        let json = agentshare_proto::access_facts::to_json(&facts);
        assert_eq!(json["state"], "active");
        assert_eq!(
            agentshare_proto::access_facts::from_json(&json).expect("decodes"),
            facts
        );
    }
}
