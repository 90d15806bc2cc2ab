//! The builder's rules for an agent design (`000_*`).

use agentshare_kit::Error;
use agentshare_kit::error::FieldViolation;
use agentshare_kit::identity::Principal;
use agentshare_proto::registry::v1 as pb;

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_INSTRUCTIONS_BYTES: usize = 100 * 1024;

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
}

/// A validated draft.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    pub name: String,
    pub description: String,
    pub instructions: String,
}

/// Checks every field and reports all violations at once.
pub fn validate_draft(draft: Option<pb::AgentDraft>) -> Result<Draft, Error> {
    let draft = draft.unwrap_or_default();
    // The rest of the definition is stored by the registry issue; refusing it
    // beats dropping what the builder sent.
    if draft.model.is_some()
        || !draft.tools.is_empty()
        || !draft.files.is_empty()
        || !draft.automations.is_empty()
    {
        return Err(Error::Unimplemented(
            "model, tools, files and automations in a draft arrive with issue #5".into(),
        ));
    }
    let mut violations = Vec::new();
    let name = draft.name.trim().to_string();
    if name.is_empty() {
        violations.push(FieldViolation::new("draft.name", "must not be empty"));
    } else if name.chars().count() > MAX_NAME_CHARS {
        violations.push(FieldViolation::new(
            "draft.name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if draft.instructions.len() > MAX_INSTRUCTIONS_BYTES {
        violations.push(FieldViolation::new(
            "draft.instructions",
            "must be at most 100 KiB",
        ));
    }
    if !violations.is_empty() {
        return Err(Error::InvalidArgument(violations));
    }
    Ok(Draft {
        name,
        description: draft.description,
        instructions: draft.instructions,
    })
}

/// Who may build in the org of the request: every role but viewer.
pub fn require_builder(principal: &Principal) -> Result<(), Error> {
    match principal.org_role.as_deref() {
        Some("owner" | "admin" | "member") => Ok(()),
        Some("viewer") => Err(Error::PermissionDenied(
            "viewers cannot build agents; ask an org admin for the member role".into(),
        )),
        _ => Err(Error::PermissionDenied(
            "you are not a member of this org".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_needs_a_name_and_bounded_instructions() {
        let err = validate_draft(Some(pb::AgentDraft {
            name: " ".into(),
            description: String::new(),
            instructions: "x".repeat(MAX_INSTRUCTIONS_BYTES + 1),
            ..Default::default()
        }))
        .expect_err("invalid");
        let Error::InvalidArgument(violations) = err else {
            panic!("expected INVALID_ARGUMENT");
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["draft.name", "draft.instructions"]);
    }
}
