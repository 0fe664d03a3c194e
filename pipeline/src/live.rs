//! Live results for subscribers (the API's WebSocket stream). Publishing never waits: a
//! subscriber that falls behind loses the oldest events and is told how many.

use std::sync::Arc;

use pricestream_schemas::{AlertEvent, Bar, Quote, Signal};
use tokio::sync::broadcast;

/// One live result.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    Quote(Quote),
    Bar(Bar),
    Signal(Signal),
    /// A fired alert (shown only to the key that owns the rule).
    Alert(AlertEvent),
}

/// The fan-out point: the sink publishes, every subscriber has its own bounded view.
#[derive(Clone)]
pub struct LiveHub {
    tx: broadcast::Sender<Arc<LiveEvent>>,
}

impl LiveHub {
    /// Each subscriber may fall `capacity` events behind before it loses the oldest.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        LiveHub { tx }
    }

    /// Publishes without waiting (no subscriber: dropped at once).
    pub fn publish(&self, event: LiveEvent) {
        let _ = self.tx.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.tx.subscribe()
    }

    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}
