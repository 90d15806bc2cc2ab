//! What every part of sharing's storage shares: the database handle, the
//! clock and the event outbox. Each part (tenancy, access, connections) owns
//! its SQL in its own storage type built on these.

use agentshare_kit::clock::Clock;
use agentshare_kit::db::Db;
use agentshare_kit::events::EventLog;
use agentshare_kit::page::Page;
use sqlx::Any;
use sqlx::any::AnyArguments;
use sqlx::query::QueryAs;

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
    ) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.events.committed();
        Ok(())
    }
}

/// A listing query's last two parameters: the key its page starts after
/// (`''` on the first page) and how many rows to fetch.
pub trait Paged<'q> {
    fn paged(self, page: &'q Page) -> Self;
}

impl<'q, O> Paged<'q> for QueryAs<'q, Any, O, AnyArguments<'q>> {
    fn paged(self, page: &'q Page) -> Self {
        self.bind(page.after().unwrap_or_default())
            .bind(page.limit())
    }
}

/// One page of a listing as answered: its rows converted, and the token of
/// the next page (empty on the last).
pub fn answer_page<R, P>(
    page: &Page,
    rows: Vec<R>,
    key: impl Fn(&R) -> String,
    answer: impl FnMut(R) -> P,
) -> (Vec<P>, String) {
    let (rows, next_page_token) = page.split(rows, key);
    (rows.into_iter().map(answer).collect(), next_page_token)
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
