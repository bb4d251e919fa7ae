//! [`content_hash`](super::content_hash) of many events at once: the same 16 bytes, computed
//! several events side by side in the CPU's vector lanes.
//!
//! One event's hash is sequential work for BLAKE3 when the event is shorter than two of its
//! 1,024-byte chunks (a Metadata event is about 1.1 KB): its 64-byte blocks are compressed one
//! after the other, a lane at a time. The events flow hashes every event, so this hashes the
//! blocks of up to 8 (AVX2) events in one pass instead, with `blake3`'s own `hash_many`, and
//! finishes each event's last block of each chunk, and the parent node of a two-chunk event,
//! one at a time. Longer events go through `blake3::Hasher`, which already spreads their
//! chunks over the lanes.
//!
//! The hashed message is what [`content_hash`](super::content_hash) hashes for one part: the
//! part's length as 8 little-endian bytes, then the part.

use blake3::platform::{le_bytes_from_words_32, words_from_le_bytes_32, Platform};

/// BLAKE3's initial chaining value (the IV, as for unkeyed hashing).
const IV: [u32; 8] = [
    0x6A09_E667,
    0xBB67_AE85,
    0x3C6E_F372,
    0xA54F_F53A,
    0x510E_527F,
    0x9B05_688C,
    0x1F83_D9AB,
    0x5BE0_CD19,
];
const CHUNK_START: u8 = 1;
const CHUNK_END: u8 = 2;
const PARENT: u8 = 4;
const ROOT: u8 = 8;
const BLOCK: usize = 64;
const CHUNK: usize = 1024;
/// The longest message (prefix included) hashed side by side: two chunks.
const MAX_MESSAGE: usize = 2 * CHUNK;
/// The length prefix.
const PREFIX: usize = 8;

/// Per message and chunk, the chaining value so far.
type ChunkCvs = [[u32; 8]; 2];

/// Messages whose blocks are copied and hashed side by side at a time: their copy (at most 64
/// x 960 bytes) is still in the core's cache when the lanes read it, and the buffer is reused
/// from batch to batch instead of a megabyte being allocated (and faulted in) for each.
const SLICE: usize = 64;

/// The most messages of a batch whose working lists a thread keeps between batches (a batch of
/// Metadata events holds about a thousand): with the copy buffer, at most about 400 KiB per
/// thread.
const KEPT: usize = 4 << 10;

/// A thread's working lists, kept from batch to batch.
#[derive(Default)]
struct Scratch {
    /// Per message and chunk, the chaining value so far.
    cvs: Vec<ChunkCvs>,
    /// The messages of each (chunk, leading blocks) group.
    groups: Vec<Vec<usize>>,
    /// The blocks of a slice of a group, laid end to end.
    buf: Vec<u8>,
    /// Their chaining values.
    cv_bytes: Vec<u8>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// `content_hash(&[part])` of each of `parts`, into `out` (cleared first), in order.
pub fn content_hashes(parts: &[&[u8]], out: &mut Vec<[u8; 16]>) {
    let done = SCRATCH
        .try_with(|s| match s.try_borrow_mut() {
            Ok(mut scratch) => {
                hashes_with(parts, out, &mut scratch);
                let listed: usize = scratch.groups.iter().map(Vec::capacity).sum();
                if scratch.cvs.capacity() > KEPT || listed > 2 * KEPT {
                    *scratch = Scratch::default();
                }
                true
            }
            Err(_) => false,
        })
        .unwrap_or(false);
    if !done {
        hashes_with(parts, out, &mut Scratch::default());
    }
}

fn hashes_with(parts: &[&[u8]], out: &mut Vec<[u8; 16]>, scratch: &mut Scratch) {
    out.clear();
    let platform = Platform::detect();
    let Scratch {
        cvs,
        groups,
        buf,
        cv_bytes,
    } = scratch;
    cvs.clear();
    cvs.resize(parts.len(), [IV; 2]);
    // The blocks before the last of each chunk, grouped by chunk and count of blocks: each
    // group is hashed side by side (every message of a group has the same length there).
    groups.resize_with(2 * (CHUNK / BLOCK), Vec::new);
    for g in groups.iter_mut() {
        g.clear();
    }
    for (i, part) in parts.iter().enumerate() {
        let len = part.len() + PREFIX;
        if len > MAX_MESSAGE {
            continue;
        }
        for (chunk, blocks) in leading_blocks(len).into_iter().enumerate() {
            if blocks > 0 {
                groups[chunk * (CHUNK / BLOCK) + blocks].push(i);
            }
        }
    }
    for (g, members) in groups.iter().enumerate() {
        let (chunk, blocks) = (g / (CHUNK / BLOCK), g % (CHUNK / BLOCK));
        let n = blocks * BLOCK;
        for slice in members.chunks(SLICE) {
            buf.clear();
            for &i in slice {
                extend_message(parts[i], chunk * CHUNK, n, buf);
            }
            cv_bytes.clear();
            cv_bytes.resize(slice.len() * 32, 0);
            hash_blocks(platform, blocks, buf, chunk as u64, cv_bytes);
            for (cv, &i) in cv_bytes.chunks_exact(32).zip(slice) {
                if let Ok(cv) = <&[u8; 32]>::try_from(cv) {
                    cvs[i][chunk] = words_from_le_bytes_32(cv);
                }
            }
        }
    }
    for (part, cv) in parts.iter().zip(cvs.iter_mut()) {
        out.push(finish(platform, part, cv));
    }
}

/// Per chunk of a message of `len` bytes, its blocks before the last (which the lanes hash);
/// 0 for a chunk the message does not reach.
fn leading_blocks(len: usize) -> [usize; 2] {
    let mut blocks = [0; 2];
    for (chunk, b) in blocks.iter_mut().enumerate() {
        let start = chunk * CHUNK;
        if start < len {
            *b = ((len - start).min(CHUNK) - 1) / BLOCK;
        }
    }
    blocks
}

/// Copies the message's bytes from `start` (the length prefix, then `part`) into `out`.
fn message_bytes(part: &[u8], start: usize, out: &mut [u8]) {
    let prefix = (part.len() as u64).to_le_bytes();
    let mut at = 0;
    while start + at < PREFIX && at < out.len() {
        out[at] = prefix[start + at];
        at += 1;
    }
    let from = start + at - PREFIX;
    let rest = out.len() - at;
    if let Some(src) = part.get(from..from + rest) {
        out[at..].copy_from_slice(src);
    }
}

/// Appends `n` bytes of the message from `start` (the length prefix, then `part`) to `out`;
/// zeros stand for bytes past the message's end (none are asked for).
fn extend_message(part: &[u8], start: usize, n: usize, out: &mut Vec<u8>) {
    let prefix = (part.len() as u64).to_le_bytes();
    let end = start + n;
    if let Some(p) = prefix.get(start..end.min(PREFIX)) {
        out.extend_from_slice(p);
    }
    let (from, to) = (start.max(PREFIX) - PREFIX, end.max(PREFIX) - PREFIX);
    match part.get(from..to) {
        Some(src) => out.extend_from_slice(src),
        None => out.resize(out.len() + (to - from), 0),
    }
}

/// The chaining values, after `blocks` blocks, of the chunks laid end to end in `buf` (each
/// `blocks` × 64 bytes, starting a chunk numbered `chunk`), into `out` (32 bytes each).
fn hash_blocks(platform: Platform, blocks: usize, buf: &[u8], chunk: u64, out: &mut [u8]) {
    macro_rules! by_length {
        ($($b:literal)*) => {
            match blocks {
                $($b => {
                    let inputs: smallvec::SmallVec<[&[u8; $b * BLOCK]; SLICE]> = buf
                        .chunks_exact($b * BLOCK)
                        .filter_map(|c| c.try_into().ok())
                        .collect();
                    platform.hash_many(
                        &inputs,
                        &IV,
                        chunk,
                        blake3::IncrementCounter::No,
                        0,
                        CHUNK_START,
                        0,
                        out,
                    );
                })*
                _ => {}
            }
        };
    }
    by_length!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
}

/// The hash of one message from its chunks' chaining values so far: each chunk's last block,
/// then the parent of two chunks. A message too long for the lanes is hashed whole.
fn finish(platform: Platform, part: &[u8], cvs: &mut ChunkCvs) -> [u8; 16] {
    let len = part.len() + PREFIX;
    if len > MAX_MESSAGE {
        return super::content_hash(&[part]);
    }
    let chunks = if len > CHUNK { 2 } else { 1 };
    let blocks = leading_blocks(len);
    for (chunk, cv) in cvs.iter_mut().enumerate().take(chunks) {
        let start = chunk * CHUNK;
        let leading = blocks[chunk];
        let last = (len - start).min(CHUNK) - leading * BLOCK;
        let mut block = [0u8; BLOCK];
        message_bytes(part, start + leading * BLOCK, &mut block[..last]);
        let mut flags = CHUNK_END;
        if leading == 0 {
            flags |= CHUNK_START;
        }
        if chunks == 1 {
            flags |= ROOT;
        }
        platform.compress_in_place(cv, &block, last as u8, chunk as u64, flags);
    }
    let root = if chunks == 2 {
        let mut block = [0u8; BLOCK];
        block[..32].copy_from_slice(&le_bytes_from_words_32(&cvs[0]));
        block[32..].copy_from_slice(&le_bytes_from_words_32(&cvs[1]));
        let mut cv = IV;
        platform.compress_in_place(&mut cv, &block, BLOCK as u8, 0, PARENT | ROOT);
        cv
    } else {
        cvs[0]
    };
    let mut hash = [0u8; 16];
    hash.copy_from_slice(&le_bytes_from_words_32(&root)[..16]);
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_length_hashes_as_one_event_does() {
        let text: Vec<u8> = (0..3000u32).map(|i| (i * 31 + 7) as u8).collect();
        // Every length across the block, chunk and two-chunk edges, in one batch.
        let parts: Vec<&[u8]> = (0..text.len()).map(|l| &text[..l]).collect();
        let mut hashes = Vec::new();
        content_hashes(&parts, &mut hashes);
        assert_eq!(hashes.len(), parts.len());
        for (part, hash) in parts.iter().zip(&hashes) {
            assert_eq!(
                *hash,
                super::super::content_hash(&[part]),
                "length {}",
                part.len()
            );
        }
        content_hashes(&[], &mut hashes);
        assert!(hashes.is_empty());
    }

    #[test]
    fn a_group_larger_than_a_slice_and_a_reused_scratch_hash_the_same() {
        // 300 messages of one length make one group of more than `SLICE`; two chunks each.
        let texts: Vec<Vec<u8>> = (0..300u32)
            .map(|i| (0..1500u32).map(|j| (i * 7 + j * 13) as u8).collect())
            .collect();
        let parts: Vec<&[u8]> = texts.iter().map(Vec::as_slice).collect();
        let one_by_one: Vec<[u8; 16]> = parts
            .iter()
            .map(|p| super::super::content_hash(&[p]))
            .collect();
        let mut hashes = Vec::new();
        for _ in 0..2 {
            content_hashes(&parts, &mut hashes);
            assert_eq!(hashes, one_by_one);
        }
        // A smaller batch after a larger one: nothing of the first is left in the lists.
        content_hashes(&parts[..3], &mut hashes);
        assert_eq!(hashes, one_by_one[..3]);
    }

    proptest! {
        #[test]
        fn a_batch_hashes_as_its_events_one_by_one(
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2600), 0..40)
        ) {
            let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            let mut hashes = Vec::new();
            content_hashes(&parts, &mut hashes);
            let one_by_one: Vec<[u8; 16]> =
                parts.iter().map(|p| super::super::content_hash(&[p])).collect();
            prop_assert_eq!(hashes, one_by_one);
        }
    }
}
