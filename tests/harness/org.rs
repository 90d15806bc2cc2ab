//! An org made through the API, as most tests begin: its owner signed in,
//! the org created, and each member signed in and added with a role.

use agentshare_proto::sharing::v1::{Org, OrgRole};

use crate::{Suite, UserClient};

/// What [`OrgBuilder::build`] made.
pub struct OrgFixture {
    pub owner: UserClient,
    pub org: Org,
    /// In the order they were named.
    pub members: Vec<Member>,
}

/// A member of the org, signed in.
#[derive(Clone)]
pub struct Member {
    pub client: UserClient,
    pub user_id: String,
}

/// An org to make; start with [`Suite::org`].
pub struct OrgBuilder<'a> {
    suite: &'a Suite,
    name: String,
    owner: String,
    members: Vec<(String, OrgRole)>,
    token_secs: Option<i64>,
}

impl<'a> OrgBuilder<'a> {
    pub(crate) fn new(suite: &'a Suite, name: &str) -> Self {
        Self {
            suite,
            name: name.into(),
            owner: "alice".into(),
            members: Vec::new(),
            token_secs: None,
        }
    }

    /// Who creates and owns the org; `alice` unless named.
    pub fn owner(mut self, user: &str) -> Self {
        self.owner = user.into();
        self
    }

    /// Adds `user` with `role`.
    pub fn member(mut self, user: &str, role: OrgRole) -> Self {
        self.members.push((user.into(), role));
        self
    }

    /// Everyone's tokens last `secs`, for tests that move the suite clock
    /// further than a default token lives.
    pub fn tokens_for(mut self, secs: i64) -> Self {
        self.token_secs = Some(secs);
        self
    }

    async fn client(&self, user: &str) -> UserClient {
        let client = self.suite.user(user).await;
        match self.token_secs {
            Some(secs) => client.with_token(&self.suite.token_with(user, false, secs)),
            None => client,
        }
    }

    /// Makes the org and adds the members, the owner stepping up to do so.
    pub async fn build(self) -> OrgFixture {
        let owner = self.client(&self.owner).await;
        let org = owner.new_org(&self.name).await;
        let stepped_up = owner.with_token(&self.suite.token_with(&self.owner, true, 7200));
        let mut members = Vec::new();
        for (user, role) in &self.members {
            let client = self.client(user).await;
            let user_id = client.user_id().await;
            stepped_up.add_member(&user_id, *role).await;
            members.push(Member { client, user_id });
        }
        OrgFixture {
            owner,
            org,
            members,
        }
    }
}
