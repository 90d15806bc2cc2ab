//! The gRPC face of the workspace store: decode, ask sharing for the
//! partition, apply the rules through storage, map the result.

use std::pin::Pin;
use std::time::Duration;

use agentshare_kit::clock::timestamp;
use agentshare_kit::config;
use agentshare_kit::identity::Principal;
use agentshare_kit::page::Page;
use agentshare_kit::server::Shutdown;
use agentshare_kit::{Error, Result, ids};
use agentshare_proto::store::v1 as pb;
use futures::Stream;
use pb::workspace_store_service_server::WorkspaceStoreService;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::access::Access;
use super::rules::{self, Expected, Partition};
use super::storage::{ItemRow, PartitionState, Put, Storage, Written};
use super::watch;

#[derive(Clone)]
pub struct WorkspaceStore {
    pub storage: Storage,
    pub access: Access,
    pub hub: watch::Hub,
    pub caps: watch::Caps,
    pub settings: WatchSettings,
    pub shutdown: Shutdown,
}

/// How watches behave, from config.
#[derive(Clone, Copy, Debug)]
pub struct WatchSettings {
    pub max_per_principal: u64,
    pub access_check: Duration,
    pub poll: Duration,
}

impl WatchSettings {
    pub fn new(store: &config::Store, poll: Duration) -> Self {
        Self {
            max_per_principal: store.max_watches_per_principal,
            access_check: store.watch_access_check,
            poll,
        }
    }
}

pub fn item_to_proto(item: ItemRow) -> pb::WorkspaceItem {
    pb::WorkspaceItem {
        content_type: content_type_to_proto(item.content_type).into(),
        key: item.key,
        value: item.value,
        revision: item.revision,
        created_by: item.created_by,
        create_time: Some(timestamp(item.created_at)),
        update_time: Some(timestamp(item.updated_at)),
        size_bytes: item.size_bytes,
        written_by: Some(writer_to_proto(item.writer)),
    }
}

/// The writer as stored; a kind this build does not know, or the empty
/// one of an item written before writers were recorded, reads as
/// UNSPECIFIED.
fn writer_to_proto(writer: rules::Writer) -> pb::ItemWriter {
    let kind = match rules::WriterKind::parse(&writer.kind) {
        Some(rules::WriterKind::User) => pb::WriterKind::User,
        Some(rules::WriterKind::InvokeGrant) => pb::WriterKind::InvokeGrant,
        Some(rules::WriterKind::DelegateGrant) => pb::WriterKind::DelegateGrant,
        Some(rules::WriterKind::AnonymousSession) => pb::WriterKind::AnonymousSession,
        Some(rules::WriterKind::AutomationRun) => pb::WriterKind::AutomationRun,
        None => pb::WriterKind::Unspecified,
    };
    pb::ItemWriter {
        kind: kind.into(),
        user_id: writer.user_id,
        grant_id: writer.grant_id,
        session_id: writer.session_id,
        automation_run_id: writer.automation_run_id,
        via_agent_id: writer.via_agent_id,
        published_from_agent_id: writer.published_from_agent_id,
    }
}

/// An item as listed: `item.value` already holds the preview.
fn summary_to_proto(item: ItemRow) -> pb::WorkspaceItemSummary {
    pb::WorkspaceItemSummary {
        content_type: content_type_to_proto(item.content_type).into(),
        key: item.key,
        preview: rules::preview(&item.value),
        created_by: item.created_by,
        update_time: Some(timestamp(item.updated_at)),
        revision: item.revision,
        size_bytes: item.size_bytes,
        written_by: Some(writer_to_proto(item.writer)),
    }
}

fn content_type_to_proto(content_type: rules::ContentType) -> pb::ItemContentType {
    match content_type {
        rules::ContentType::Json => pb::ItemContentType::Json,
        rules::ContentType::Text => pb::ItemContentType::Text,
    }
}

fn usage_to_proto(state: PartitionState, limits: &rules::Limits) -> pb::StoreUsage {
    pb::StoreUsage {
        item_count: state.usage.item_count,
        item_count_limit: limits.max_items,
        total_bytes: state.usage.total_bytes,
        total_bytes_limit: limits.max_total_bytes,
        value_bytes_limit: limits.max_value_bytes,
    }
}

/// The agent a tool call names in `field`, as a well-formed id.
fn agent_named(field: &str, agent_id: &str, missing: &str) -> Result<String> {
    if agent_id.is_empty() {
        return Err(Error::invalid(field, missing));
    }
    ids::parse(field, agent_id)
}

impl WorkspaceStore {
    /// The partition the caller reaches through `agent_id`, as sharing
    /// decides it now.
    async fn partition(&self, caller: &Principal, agent_id: &str) -> Result<Partition> {
        let agent_id = agent_named("agent_id", agent_id, "must name the calling agent")?;
        self.access.partition(caller, &agent_id).await
    }

    async fn write(&self, put: Put<'_>) -> Result<Written> {
        let written = self.storage.put(&put).await?;
        self.hub.committed(put.partition);
        Ok(written)
    }

    /// The revision a watch resumes after: the store's, unless the client
    /// names one still retained.
    async fn watch_cursor(&self, partition: &str, after: Option<i64>) -> Result<i64, Status> {
        let state = self.storage.partition(partition).await?;
        match after {
            None => Ok(state.revision),
            Some(after) if after > state.revision => Err(Status::out_of_range(format!(
                "after_revision {after} is ahead of this store, which is at revision {}; \
                 list it again and watch from the revision it returns",
                state.revision
            ))),
            Some(after) if after < state.revision => {
                if self.storage.change_retained(partition, after + 1).await? {
                    Ok(after)
                } else {
                    Err(watch::out_of_range(after))
                }
            }
            Some(after) => Ok(after),
        }
    }
}

type Changes = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

/// The WorkspaceStoreService handlers, one per unary call.
impl WorkspaceStore {
    async fn workspace_list(
        &self,
        caller: Principal,
        message: pb::WorkspaceListRequest,
    ) -> agentshare_kit::Result<pb::WorkspaceListResponse> {
        rules::check_prefix("key_prefix", &message.key_prefix)?;
        let page = Page::of(
            message.page_size,
            &message.page_token,
            format!("items:{}:{}", message.agent_id, message.key_prefix),
        )?;
        let partition = self.partition(&caller, &message.agent_id).await?;
        // The revision first: a change racing the page then shows up
        // both in the page and in a watch from this revision, never in
        // neither.
        let state = self.storage.partition(&partition.name).await?;
        let items = self
            .storage
            .list(&partition.name, &message.key_prefix, &page)
            .await?;
        let (items, next_page_token) = page.split(items, |item| item.key.clone());
        Ok(pb::WorkspaceListResponse {
            items: items.into_iter().map(summary_to_proto).collect(),
            next_page_token,
            revision: state.revision,
            usage: Some(usage_to_proto(state, &self.storage.limits)),
            partition: partition.name,
        })
    }

    async fn workspace_read(
        &self,
        caller: Principal,
        message: pb::WorkspaceReadRequest,
    ) -> agentshare_kit::Result<pb::WorkspaceReadResponse> {
        rules::check_key("key", &message.key)?;
        let partition = self.partition(&caller, &message.agent_id).await?;
        let item = self.storage.read(&partition.name, &message.key).await?;
        Ok(pb::WorkspaceReadResponse {
            item: Some(item_to_proto(item)),
        })
    }

    async fn workspace_write(
        &self,
        caller: Principal,
        message: pb::WorkspaceWriteRequest,
    ) -> agentshare_kit::Result<pb::WorkspaceWriteResponse> {
        rules::check_key("key", &message.key)?;
        let content_type = rules::content_type_of(message.content_type)?;
        let expected = Expected::for_write("expected_revision", message.expected_revision)?;
        rules::check_value(&message.value, content_type, &self.storage.limits)?;
        let partition = self.partition(&caller, &message.agent_id).await?;
        partition.require_writable()?;
        let written = self
            .write(Put {
                partition: &partition.name,
                key: &message.key,
                value: &message.value,
                content_type,
                expected,
                agent_id: &message.agent_id,
                writer: &rules::writer_of(&caller, &message.agent_id, None),
            })
            .await?;
        Ok(pb::WorkspaceWriteResponse {
            item: Some(item_to_proto(written.item)),
            created: written.created,
        })
    }

    async fn workspace_delete(
        &self,
        caller: Principal,
        message: pb::WorkspaceDeleteRequest,
    ) -> agentshare_kit::Result<pb::WorkspaceDeleteResponse> {
        rules::check_key("key", &message.key)?;
        let expected = Expected::for_delete(message.expected_revision)?;
        let partition = self.partition(&caller, &message.agent_id).await?;
        partition.require_writable()?;
        let deleted = self
            .storage
            .delete(&partition.name, &message.key, expected)
            .await?;
        self.hub.committed(&partition.name);
        Ok(pb::WorkspaceDeleteResponse {
            revision: deleted.revision,
            deleted_item_revision: deleted.item_revision,
        })
    }

    async fn workspace_publish(
        &self,
        caller: Principal,
        message: pb::WorkspacePublishRequest,
    ) -> agentshare_kit::Result<pb::WorkspacePublishResponse> {
        rules::check_key("key", &message.key)?;
        let target_key = match message.target_key.as_deref() {
            None | Some("") => message.key.as_str(),
            Some(key) => {
                rules::check_key("target_key", key)?;
                key
            }
        };
        let target_agent_id = agent_named(
            "target_agent_id",
            &message.target_agent_id,
            "must name the shared agent to publish into",
        )?;
        let expected =
            Expected::for_write("expected_target_revision", message.expected_target_revision)?;
        let source = self.partition(&caller, &message.agent_id).await?;
        let target = self.access.partition(&caller, &target_agent_id).await?;
        rules::check_publish(&message.agent_id, &source, &target_agent_id, &target)?;
        target.require_writable()?;
        let item = self.storage.read(&source.name, &message.key).await?;
        let written = self
            .write(Put {
                partition: &target.name,
                key: target_key,
                value: &item.value,
                content_type: item.content_type,
                expected,
                agent_id: &message.agent_id,
                writer: &rules::writer_of(&caller, &target_agent_id, Some(&message.agent_id)),
            })
            .await?;
        Ok(pb::WorkspacePublishResponse {
            item: Some(summary_to_proto(written.item)),
            created: written.created,
        })
    }
}

#[tonic::async_trait]
impl WorkspaceStoreService for WorkspaceStore {
    agentshare_kit::handlers! {
        workspace_list(pb::WorkspaceListRequest) -> pb::WorkspaceListResponse;
        workspace_read(pb::WorkspaceReadRequest) -> pb::WorkspaceReadResponse;
        workspace_write(pb::WorkspaceWriteRequest) -> pb::WorkspaceWriteResponse;
        workspace_delete(pb::WorkspaceDeleteRequest) -> pb::WorkspaceDeleteResponse;
        workspace_publish(pb::WorkspacePublishRequest) -> pb::WorkspacePublishResponse;
    }

    type WatchStream = Changes;

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Result<Response<Changes>, Status> {
        let principal = Principal::of(&request)?.clone();
        let message = request.into_inner();
        rules::check_prefix("key_prefix", &message.key_prefix)?;
        if message.after_revision.is_some_and(|r| r < 0) {
            return Err(Error::invalid("after_revision", "must not be negative").into());
        }
        // The cap first: a caller at it costs no call to sharing and no
        // read, however often they ask.
        let slot = self
            .caps
            .take(
                &watch::holder_of(&principal),
                self.settings.max_per_principal,
            )
            .ok_or_else(|| {
                let most = self.settings.max_per_principal;
                Error::quota(
                    format!(
                        "you already hold {most} open watches, the most allowed; close one first"
                    ),
                    "open_watches",
                    format!("{most} of {most} open watches used"),
                )
            })?;
        let partition = self.partition(&principal, &message.agent_id).await?;
        let cursor = self
            .watch_cursor(&partition.name, message.after_revision)
            .await?;
        let now = self.storage.clock.now_secs();
        let lifetime = watch::principal_expiry(&principal).map_or(Duration::ZERO, |exp| {
            Duration::from_secs(u64::try_from(exp - now).unwrap_or(0))
        });
        let stream = watch::Stream {
            storage: self.storage.clone(),
            access: self.access.clone(),
            hub: self.hub.clone(),
            agent_id: message.agent_id,
            principal,
            partition,
            prefix: message.key_prefix,
            omit_values: message.omit_values,
            cursor,
            poll: self.settings.poll,
            access_check: self.settings.access_check,
            lifetime,
            shutdown: self.shutdown.clone(),
            _slot: slot,
        };
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(stream.pump(tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
