//! Where an agent is in its life (draft, active, deleted) and how each of
//! its versions came to be.

use agentshare_proto::registry::v1 as pb;
use agentshare_proto::sharing::v1 as sharing;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentState {
    Draft,
    Active,
    Deleted,
}

agentshare_kit::enum_names!(AgentState {
    Draft => "draft",
    Active => "active",
    Deleted => "deleted",
});

impl AgentState {
    pub fn to_proto(self) -> pb::AgentState {
        match self {
            Self::Draft => pb::AgentState::Draft,
            Self::Active => pb::AgentState::Active,
            Self::Deleted => pb::AgentState::Deleted,
        }
    }

    pub(super) fn to_access(self) -> sharing::AgentAccessState {
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

agentshare_kit::enum_names!(Origin {
    Initial => "initial",
    Deploy => "deploy",
    Rollback => "rollback",
});

impl Origin {
    pub fn to_proto(self) -> pb::VersionOrigin {
        match self {
            Self::Initial => pb::VersionOrigin::Initial,
            Self::Deploy => pb::VersionOrigin::Deploy,
            Self::Rollback => pb::VersionOrigin::Rollback,
        }
    }
}

/// A stored state; one this version does not know is a corrupt row.
impl TryFrom<String> for AgentState {
    type Error = String;

    fn try_from(state: String) -> Result<Self, String> {
        Self::parse(&state).ok_or_else(|| format!("unknown agent state {state:?}"))
    }
}

/// A stored origin; one this version does not know is a corrupt row.
impl TryFrom<String> for Origin {
    type Error = String;

    fn try_from(origin: String) -> Result<Self, String> {
        Self::parse(&origin).ok_or_else(|| format!("unknown version origin {origin:?}"))
    }
}
