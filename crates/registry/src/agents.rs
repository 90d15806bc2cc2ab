//! What the registry does with agents, versions and templates: each
//! operation reads what the domain's rules need, lets them decide, stores
//! the result and syncs the agent's access facts to sharing (DESIGN.md,
//! "Who owns what"). The gRPC layer above only decodes and maps.

use agentshare_kit::Error;
use agentshare_kit::ids;
use agentshare_kit::page::Page;
use agentshare_proto::registry::v1 as pb;

use crate::diff;
use crate::domain::{self, Access, AgentState, Caller, DiffSide, Head, NextVersion, Origin, View};
use crate::holders::Holders;
use crate::storage::{
    AgentFilter, AgentRow, Announced, Deprecation, NewAgent, NewTemplate, NewVersion, Storage,
    TemplateRow, VersionRow,
};
use crate::sync::{AccessSync, NotSynced};

/// How often a deploy or rollback re-reads the agent when another one landed
/// between its read and its write, before it gives up with ABORTED.
const WRITE_ATTEMPTS: usize = 3;

/// The registry's application service.
#[derive(Clone)]
pub struct Agents {
    pub storage: Storage,
    pub access: AccessSync,
    pub holders: Holders,
}

/// A deploy's or rollback's answer.
pub struct Deployed {
    pub agent: AgentRow,
    pub version: VersionRow,
    /// `false` when the content equalled the latest version, which stands.
    pub created: bool,
}

/// A draft edit as the caller asked for it.
pub struct DraftEdit {
    pub agent_id: String,
    pub expected_draft_revision: i64,
    pub draft: pb::AgentDraft,
    /// The fields taken from `draft`.
    pub paths: Vec<String>,
}

/// A rollback as the caller asked for it.
pub struct Rollback {
    pub agent_id: String,
    pub version_number: i64,
    pub expected_latest_version: Option<i64>,
    pub notes: String,
}

/// A deprecation as the caller asked for it.
pub struct Retirement {
    pub agent_id: String,
    pub version_number: i64,
    /// UTC microseconds; `None` when the request left it unset.
    pub sunset_at: Option<i64>,
    pub note: String,
}

/// A template publication as the caller asked for it; empty name and
/// description take the version's.
pub struct Publication {
    pub agent_id: String,
    pub version_number: i64,
    pub name: String,
    pub description: String,
}

fn head(agent: &AgentRow) -> Head {
    Head {
        draft_revision: agent.draft_revision,
        latest_version: agent.latest_version,
    }
}

fn template_not_found(template_id: &str) -> Error {
    Error::not_found(format!("template {template_id}"))
}

impl Agents {
    /// The parsed id of the agent a request names, and the agent if it is
    /// in the caller's org.
    async fn named(
        &self,
        caller: &Caller,
        agent_id: &str,
    ) -> Result<(String, Option<AgentRow>), Error> {
        let agent_id = ids::parse("agent_id", agent_id)?;
        let agent = self.storage.agent(&caller.org_id, &agent_id).await?;
        Ok((agent_id, agent))
    }

    /// The agent and what the caller may do with it; NOT_FOUND when the
    /// caller may not see it.
    async fn visible(&self, caller: &Caller, agent_id: &str) -> Result<(AgentRow, Access), Error> {
        let (agent_id, agent) = self.named(caller, agent_id).await?;
        let agent = agent.ok_or_else(|| domain::not_found(&agent_id))?;
        let agent_id = &agent_id;
        let access = self
            .access_of(caller, Some(&agent))
            .await?
            .ok_or_else(|| domain::not_found(agent_id))?;
        Ok((agent, access))
    }

    async fn editable(&self, caller: &Caller, agent_id: &str) -> Result<AgentRow, Error> {
        let (agent_id, agent) = self.named(caller, agent_id).await?;
        let agent_id = &agent_id;
        let access = self.access_of(caller, agent.as_ref()).await?;
        domain::require_edit(access, agent_id)?;
        agent.ok_or_else(|| domain::not_found(agent_id))
    }

    /// What the caller may do with the agent: the owner's and the default
    /// agent's rules here, and for anyone else sharing's decision, so a
    /// holder of a shared agent reads its holder view.
    async fn access_of(
        &self,
        caller: &Caller,
        agent: Option<&AgentRow>,
    ) -> Result<Option<Access>, Error> {
        let Some(agent) = agent else {
            return Ok(None);
        };
        if let Some(access) = domain::access(&agent.standing(), caller) {
            return Ok(Some(access));
        }
        if agent.state != AgentState::Active || agent.is_default {
            return Ok(None);
        }
        Ok(self
            .holders
            .may_view(caller, &agent.id)
            .await?
            .then_some(Access::Read))
    }

    async fn version_of(&self, agent_id: &str, number: i64) -> Result<VersionRow, Error> {
        self.storage
            .version(agent_id, number)
            .await?
            .ok_or_else(|| Error::not_found(format!("version {number} of agent {agent_id}")))
    }

    async fn sync(
        &self,
        facts: agentshare_proto::sharing::v1::AgentAccessFacts,
    ) -> Result<(), Error> {
        self.access
            .sync(facts)
            .await
            .map_err(NotSynced::after_commit)
    }

    /// Repeats the agent's latest sync, for a call that changed nothing but
    /// may follow one whose sync failed.
    async fn resync(&self, agent_id: &str) -> Result<(), Error> {
        let (_, facts) = self.storage.current_facts(agent_id).await?;
        self.sync(facts).await
    }

    /// The org's default agent, created on first need exactly once: the
    /// storage's unique index lets one creator win, and the others read its
    /// agent.
    pub async fn ensure_default_agent(&self, org_id: &str) -> Result<AgentRow, Error> {
        if let Some(agent) = self.storage.default_agent(org_id).await? {
            return Ok(agent);
        }
        let design = domain::default_agent_design();
        match self.storage.create_default_agent(org_id, &design).await? {
            Some((agent, facts)) => {
                self.sync(facts).await?;
                Ok(agent)
            }
            None => self.storage.default_agent(org_id).await?.ok_or_else(|| {
                Error::internal(format!(
                    "org {org_id}: default agent not found after its unique index refused a second one"
                ))
            }),
        }
    }

    /// The design a run uses: the draft for version 0, else that version,
    /// of any live agent. Sharing's plan has already decided that the run
    /// may happen and which version it runs, so this reads by id alone.
    pub async fn run_content(
        &self,
        agent_id: &str,
        version_number: i64,
    ) -> Result<(pb::AgentDraft, AgentRow), Error> {
        let agent_id = &ids::parse("agent_id", agent_id)?;
        if version_number < 0 {
            return Err(Error::invalid(
                "version_number",
                "must be 0 (the draft) or a version",
            ));
        }
        let agent = self
            .storage
            .agent_for_run(agent_id)
            .await?
            .filter(|a| a.state != AgentState::Deleted)
            .ok_or_else(|| domain::not_found(agent_id))?;
        let content = if version_number == 0 {
            agent.draft.clone()
        } else {
            self.version_of(agent_id, version_number).await?.content
        };
        Ok((content, agent))
    }

    /// The caller's org's default agent, as the caller sees it.
    pub async fn default_agent(&self, caller: &Caller) -> Result<(AgentRow, View), Error> {
        let agent = self.ensure_default_agent(&caller.org_id).await?;
        let access = domain::access(&agent.standing(), caller).ok_or_else(|| {
            Error::internal(format!(
                "org {}: the default agent is not visible to a member",
                caller.org_id
            ))
        })?;
        Ok((agent, access.into()))
    }

    /// A new agent of the caller's, in their workspace; only org owners and
    /// admins make managed ones.
    pub async fn create(
        &self,
        caller: &Caller,
        draft: pb::AgentDraft,
        is_managed: bool,
    ) -> Result<AgentRow, Error> {
        caller.require_builder()?;
        caller.home_workspace()?;
        if is_managed {
            caller.require_may_manage()?;
        }
        let draft = domain::validate_draft("draft", draft)?;
        self.insert(caller, draft, is_managed).await
    }

    async fn insert(
        &self,
        caller: &Caller,
        draft: pb::AgentDraft,
        is_managed: bool,
    ) -> Result<AgentRow, Error> {
        let home = caller.home_workspace()?;
        let (agent, facts) = self
            .storage
            .create_agent(NewAgent {
                org_id: &caller.org_id,
                owner_user_id: &caller.user_id,
                home_workspace_id: home,
                draft: &draft,
                is_managed,
            })
            .await?;
        self.sync(facts).await?;
        Ok(agent)
    }

    /// The agent as the caller may see it; a deleted one only by its owner,
    /// for history.
    pub async fn get(&self, caller: &Caller, agent_id: &str) -> Result<(AgentRow, View), Error> {
        let (agent_id, agent) = self.named(caller, agent_id).await?;
        let agent = agent.ok_or_else(|| domain::not_found(&agent_id))?;
        let agent_id = &agent_id;
        let view = if domain::sees_deleted(&agent.standing(), caller) {
            View::History
        } else {
            self.access_of(caller, Some(&agent))
                .await?
                .ok_or_else(|| domain::not_found(agent_id))?
                .into()
        };
        Ok((agent, view))
    }

    /// One page of the agents the caller sees, and the next page's token.
    pub async fn list(
        &self,
        caller: &Caller,
        owned_by_caller: bool,
        state: Option<AgentState>,
        page: &Page,
    ) -> Result<(Vec<(AgentRow, View)>, String), Error> {
        let listing = domain::listing(caller, owned_by_caller);
        let rows = self
            .storage
            .agents(AgentFilter {
                org_id: &caller.org_id,
                listing: &listing,
                state,
                page,
            })
            .await?;
        let (rows, next_page_token) = page.split(rows, |agent| agent.id.clone());
        let agents = rows
            .into_iter()
            .filter_map(|agent| {
                let access = domain::access(&agent.standing(), caller)?;
                Some((agent, access.into()))
            })
            .collect();
        Ok((agents, next_page_token))
    }

    /// Applies an edit to the draft the caller read.
    pub async fn update_draft(&self, caller: &Caller, edit: DraftEdit) -> Result<AgentRow, Error> {
        domain::check_expected_revision(domain::DraftWrite::Edit, edit.expected_draft_revision)?;
        let agent = self.editable(caller, &edit.agent_id).await?;
        domain::require_draft_revision(head(&agent), edit.expected_draft_revision)?;
        let mut draft = agent.draft.clone();
        domain::apply_mask(&mut draft, &edit.draft, &edit.paths)?;
        let draft = domain::validate_draft("draft", draft)?;
        let changes_facts = domain::edit_changes_facts(agent.state, &agent.draft, &draft);
        let updated = self
            .storage
            .update_draft(
                &agent.id,
                edit.expected_draft_revision,
                &draft,
                changes_facts,
            )
            .await?;
        let Some((agent, facts)) = updated else {
            // Deleted or edited meanwhile: read again to say which.
            let now = self.editable(caller, &agent.id).await?;
            return Err(domain::aborted_draft(now.draft_revision));
        };
        if let Some(facts) = facts {
            self.sync(facts).await?;
        }
        Ok(agent)
    }

    /// Makes the reviewed draft the next version.
    pub async fn deploy(
        &self,
        caller: &Caller,
        agent_id: &str,
        expected_draft_revision: i64,
        notes: &str,
    ) -> Result<Deployed, Error> {
        domain::check_expected_revision(domain::DraftWrite::Deploy, expected_draft_revision)?;
        domain::check_notes(notes)?;
        for _ in 0..WRITE_ATTEMPTS {
            let agent = self.editable(caller, agent_id).await?;
            let content =
                domain::deploy_content(head(&agent), expected_draft_revision, &agent.draft)?;
            let new = NewVersion {
                agent_id: &agent.id,
                expected_latest: agent.latest_version,
                expected_draft_revision: Some(agent.draft_revision),
                content: &content,
                deployer_user_id: &caller.user_id,
                notes,
                origin: Origin::Deploy,
                rollback_of: 0,
                draft_revision: agent.draft_revision,
            };
            // `None`: a deploy of this very draft landed meanwhile; the next
            // read finds it and answers `created = false`.
            if let Some(deployed) = self.add_version(&agent, new).await? {
                return Ok(deployed);
            }
        }
        Err(domain::writes_raced())
    }

    /// Makes an earlier version's content the next version.
    pub async fn rollback(&self, caller: &Caller, rollback: Rollback) -> Result<Deployed, Error> {
        domain::check_notes(&rollback.notes)?;
        for _ in 0..WRITE_ATTEMPTS {
            let agent = self.editable(caller, &rollback.agent_id).await?;
            domain::check_rollback(head(&agent), rollback.expected_latest_version)?;
            let old = self.version_of(&agent.id, rollback.version_number).await?;
            let new = NewVersion {
                agent_id: &agent.id,
                expected_latest: agent.latest_version,
                expected_draft_revision: None,
                content: &old.content,
                deployer_user_id: &caller.user_id,
                notes: &rollback.notes,
                origin: Origin::Rollback,
                rollback_of: old.number,
                draft_revision: 0,
            };
            if let Some(deployed) = self.add_version(&agent, new).await? {
                return Ok(deployed);
            }
        }
        Err(domain::writes_raced())
    }

    /// Adds a version from `new.content` unless it equals the latest one,
    /// which is then returned with `created = false`. `None` when another
    /// version landed since `agent` was read.
    async fn add_version(
        &self,
        agent: &AgentRow,
        new: NewVersion<'_>,
    ) -> Result<Option<Deployed>, Error> {
        if domain::next_version(agent.latest.as_ref(), new.content)? == NextVersion::Unchanged {
            let latest = self.version_of(&agent.id, agent.latest_version).await?;
            self.resync(&agent.id).await?;
            return Ok(Some(Deployed {
                agent: agent.clone(),
                version: latest,
                created: false,
            }));
        }
        let Some((agent, version, facts)) = self.storage.add_version(new).await? else {
            return Ok(None);
        };
        self.sync(facts).await?;
        Ok(Some(Deployed {
            agent,
            version,
            created: true,
        }))
    }

    /// One page of the agent's versions, newest first, with what the caller
    /// may see of them.
    pub async fn versions(
        &self,
        caller: &Caller,
        agent_id: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<VersionRow>, Access, String), Error> {
        let (agent, access) = self.visible(caller, agent_id).await?;
        let page = Page::of(page_size, page_token, format!("versions:{}", agent.id))?;
        let rows = self.storage.versions(&agent.id, &page).await?;
        let (rows, next_page_token) = page.split(rows, |v| v.number.to_string());
        Ok((rows, access, next_page_token))
    }

    /// One version, with what the caller may see of it.
    pub async fn version(
        &self,
        caller: &Caller,
        agent_id: &str,
        number: i64,
    ) -> Result<(VersionRow, Access), Error> {
        let (agent, access) = self.visible(caller, agent_id).await?;
        Ok((self.version_of(&agent.id, number).await?, access))
    }

    /// The two sides of a diff as the caller may compare them, named by a
    /// request's `base` and `target` selectors.
    pub async fn diff_sides(
        &self,
        caller: &Caller,
        agent_id: &str,
        base: Option<&pb::version_selector::Selector>,
        target: Option<&pb::version_selector::Selector>,
    ) -> Result<(pb::AgentDraft, pb::AgentDraft), Error> {
        let (agent, access) = self.visible(caller, agent_id).await?;
        let base = self.diff_side(&agent, access, "base", base).await?;
        let target = self.diff_side(&agent, access, "target", target).await?;
        Ok((base, target))
    }

    async fn diff_side(
        &self,
        agent: &AgentRow,
        access: Access,
        field: &str,
        selector: Option<&pb::version_selector::Selector>,
    ) -> Result<pb::AgentDraft, Error> {
        let side = DiffSide::of(field, selector)?;
        let content = match side {
            DiffSide::Draft => agent.draft.clone(),
            DiffSide::Version(number) => self.version_of(&agent.id, number).await?.content,
        };
        domain::side_shown(access, side, &content)
    }

    /// Deprecates an older version: its pins hold until the sunset, then
    /// run the latest version. The event tells the scheduler whom to notify
    /// and with which changes, compared as holders see the versions.
    pub async fn deprecate(
        &self,
        caller: &Caller,
        retirement: Retirement,
    ) -> Result<VersionRow, Error> {
        let now = self.storage.clock.now_micros();
        let sunset_at = domain::check_deprecation(
            retirement.version_number,
            retirement.sunset_at,
            &retirement.note,
            now,
        )?;
        let agent = self.editable(caller, &retirement.agent_id).await?;
        let version = self
            .version_of(&agent.id, retirement.version_number)
            .await?;
        domain::require_deprecable(head(&agent), version.number, version.sunset_at, now)?;
        let latest = self.version_of(&agent.id, agent.latest_version).await?;
        let changes = diff::diff(
            &domain::holder_view(&version.content),
            &domain::holder_view(&latest.content),
        );
        let changes = domain::changes_summary(&changes);
        let change = Deprecation {
            agent_id: &agent.id,
            version: version.number,
            by_user_id: &caller.user_id,
            announced: Some(Announced {
                sunset_at,
                note: &retirement.note,
                latest_version: latest.number,
                changes: &changes,
            }),
        };
        self.set_deprecation(&change).await
    }

    /// Cancels a version's deprecation before its sunset; the version as it
    /// stands, and whether a deprecation was cancelled.
    pub async fn undeprecate(
        &self,
        caller: &Caller,
        agent_id: &str,
        version_number: i64,
    ) -> Result<(VersionRow, bool), Error> {
        domain::check_version_number(version_number)?;
        let agent = self.editable(caller, agent_id).await?;
        let version = self.version_of(&agent.id, version_number).await?;
        let now = self.storage.clock.now_micros();
        domain::require_not_retired(version.number, version.sunset_at, now)?;
        if version.sunset_at.is_none() {
            self.resync(&agent.id).await?;
            return Ok((version, false));
        }
        let change = Deprecation {
            agent_id: &agent.id,
            version: version.number,
            by_user_id: &caller.user_id,
            announced: None,
        };
        Ok((self.set_deprecation(&change).await?, true))
    }

    /// Stores a deprecation change and syncs it; FAILED_PRECONDITION when
    /// the sunset passed between the read and the write.
    async fn set_deprecation(&self, change: &Deprecation<'_>) -> Result<VersionRow, Error> {
        let Some((version, facts)) = self.storage.set_deprecation(change).await? else {
            let now = self.storage.clock.now_micros();
            let version = self.version_of(change.agent_id, change.version).await?;
            domain::require_not_retired(version.number, version.sunset_at, now)?;
            return Err(Error::Aborted(
                "the version changed while you deprecated it; read it again and retry".into(),
            ));
        };
        self.sync(facts).await?;
        Ok(version)
    }

    /// Ends access in sharing, then deletes the agent here.
    pub async fn delete(&self, caller: &Caller, agent_id: &str) -> Result<AgentRow, Error> {
        let (agent_id, agent) = self.named(caller, agent_id).await?;
        let agent_id = &agent_id;
        let access = self.access_of(caller, agent.as_ref()).await?;
        let agent = agent.ok_or_else(|| domain::not_found(agent_id))?;
        domain::require_may_delete(
            &agent.standing(),
            agent.is_managed,
            access,
            caller,
            agent_id,
        )?;
        // Access ends before anything else: sharing learns of the delete
        // first, and nothing changes here unless it did.
        let (_, facts) = self.storage.current_facts(&agent.id).await?;
        let ending = domain::deleted_facts(facts);
        let ended_at = ending.revision;
        self.access
            .sync(ending)
            .await
            .map_err(NotSynced::before_delete)?;
        let (agent, facts) = self
            .storage
            .delete_agent(&agent.id)
            .await?
            .ok_or_else(|| domain::not_found(agent_id))?;
        // A change that committed between the read and the delete took the
        // revision sharing got, so the final one must follow.
        if facts.revision != ended_at {
            self.sync(facts).await?;
        }
        Ok(agent)
    }

    /// Publishes a deployed version as a template of the org, without the
    /// builder's connections.
    pub async fn publish(
        &self,
        caller: &Caller,
        publication: Publication,
    ) -> Result<TemplateRow, Error> {
        let agent = self.editable(caller, &publication.agent_id).await?;
        domain::check_publish(head(&agent), publication.version_number)?;
        let version = self
            .version_of(&agent.id, publication.version_number)
            .await?;
        let name = domain::template_name(&publication.name, &version.content.name)?;
        let description =
            domain::template_description(&publication.description, &version.content.description);
        let content = domain::without_connections(&version.content);
        self.storage
            .create_template(NewTemplate {
                org_id: &caller.org_id,
                name: &name,
                description: &description,
                content: &content,
                source_agent_id: &agent.id,
                source_version: version.number,
                publisher_user_id: &caller.user_id,
            })
            .await
    }

    /// One page of the org's templates, and the next page's token.
    pub async fn templates(
        &self,
        caller: &Caller,
        page: &Page,
    ) -> Result<(Vec<TemplateRow>, String), Error> {
        let rows = self.storage.templates(&caller.org_id, page).await?;
        Ok(page.split(rows, |t| t.id.clone()))
    }

    pub async fn template(&self, caller: &Caller, template_id: &str) -> Result<TemplateRow, Error> {
        let template_id = &ids::parse("template_id", template_id)?;
        self.storage
            .template(&caller.org_id, template_id)
            .await?
            .ok_or_else(|| template_not_found(template_id))
    }

    /// A new agent of the caller's from a template's design, without
    /// connections.
    pub async fn create_from_template(
        &self,
        caller: &Caller,
        template_id: &str,
        name: &str,
    ) -> Result<AgentRow, Error> {
        caller.require_builder()?;
        caller.home_workspace()?;
        let template = self.template(caller, template_id).await?;
        let mut draft = domain::without_connections(&template.content);
        draft.name = domain::agent_name_from_template(name, &template.name)?;
        let draft = domain::validate_draft("draft", draft)?;
        self.insert(caller, draft, false).await
    }
}
