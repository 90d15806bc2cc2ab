//! Hearing that access may have changed: sharing's and registry's events,
//! followed live. An MCP session that hears one lists its tools again and
//! tells its client when the list differs.

use agentshare_kit::bootstrap::Context;
use agentshare_kit::config::BadSetting;
use agentshare_kit::events;
use agentshare_kit::identity::ServiceName;
use tokio::sync::watch;

/// A counter that moves on every event of the services that decide access
/// (sharing) and what agents exist (registry), and on every reconnect to
/// them, since events in a gap are not replayed.
#[derive(Clone)]
pub struct AccessChanges {
    counter: watch::Sender<u64>,
}

impl AccessChanges {
    pub fn follow(context: &Context) -> Result<Self, BadSetting> {
        let (counter, _) = watch::channel(0_u64);
        for source in [ServiceName::Sharing, ServiceName::Registry] {
            let counter = counter.clone();
            events::follow_live(context, source, move |_| {
                counter.send_modify(|n| *n = n.wrapping_add(1));
            })?;
        }
        Ok(Self { counter })
    }

    /// A receiver that sees the next change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.counter.subscribe()
    }

    /// Where the counter stands now, to stamp a request with.
    pub fn mark(&self) -> ChangeMark {
        ChangeMark(*self.counter.borrow())
    }
}

/// The counter as it stood when a request arrived. A session that starts
/// listening later compares it with the counter then: the SDK acknowledges
/// `subscriptions/listen` before the handler runs, and a change in between
/// must still be told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChangeMark(u64);

impl ChangeMark {
    /// Whether the counter moved since this mark.
    pub fn passed(self, receiver: &watch::Receiver<u64>) -> bool {
        *receiver.borrow() != self.0
    }
}
