//! What every part of sharing's storage shares: the database handle, the
//! clock and the event outbox. Each part (tenancy, access, connections) owns
//! its SQL in its own storage type built on these.

use agentshare_kit::clock::Clock;
use agentshare_kit::db::Db;
use agentshare_kit::events::EventLog;

use crate::access::storage::AccessStorage;
use crate::connections::storage::ConnectionStorage;
use crate::tenancy::storage::TenancyStorage;

#[derive(Clone)]
pub struct Shared {
    pub db: Db,
    pub clock: Clock,
    pub events: EventLog,
}

impl Shared {
    /// Commits a change and wakes this replica's event watchers at once.
    pub async fn commit(
        &self,
        tx: sqlx::Transaction<'static, sqlx::Any>,
    ) -> agentshare_kit::Result<()> {
        tx.commit().await?;
        self.events.committed();
        Ok(())
    }
}

/// Sharing's three storage parts over one database. A handler that spans
/// parts (a check reads tenancy's roles and access's facts) names the part
/// at each call.
#[derive(Clone)]
pub struct Storage {
    /// The clock every part reads, for handlers that decide by the time.
    pub clock: Clock,
    pub tenancy: TenancyStorage,
    pub access: AccessStorage,
    pub connections: ConnectionStorage,
}

impl Storage {
    pub fn new(db: Db, clock: Clock, events: EventLog) -> Self {
        let shared = Shared { db, clock, events };
        Self {
            clock: shared.clock.clone(),
            tenancy: TenancyStorage::new(shared.clone()),
            access: AccessStorage::new(shared.clone()),
            connections: ConnectionStorage::new(shared),
        }
    }
}

/// Declares one part's storage type: it wraps [`Shared`] and dereferences to
/// it, so the part's SQL reads `self.db`, `self.clock` and `self.commit(..)`.
macro_rules! part_storage {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(crate::common::Shared);

        impl $name {
            pub fn new(shared: crate::common::Shared) -> Self {
                Self(shared)
            }
        }

        impl std::ops::Deref for $name {
            type Target = crate::common::Shared;

            fn deref(&self) -> &crate::common::Shared {
                &self.0
            }
        }
    };
}
pub(crate) use part_storage;
