//! The scope of one request (`003_*`'s WorkspaceScope): the workspace a user
//! acts in within an org, validated against membership on every call.

use agentshare_kit::Error;

use crate::storage::{OrgRow, Storage};

/// The workspace of a request in `org`:
/// - with workspaces off, the org's default workspace (the org behaves as
///   one workspace);
/// - the requested one, if the user belongs to it;
/// - else `preferred` (a session's or an API key's), if the user still
///   belongs to it;
/// - else the user's default: the org default workspace if they are in it,
///   else their first. Empty means none, which denies everything.
pub async fn workspace_of(
    storage: &Storage,
    org: &OrgRow,
    user_id: &str,
    requested: &str,
    preferred: Option<&str>,
) -> Result<String, Error> {
    let unknown = || Error::not_found(format!("workspace {requested}"));
    if !org.workspaces_enabled {
        if !requested.is_empty() && requested != org.default_workspace_id {
            return Err(unknown());
        }
        return Ok(org.default_workspace_id.clone());
    }
    if !requested.is_empty() {
        return if storage
            .is_workspace_member(&org.id, requested, user_id)
            .await?
        {
            Ok(requested.to_string())
        } else {
            Err(unknown())
        };
    }
    if let Some(preferred) = preferred.filter(|w| !w.is_empty())
        && storage
            .is_workspace_member(&org.id, preferred, user_id)
            .await?
    {
        return Ok(preferred.to_string());
    }
    Ok(storage
        .workspace_ids_of(&org.id, user_id)
        .await?
        .into_iter()
        .next()
        .unwrap_or_default())
}
