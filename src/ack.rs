//! Acknowledgements: how a source learns that a batch it handed on was confirmed by every sink
//! that had to confirm it. Sinks and the pipeline see only [`Confirm`]; each source defines its
//! own completion (its position type) and receives it back through a channel, so that it can
//! advance its checkpoint past batches confirmed in any order.
//!
//! This module imports nothing of tripline: sources, sinks and the pipeline all depend on it,
//! and it on none of them.

use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;

/// A batch's pending confirmations, as the pipeline and the sinks hold it.
pub trait Confirm: Send + Sync + Debug {
    /// Registers `n` more confirmations to wait for (before the batch is handed on).
    fn add(&self, n: usize);
    /// One holder confirms; the last confirmation notifies the source.
    fn done(&self);
}

/// Counts the confirmations a batch still needs; the last one sends `completion` to its
/// source. Dropping an `Ack` without calling [`Confirm::done`] does not confirm: the batch is
/// read again after a restart.
#[derive(Debug)]
pub struct Ack<C> {
    remaining: AtomicUsize,
    completion: C,
    notify: Sender<C>,
}

impl<C: Copy + Send + Sync + Debug + 'static> Ack<C> {
    /// A batch that needs one confirmation (the worker's); more holders are added with
    /// [`Confirm::add`] before it is handed on.
    pub fn for_batch(completion: C, notify: Sender<C>) -> Arc<dyn Confirm> {
        Arc::new(Ack {
            remaining: AtomicUsize::new(1),
            completion,
            notify,
        })
    }
}

impl<C: Copy + Send + Sync + Debug> Confirm for Ack<C> {
    fn add(&self, n: usize) {
        self.remaining.fetch_add(n, Ordering::AcqRel);
    }

    fn done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The source may have stopped (shutdown): then nobody needs the notice.
            let _ = self.notify.send(self.completion);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_of_all_confirmations_notifies_the_source_once() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let ack = Ack::for_batch(7u64, tx);
        ack.add(2);
        ack.done();
        ack.done();
        assert!(
            rx.try_recv().is_err(),
            "notified before the last confirmation"
        );
        ack.done();
        assert_eq!(rx.try_recv(), Ok(7));
        assert!(rx.try_recv().is_err(), "notified twice");
    }

    #[test]
    fn a_dropped_ack_never_notifies() {
        let (tx, rx) = crossbeam_channel::unbounded::<u64>();
        let ack = Ack::for_batch(1u64, tx);
        ack.add(1);
        ack.done();
        drop(ack);
        assert!(rx.try_recv().is_err());
    }
}
