//! A member of an org or of a workspace, which `org members` and
//! `workspace members` print alike: the user, their email, their role and
//! since when. Only the roles differ, so each group words its own. `me`
//! reads the caller's user the same way.

use agentshare_proto::sharing::v1 as pb;
use prost_types::Timestamp;

use super::output::{View, time};

/// One member as the tables and records read it: the user, their role in
/// words, and when they joined.
pub type Member<'a> = (Option<&'a pb::User>, String, Option<&'a Timestamp>);

/// Members as a table, `member` reading each one.
pub fn members_table<M>(members: &[M], member: impl Fn(&M) -> Member<'_>) -> View {
    let members: Vec<Member<'_>> = members.iter().map(member).collect();
    View::table(&members)
        .id("USER", |(user, _, _)| {
            user.map(|user| user.id.clone()).unwrap_or_default()
        })
        .column("EMAIL", |(user, _, _)| {
            user.map(|user| user.email.clone()).unwrap_or_default()
        })
        .column("ROLE", |(_, role, _)| role.clone())
        .column("SINCE", |(_, _, since)| time(*since))
        .into()
}

/// One member as a record.
pub fn member_record((user, role, _): Member<'_>) -> View {
    user_record(user, vec![("role", role)])
}

/// A user as a record named by their id: the id and email, then `more`.
pub fn user_record(user: Option<&pb::User>, more: Vec<(&'static str, String)>) -> View {
    let user = user.cloned().unwrap_or_default();
    let mut fields = vec![("user", user.id.clone()), ("email", user.email)];
    fields.extend(more);
    View::record(user.id, fields)
}
