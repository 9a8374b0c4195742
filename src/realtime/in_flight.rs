//! The client events a node is handling, so that a shutdown can refuse new ones and let those in
//! progress finish, and their acks go out, before it closes the transports they answer on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// How long a shutdown waits for the client events in progress (each is one bounded command or
/// read; a stuck database is the only way to reach this).
pub const FINISH_WAIT: Duration = Duration::from_secs(10);
/// After the last event finished: time for its ack, queued on the socket, to reach the wire
/// before the transport closes.
pub const ACK_FLUSH: Duration = Duration::from_millis(200);

#[derive(Debug, Default)]
pub struct InFlightEvents {
    handling: AtomicUsize,
    closing: AtomicBool,
    idle: Notify,
}

/// Held while one client event is handled.
#[derive(Debug)]
pub struct Handling(Arc<InFlightEvents>);

impl Handling {
    /// Whether the node has begun to shut down: the event is refused.
    pub fn is_closing(&self) -> bool {
        self.0.is_closing()
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        if self.0.handling.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl InFlightEvents {
    /// Counts one event as in progress. Taken before [`Self::is_closing`] is asked, so that a
    /// shutdown either sees the event and waits for it, or the event sees the shutdown.
    pub fn enter(self: &Arc<Self>) -> Handling {
        self.handling.fetch_add(1, Ordering::SeqCst);
        Handling(self.clone())
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// From now on events are refused (the client sends them again after reconnecting).
    pub fn stop_accepting(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    /// Resolves when no event is in progress, or after `limit`; whether none is.
    pub async fn finished(&self, limit: Duration) -> bool {
        let drained = async {
            loop {
                // Registered before the count is read: a drop in between still wakes it.
                let woken = self.idle.notified();
                if self.handling.load(Ordering::SeqCst) == 0 {
                    return;
                }
                woken.await;
            }
        };
        tokio::time::timeout(limit, drained).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_shutdown_waits_for_events_in_progress_and_new_ones_see_it() {
        let events = Arc::new(InFlightEvents::default());
        assert!(
            events.finished(Duration::from_millis(10)).await,
            "idle at once"
        );

        let first = events.enter();
        events.stop_accepting();
        let late = events.enter();
        assert!(
            late.is_closing(),
            "an event that starts now sees the shutdown"
        );
        drop(late);
        assert!(
            !events.finished(Duration::from_millis(50)).await,
            "an event in progress holds the shutdown"
        );
        let waiter = {
            let events = events.clone();
            tokio::spawn(async move { events.finished(Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert!(
            waiter.await.expect("join"),
            "the last event's end releases it"
        );
    }
}
