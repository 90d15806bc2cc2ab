//! The reference model: what DESIGN.md says each answer is, written from
//! the design rather than from the code, for the worlds the property test
//! builds. Users are indexes: 0 is the org owner, 1..=3 are members,
//! [`OUTSIDER`] belongs to no org.

use std::collections::HashMap;

use agentshare_proto::sharing::v1::{Action, VersionSource};
use tonic::Code;

/// The user who belongs to no org; they reach agents only through grants.
pub const OUTSIDER: usize = 4;

/// Who presents a share token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    Anonymous,
    User(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Invoke,
    Delegate,
}

/// The model's view of one agent.
pub struct ModelAgent {
    pub id: String,
    pub owner: usize,
    pub shared: bool,
    /// Workspace indexes: the home one first.
    pub listed: Vec<usize>,
    /// Whether it has a SHARED integration run on its builder's connection.
    pub shared_integration: bool,
    /// The latest deployed version.
    pub latest: i64,
}

pub struct ModelGrant {
    pub id: String,
    pub token: String,
    pub agent: usize,
    pub kind: Kind,
    pub holder: Holder,
    pub pinned: Option<i64>,
    /// Clock micros at which it stops working.
    pub expires_at: Option<i64>,
    pub revoked: bool,
}

pub struct ModelProject {
    pub id: String,
    /// Workspace indexes: the home one first.
    pub listed: Vec<usize>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub forbid_delegate_grants: bool,
    pub forbid_external_grants: bool,
    pub forbid_shared_integrations: bool,
}

/// What a run (ResolveInvocation) answers: the version it uses, or the
/// refusal's code and a word its message carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Run {
    Plan { version: i64, source: VersionSource },
    Refused(Code, &'static str),
}

pub struct World {
    pub enabled: bool,
    /// Per org member (0 = org owner): org viewer?
    pub viewer: Vec<bool>,
    /// Per org member: membership of each workspace.
    pub member: Vec<Vec<bool>>,
    /// (user, agent) → the version the user pinned.
    pub pins: HashMap<(usize, usize), i64>,
    pub policy: Policy,
    /// The suite clock, in micros, as of the last operation.
    pub now: i64,
}

impl World {
    /// The workspace a user acts in without a header: the default one if
    /// they are in it, else the oldest of theirs (DESIGN.md's scope rule).
    pub fn active(&self, user: usize) -> Option<usize> {
        if !self.enabled {
            return Some(0);
        }
        self.member[user].iter().position(|m| *m)
    }

    /// `None`: the user cannot see the agent (NOT_FOUND); else allowed?
    /// Viewers look and never run, build or change anything, even their own.
    pub fn check(&self, user: usize, agent: &ModelAgent, action: Action) -> Option<bool> {
        let viewer = self.viewer[user];
        if agent.owner == user {
            return Some(match action {
                Action::View => true,
                _ => !viewer,
            });
        }
        let reaches = agent.shared
            && self
                .active(user)
                .is_some_and(|active| agent.listed.contains(&active));
        if !reaches {
            return None;
        }
        Some(match action {
            Action::View => true,
            Action::Run => !viewer,
            _ => false,
        })
    }

    /// What an owner-only change by the agent's owner answers: a viewer
    /// owns but no longer changes anything.
    pub fn owner_change(&self, agent: &ModelAgent) -> Result<(), Code> {
        if self.viewer[agent.owner] {
            Err(Code::PermissionDenied)
        } else {
            Ok(())
        }
    }

    /// A project is seen by members of any workspace it lists (with
    /// workspaces off, by everyone in the org).
    pub fn sees_project(&self, user: usize, project: &ModelProject) -> bool {
        !self.enabled || project.listed.iter().any(|w| self.member[user][*w])
    }

    /// Whether ListProjects in the user's active workspace lists it.
    pub fn lists_project(&self, user: usize, project: &ModelProject) -> bool {
        self.active(user)
            .is_some_and(|active| project.listed.contains(&active))
    }

    /// A member's run of `agent` (index `a`), in `project` if any: the
    /// project must be visible, the agent runnable, and the org's policy
    /// must allow lending the builder's connection; the version is the
    /// user's pin or the latest.
    pub fn member_run(
        &self,
        user: usize,
        a: usize,
        agent: &ModelAgent,
        project: Option<&ModelProject>,
    ) -> Run {
        if project.is_some_and(|p| !self.sees_project(user, p)) {
            return Run::Refused(Code::NotFound, "project");
        }
        match self.check(user, agent, Action::Run) {
            None => return Run::Refused(Code::NotFound, "agent"),
            Some(false) => return Run::Refused(Code::PermissionDenied, "viewer"),
            Some(true) => {}
        }
        let owner = agent.owner == user;
        if self.policy.forbid_shared_integrations && agent.shared_integration && !owner {
            return Run::Refused(
                Code::PermissionDenied,
                "org policy forbid_shared_integrations",
            );
        }
        match self.pins.get(&(user, a)) {
            Some(version) => Run::Plan {
                version: *version,
                source: VersionSource::UserPin,
            },
            None => Run::Plan {
                version: agent.latest,
                source: VersionSource::Latest,
            },
        }
    }

    fn holder_is_member(holder: Holder) -> bool {
        matches!(holder, Holder::User(u) if u != OUTSIDER)
    }

    fn grant_live(&self, grant: &ModelGrant) -> bool {
        !grant.revoked && grant.expires_at.is_none_or(|at| at > self.now)
    }

    /// The holder's run under their grant: the token must be live (else
    /// UNAUTHENTICATED), INVOKE needs a signed-in user, the org's policy
    /// must allow the grant and the connections it lends; the version is
    /// the grant's pin, else (INVOKE) the holder's own pin, else the latest.
    /// An INVOKE holder binds every integration themselves, so one they
    /// have not bound is SETUP_REQUIRED.
    pub fn grant_run(&self, grant: &ModelGrant, agent: &ModelAgent) -> Run {
        if grant.revoked {
            return Run::Refused(Code::Unauthenticated, "token revoked");
        }
        if !self.grant_live(grant) {
            return Run::Refused(Code::Unauthenticated, "token expired");
        }
        if grant.kind == Kind::Invoke && grant.holder == Holder::Anonymous {
            return Run::Refused(Code::Unauthenticated, "signed-in user");
        }
        if self.policy.forbid_delegate_grants && grant.kind == Kind::Delegate {
            return Run::Refused(Code::PermissionDenied, "org policy forbid_delegate_grants");
        }
        if self.policy.forbid_external_grants && !Self::holder_is_member(grant.holder) {
            return Run::Refused(Code::PermissionDenied, "org policy forbid_external_grants");
        }
        let user_pin = match (grant.kind, grant.holder) {
            (Kind::Invoke, Holder::User(u)) => self.pins.get(&(u, grant.agent)).copied(),
            _ => None,
        };
        let (version, source) = match (grant.pinned, user_pin) {
            (Some(pin), _) => (pin, VersionSource::GrantPin),
            (None, Some(pin)) => (pin, VersionSource::UserPin),
            (None, None) => (agent.latest, VersionSource::Latest),
        };
        if agent.shared_integration {
            match grant.kind {
                Kind::Invoke => return Run::Refused(Code::FailedPrecondition, "setup required"),
                Kind::Delegate if self.policy.forbid_shared_integrations => {
                    return Run::Refused(
                        Code::PermissionDenied,
                        "org policy forbid_shared_integrations",
                    );
                }
                Kind::Delegate => {}
            }
        }
        Run::Plan { version, source }
    }

    /// What Check answers an org owner asking whether the grant's holder
    /// may RUN: the grant's own access decision (live, and INVOKE with a
    /// user). The org's policy is a rule on calls, not on access, so it is
    /// not part of the answer.
    pub fn grant_check(&self, grant: &ModelGrant) -> bool {
        self.grant_live(grant)
            && (grant.kind == Kind::Delegate || grant.holder != Holder::Anonymous)
    }

    /// What PinVersion answers: the user must be able to RUN the agent, and
    /// the version must be deployed.
    pub fn pin(&self, user: usize, agent: &ModelAgent, version: i64) -> Result<(), Code> {
        match self.check(user, agent, Action::Run) {
            None => Err(Code::NotFound),
            Some(false) => Err(Code::PermissionDenied),
            Some(true) if version > agent.latest => Err(Code::NotFound),
            Some(true) => Ok(()),
        }
    }

    /// What UnpinVersion answers: anyone who sees the agent may unpin.
    pub fn unpin(&self, user: usize, agent: &ModelAgent) -> Result<(), Code> {
        match self.check(user, agent, Action::View) {
            None => Err(Code::NotFound),
            Some(_) => Ok(()),
        }
    }

    /// What CreateGrant answers the agent's owner: owner only, a version the
    /// agent has, and a kind the org allows.
    pub fn create_grant(
        &self,
        agent: &ModelAgent,
        kind: Kind,
        pinned: Option<i64>,
    ) -> Result<(), Code> {
        self.owner_change(agent)?;
        if pinned.is_some_and(|v| v > agent.latest) {
            return Err(Code::NotFound);
        }
        if kind == Kind::Delegate && self.policy.forbid_delegate_grants {
            return Err(Code::PermissionDenied);
        }
        Ok(())
    }
}
