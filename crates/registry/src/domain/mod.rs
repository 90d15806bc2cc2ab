//! The builder's rules for an agent design, one topic a file: where an
//! agent is in its life, who may see and change it, what a draft may hold,
//! what each reader sees of it, when a draft may become a version, what a
//! template is called, and the access facts sharing keeps about it.

mod access;
mod drafts;
mod facts;
mod lifecycle;
mod retirement;
mod templates;
mod versions;
mod views;

pub use access::{
    Access, Caller, Listing, Standing, View, access, listed_state, listing, not_found,
    require_edit, require_may_delete, sees_deleted, shown,
};
pub use drafts::{
    apply_mask, check_name, check_notes, parse_cron, tools_without_connection, validate_draft,
};
pub use facts::{FactsSource, deleted_facts, edit_changes_facts, facts, integrations_json};
pub use lifecycle::{AgentState, Origin};
pub use retirement::{
    changes_summary, check_deprecation, check_version_number, require_deprecable,
    require_not_retired, retired,
};
pub use templates::{agent_name_from_template, template_description, template_name};
pub use versions::{
    DiffSide, DraftWrite, Head, NextVersion, aborted_draft, check_expected_revision, check_publish,
    check_rollback, deploy_content, next_version, require_draft_revision, side_shown, writes_raced,
};
pub use views::{default_agent_design, holder_view, without_connections};
