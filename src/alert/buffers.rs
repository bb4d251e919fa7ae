//! Document buffers handed back by the sinks once a record is delivered, for the next
//! document to be written into.
//!
//! The events flow writes a document of one to a few kilobytes for every event on a worker
//! thread, and a sink thread frees it once written. Buffers that size bypass the allocator's
//! per-thread caches, so each allocation and each free from another thread take the
//! allocating thread's arena lock: worker and sink contended for it, and the profile of the
//! daemon showed futex wake-ups under `malloc`. Handed back through a bounded lock-free queue
//! instead, a buffer goes from the sink to the next document without the allocator.
//!
//! Bounded: at most [`POOLED`] buffers of at most [`LARGEST`] bytes each wait here (8 MiB at
//! most); a buffer that does not fit, or arrives when the queue is full, is freed as before.
//! A worker writes a whole batch's documents (about a thousand for a megabyte of Metadata
//! events) before the sink hands the first back: with room for only 256, half of the buffers
//! were freed on arrival and half of the documents allocated anew.

use std::sync::OnceLock;

/// The most buffers waiting to be reused.
pub const POOLED: usize = 1024;

/// The largest buffer kept (bytes of capacity): most documents of Metadata events fit; larger
/// ones (request bodies) are rarer and allocated each time.
pub const LARGEST: usize = 8 << 10;

/// The queue's two ends.
type Queue = (
    crossbeam_channel::Sender<Vec<u8>>,
    crossbeam_channel::Receiver<Vec<u8>>,
);

fn queue() -> &'static Queue {
    static QUEUE: OnceLock<Queue> = OnceLock::new();
    QUEUE.get_or_init(|| crossbeam_channel::bounded(POOLED))
}

/// An empty buffer with room for at least `capacity` bytes: one handed back if any waits.
pub fn take(capacity: usize) -> Vec<u8> {
    take_from(queue(), capacity)
}

/// Hands `buf` back for a later [`take`] (its content is dropped), or frees it when it is
/// larger than [`LARGEST`] or [`POOLED`] buffers already wait.
pub fn give_back(buf: Vec<u8>) {
    give_back_to(queue(), buf)
}

fn take_from(q: &Queue, capacity: usize) -> Vec<u8> {
    match q.1.try_recv() {
        Ok(mut buf) => {
            buf.reserve(capacity);
            buf
        }
        Err(_) => Vec::with_capacity(capacity),
    }
}

fn give_back_to(q: &Queue, mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > LARGEST {
        return;
    }
    buf.clear();
    let _ = q.0.try_send(buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_handed_back_is_empty_when_taken_and_large_ones_are_not_kept() {
        // A queue of the test's own (the process's is shared by every test's records).
        let q: Queue = crossbeam_channel::bounded(POOLED);
        let mut b = Vec::with_capacity(4096);
        b.extend_from_slice(b"{\"secret\":\"x\"}");
        let ptr = b.as_ptr();
        give_back_to(&q, b);
        give_back_to(&q, Vec::with_capacity(LARGEST + 1));
        let again = take_from(&q, 100);
        assert!(again.is_empty(), "a reused buffer starts empty");
        assert!(again.capacity() >= 4096);
        // The queue held only the small buffer: it is the one taken back, and nothing else waits.
        assert_eq!(again.as_ptr(), ptr);
        assert!(q.1.try_recv().is_err(), "the large buffer was not kept");
        // Never more than POOLED wait.
        for _ in 0..POOLED + 10 {
            give_back_to(&q, Vec::with_capacity(64));
        }
        assert_eq!(q.1.len(), POOLED);
        // A taken buffer has room for what was asked, reused or not.
        assert!(take_from(&q, 2048).capacity() >= 2048);
        while q.1.try_recv().is_ok() {}
        assert!(take_from(&q, 2048).capacity() >= 2048);
        // The process's queue works the same way.
        give_back(Vec::with_capacity(512));
        assert!(take(1024).capacity() >= 1024);
    }
}
