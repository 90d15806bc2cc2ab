//! The connection a command calls the gateway on: where (the endpoint),
//! as whom (a bearer token, or a grant token for a widget's visitors), and
//! in which org and workspace.
//!
//! Each setting comes from, first to last: the command line, the
//! environment (`AGENTSHARE_ENDPOINT`, `AGENTSHARE_TOKEN`, `AGENTSHARE_ORG`,
//! `AGENTSHARE_WORKSPACE`), the context in use, and the embedded default
//! (`http://127.0.0.1:50051`, a dev token minted with `--as USER`).

use std::time::Duration;

use agentshare_kit::clock::Clock;
use agentshare_kit::config::{Config, ConfigArgs};
use agentshare_kit::secret::Secret;
use agentshare_kit::session;
use agentshare_proto::gateway::v1::invoke_service_client::InvokeServiceClient;
use agentshare_proto::registry::v1::agent_registry_service_client::AgentRegistryServiceClient;
use agentshare_proto::registry::v1::{self as registry, ListAgentsRequest};
use agentshare_proto::scheduler::v1 as scheduler;
use agentshare_proto::scheduler::v1::automations_service_client::AutomationsServiceClient;
use agentshare_proto::sharing::v1::access_service_client::AccessServiceClient;
use agentshare_proto::sharing::v1::connections_service_client::ConnectionsServiceClient;
use agentshare_proto::sharing::v1::sharing_service_client::SharingServiceClient;
use agentshare_proto::sharing::v1::tenancy_service_client::TenancyServiceClient;
use agentshare_proto::sharing::v1::{self as sharing, ListMyAgentsRequest};
use agentshare_proto::store::v1 as store;
use agentshare_proto::store::v1::sessions_service_client::SessionsServiceClient;
use agentshare_proto::store::v1::usage_service_client::UsageServiceClient;
use agentshare_proto::store::v1::workspace_store_service_client::WorkspaceStoreServiceClient;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Endpoint;

use super::context::{Contexts, check_endpoint, config_dir};
use super::failure::{Failure, Outcome};

/// Where the embedded default (`agentshare serve`) listens.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:50051";
/// How long a dev token minted for `--as` lasts.
const DEV_TOKEN_SECS: i64 = 3600;

/// Who calls, and where, as the command line and environment say.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Target {
    /// The context to use instead of the current one.
    #[arg(long, global = true, value_name = "NAME", env = "AGENTSHARE_CONTEXT")]
    pub context: Option<String>,
    /// The gateway, as http://host:port (default: the context's, else
    /// http://127.0.0.1:50051).
    #[arg(long, global = true, value_name = "URL", env = "AGENTSHARE_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Call as this dev user, with a token minted from the embedded
    /// default's data dir (`AGENTSHARE_DATA_DIR`, else ./agentshare-data).
    /// The user's email is USER@example.com, and the token is stepped up.
    #[arg(long = "as", global = true, value_name = "USER")]
    pub as_user: Option<String>,
    /// The org to act in, when you belong to several.
    #[arg(long, global = true, value_name = "ORG_ID", env = "AGENTSHARE_ORG")]
    pub org: Option<String>,
    /// The workspace to act in, instead of your current one.
    #[arg(
        long,
        global = true,
        value_name = "WORKSPACE_ID",
        env = "AGENTSHARE_WORKSPACE"
    )]
    pub workspace: Option<String>,
}

/// A channel to the gateway that presents the caller on every call.
pub type Channel = InterceptedService<tonic::transport::Channel, Credentials>;

/// What every call carries.
#[derive(Clone, Debug)]
pub struct Credentials {
    authorization: Option<AsciiMetadataValue>,
    grant_token: Option<AsciiMetadataValue>,
    org: Option<AsciiMetadataValue>,
    workspace: Option<AsciiMetadataValue>,
}

impl Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let metadata = request.metadata_mut();
        if let Some(value) = &self.authorization {
            metadata.insert("authorization", value.clone());
        }
        if let Some(value) = &self.grant_token {
            metadata.insert("x-agentshare-grant-token", value.clone());
        }
        if let Some(value) = &self.org {
            metadata.insert("x-agentshare-org", value.clone());
        }
        if let Some(value) = &self.workspace {
            metadata.insert("x-agentshare-workspace", value.clone());
        }
        Ok(request)
    }
}

/// The gateway, reached as one caller.
#[derive(Clone, Debug)]
pub struct Api {
    channel: Channel,
    /// The endpoint, for messages.
    pub endpoint: String,
}

/// Settings resolved from every source.
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    pub endpoint: String,
    pub token: Option<String>,
    pub org: Option<String>,
    pub workspace: Option<String>,
}

impl Target {
    /// Resolves every setting; a missing token is an error only when the
    /// call is made (some callers, a widget's visitor, need none).
    pub fn resolve(&self) -> Outcome<Resolved> {
        let dir = config_dir()?;
        let contexts = Contexts::load(&dir)?;
        let selected = contexts.selected(self.context.as_deref())?;
        let context = selected.as_ref().map(|(_, context)| context);
        let endpoint = self
            .endpoint
            .clone()
            .or_else(|| context.map(|c| c.endpoint.clone()))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        check_endpoint(&endpoint)?;
        let token = match (&self.as_user, env("AGENTSHARE_TOKEN")) {
            (Some(user), _) => Some(dev_token(user)?),
            (None, Some(token)) => Some(token),
            (None, None) => match context.and_then(|c| c.token_file.as_ref()) {
                Some(file) => Some(read_token_file(file)?),
                None => None,
            },
        };
        Ok(Resolved {
            endpoint,
            token,
            org: self
                .org
                .clone()
                .or_else(|| context.and_then(|c| c.org.clone())),
            workspace: self
                .workspace
                .clone()
                .or_else(|| context.and_then(|c| c.workspace.clone())),
        })
    }

    /// The gateway as the resolved caller, who must have a token.
    pub fn api(&self) -> Outcome<Api> {
        let resolved = self.resolve()?;
        if resolved.token.is_none() {
            return Err(Failure::usage(
                "no credentials: pass --as USER against the embedded default, set \
                 AGENTSHARE_TOKEN, or add a context with `agentshare context add NAME \
                 --endpoint URL --token-file FILE`",
            ));
        }
        resolved.api()
    }
}

impl Resolved {
    /// The gateway as this caller.
    pub fn api(&self) -> Outcome<Api> {
        let credentials = Credentials {
            authorization: self
                .token
                .as_deref()
                .map(|token| header("token", &format!("Bearer {token}")))
                .transpose()?,
            grant_token: None,
            org: self
                .org
                .as_deref()
                .map(|org| header("--org", org))
                .transpose()?,
            workspace: self
                .workspace
                .as_deref()
                .map(|ws| header("--workspace", ws))
                .transpose()?,
        };
        Api::connect(&self.endpoint, credentials)
    }

    /// The gateway as an anonymous visitor holding a grant token.
    pub fn grant_api(&self, grant_token: &str) -> Outcome<Api> {
        let credentials = Credentials {
            authorization: None,
            grant_token: Some(header("grant token", grant_token)?),
            org: None,
            workspace: None,
        };
        Api::connect(&self.endpoint, credentials)
    }
}

fn header(what: &str, value: &str) -> Outcome<AsciiMetadataValue> {
    MetadataValue::try_from(value)
        .map_err(|_| Failure::usage(format!("the {what} has characters a header cannot carry")))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

fn read_token_file(file: &std::path::Path) -> Outcome<String> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        Failure::local(format!(
            "cannot read the token file {}: {e}",
            file.display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Failure::local(format!(
            "the token file {} is empty",
            file.display()
        )));
    }
    Ok(token.to_string())
}

/// A dev session token for `user`, signed with the embedded default's
/// session key, as `agentshare token` mints it.
pub fn dev_token(user: &str) -> Outcome<String> {
    let user = user.trim();
    if user.is_empty() || user.contains(char::is_whitespace) {
        return Err(Failure::usage(
            "--as needs a user name without spaces, such as alice",
        ));
    }
    let email = format!("{user}@example.com");
    mint(
        &ConfigArgs::default(),
        user,
        Some(&email),
        true,
        DEV_TOKEN_SECS,
    )
    .map_err(|e| Failure::local(e.to_string()))
}

/// Mints a dev session token from the data dir's session key.
pub fn mint(
    args: &ConfigArgs,
    user: &str,
    email: Option<&str>,
    step_up: bool,
    ttl_secs: i64,
) -> Result<String, agentshare_kit::config::BadSetting> {
    use agentshare_kit::config::BadSetting;
    let config = Config::load(args)?;
    if user.trim().is_empty() {
        return Err(BadSetting::new("user", "must not be empty"));
    }
    let secret_file = config.hs256_key_file();
    let secret = std::fs::read(&secret_file)
        .map(Secret::<[u8]>::from)
        .map_err(|e| {
            BadSetting::new(
                "data_dir",
                format!(
                    "cannot read {}: {e}; run `agentshare serve` once to create the data dir, \
                 or point AGENTSHARE_DATA_DIR at it",
                    secret_file.display()
                ),
            )
        })?;
    let mut claims =
        session::dev_claims(user, email, step_up, Clock::system().now_secs(), ttl_secs);
    claims.iss.clone_from(&config.auth.issuer);
    claims.aud.clone_from(&config.auth.audience);
    session::mint_hs256(secret.expose(), &claims).map_err(|e| BadSetting::new("token", e))
}

impl Api {
    fn connect(endpoint: &str, credentials: Credentials) -> Outcome<Self> {
        let channel = Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| Failure::usage(format!("{endpoint:?} is not an endpoint: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self {
            channel: InterceptedService::new(channel, credentials),
            endpoint: endpoint.to_string(),
        })
    }

    /// AGENT as the command line takes it: an agent's id as given, else the
    /// one agent the caller can see with exactly that name, among those
    /// they build (ListAgents) and those they run (ListMyAgents).
    pub async fn agent_id(&self, agent: &str) -> Outcome<String> {
        if looks_like_id(agent) {
            return Ok(agent.to_string());
        }
        let mut registry = self.registry();
        let built = every_page(ListAgentsRequest::default(), async |r| {
            registry.list_agents(r).await
        })
        .await?
        .agents;
        let mut access = self.access();
        let run = every_page(ListMyAgentsRequest::default(), async |r| {
            access.list_my_agents(r).await
        })
        .await?
        .agents;
        let named: std::collections::BTreeSet<String> = built
            .into_iter()
            .filter(|a| a.draft.as_ref().is_some_and(|d| d.name == agent))
            .map(|a| a.id)
            .chain(
                run.into_iter()
                    .filter(|a| a.name == agent)
                    .map(|a| a.agent_id),
            )
            .collect();
        let ids: Vec<String> = named.into_iter().collect();
        match ids.as_slice() {
            [id] => Ok(id.clone()),
            [] => Err(Failure::usage(format!(
                "no agent you can see is named {agent:?}: give its id (`agentshare agent list`, \
                 `agentshare my-agents`)"
            ))),
            ids => Err(Failure::usage(format!(
                "{} agents are named {agent:?}: give one of their ids: {}",
                ids.len(),
                ids.join(", ")
            ))),
        }
    }
}

/// A typed client for each service of the public API, over one channel.
macro_rules! clients {
    ($($name:ident: $client:ident;)*) => {
        impl Api {$(
            pub fn $name(&self) -> $client<Channel> {
                $client::new(self.channel.clone())
            }
        )*}
    };
}

clients! {
    tenancy: TenancyServiceClient;
    registry: AgentRegistryServiceClient;
    sharing: SharingServiceClient;
    access: AccessServiceClient;
    connections: ConnectionsServiceClient;
    invoke: InvokeServiceClient;
    store: WorkspaceStoreServiceClient;
    sessions: SessionsServiceClient;
    usage: UsageServiceClient;
    automations: AutomationsServiceClient;
}

/// The page size the CLI asks for when it reads a whole listing: the most
/// the server gives.
pub const PAGE_SIZE: i32 = agentshare_kit::page::MAX_PAGE_SIZE;

/// A listing request: it pages, and its answer gathers into one.
pub trait Paged: Clone {
    /// The answer of one page, and of every page gathered.
    type Answer: Default;
    /// Asks for the page the token names (empty: the first), as large as
    /// the server gives.
    fn at(&mut self, page_token: String);
    /// Adds one page to `all` and answers the next page's token.
    fn gather(all: &mut Self::Answer, page: Self::Answer) -> String;
}

macro_rules! paged {
    ($($request:ty => $answer:ty, $entries:ident;)*) => {$(
        impl Paged for $request {
            type Answer = $answer;
            fn at(&mut self, page_token: String) {
                self.page_size = PAGE_SIZE;
                self.page_token = page_token;
            }
            fn gather(all: &mut $answer, page: $answer) -> String {
                all.$entries.extend(page.$entries);
                page.next_page_token
            }
        }
    )*};
}

paged! {
    registry::ListAgentsRequest => registry::ListAgentsResponse, agents;
    registry::ListVersionsRequest => registry::ListVersionsResponse, versions;
    sharing::ListMyAgentsRequest => sharing::ListMyAgentsResponse, agents;
    sharing::ListConnectionsRequest => sharing::ListConnectionsResponse, connections;
    sharing::ListGrantsRequest => sharing::ListGrantsResponse, grants;
    scheduler::ListAutomationsRequest => scheduler::ListAutomationsResponse, automations;
    scheduler::ListMySubscriptionsRequest => scheduler::ListMySubscriptionsResponse, subscriptions;
    store::SummarizeUsageRequest => store::SummarizeUsageResponse, rows;
}

/// Every page of a listing as one answer: `fetch` makes the call for the
/// page the request names.
pub async fn every_page<R: Paged>(
    mut request: R,
    mut fetch: impl AsyncFnMut(R) -> Result<tonic::Response<R::Answer>, tonic::Status>,
) -> Outcome<R::Answer> {
    let mut all = R::Answer::default();
    let mut page_token = String::new();
    loop {
        request.at(page_token);
        let page = fetch(request.clone()).await?.into_inner();
        page_token = R::gather(&mut all, page);
        if page_token.is_empty() {
            return Ok(all);
        }
    }
}

/// Whether `text` has the shape of a UUID, as every agent id does.
fn looks_like_id(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(at, c)| match at {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_told_from_names() {
        assert!(looks_like_id("01936f5e-8c2a-7b3d-9e4f-0a1b2c3d4e5f"));
        assert!(!looks_like_id("Research agent"));
        assert!(!looks_like_id("01936f5e-8c2a-7b3d-9e4f-0a1b2c3d4e5g"));
    }
}
