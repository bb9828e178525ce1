//! The descriptor pool (Go's `pollCache`): type-stable [`PollDesc`]s addressed by a `u32` index.
//!
//! epoll hands back whatever 64 bits we registered, possibly long after the registration is
//! gone (an event already copied out by another thread's `epoll_wait`). So a descriptor's memory
//! must stay valid for the life of the [`Poller`](crate::Poller), whatever happens to the
//! registration: descriptors are never freed, only recycled through a free list, and stale
//! events are told apart by the descriptor's `fdseq` (see `desc.rs`).
//!
//! # Layout
//!
//! A segmented array: chunk `k` holds `FIRST_CHUNK << k` descriptors, so the chunk table is a
//! fixed array of `CHUNKS` pointers and never moves. A lookup is a `leading_zeros`, one
//! Acquire load and an offset; no lock. Growing (allocating chunk `k`) and the free list are
//! under `free`'s mutex, taken only by register and deregister.
//!
//! Rejected: a `Vec<PollDesc>` that grows (moves the descriptors under concurrent readers);
//! `Box` per registration (not type-stable: a stale event would touch freed memory);
//! a fixed-size array (a cap on open sockets, or megabytes reserved for nothing).

use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

use crate::desc::PollDesc;

/// Descriptors in chunk 0; chunk `k` holds `FIRST_CHUNK << k`.
const FIRST_CHUNK_SHIFT: u32 = 6;
const FIRST_CHUNK: u64 = 1 << FIRST_CHUNK_SHIFT;
/// Enough chunks for `FIRST_CHUNK * (2^CHUNKS - 1)` < 2^32 descriptors, so every index fits in
/// a `u32` and `u32::MAX` is never a valid index (the wake event uses it).
const CHUNKS: usize = 26;

/// Largest index the pool will hand out (exclusive).
const CAPACITY: u64 = FIRST_CHUNK * ((1 << CHUNKS) - 1);

pub(crate) struct Pool {
    /// `chunks[k]` points at the first of `FIRST_CHUNK << k` descriptors, or is null before
    /// chunk `k` is needed. Written once (under `free`), read lock-free by `get`.
    chunks: [AtomicPtr<PollDesc>; CHUNKS],
    /// Free indices and the high-water mark; taken by `alloc`/`free` only.
    free: Mutex<FreeList>,
}

struct FreeList {
    /// Indices of descriptors not in use, reused last-in first-out (a warm cache line, and the
    /// quickest reuse, which is what the stale-event defence must survive).
    free: Vec<u32>,
    /// Indices `>= next` were never handed out.
    next: u64,
}

/// Chunk number and offset inside the chunk of `index`.
fn locate(index: u32) -> (usize, usize) {
    let j = index as u64 + FIRST_CHUNK;
    let k = (63 - j.leading_zeros()) - FIRST_CHUNK_SHIFT;
    (k as usize, (j - (FIRST_CHUNK << k)) as usize)
}

fn chunk_len(k: usize) -> usize {
    (FIRST_CHUNK as usize) << k
}

impl Pool {
    pub(crate) fn new() -> Pool {
        Pool {
            chunks: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            free: Mutex::new(FreeList { free: Vec::new(), next: 0 }),
        }
    }

    /// The descriptor at `index`, if that index was ever handed out. Any bits are accepted
    /// (they may come from a corrupted or foreign epoll event): unknown indices give `None`.
    pub(crate) fn get(&self, index: u32) -> Option<&PollDesc> {
        if index as u64 >= CAPACITY {
            return None;
        }
        let (k, off) = locate(index);
        // Acquire: pairs with the Release store in `alloc` that published the chunk, so the
        // descriptors' initialisation is visible.
        let base = self.chunks[k].load(Ordering::Acquire);
        if base.is_null() {
            return None;
        }
        // SAFETY: non-null `chunks[k]` holds `chunk_len(k)` initialised descriptors alive until the
        // Pool drops, and `off < chunk_len(k)` (`locate`); `PollDesc` is atomics and a mutex, so
        // shared references are fine.
        Some(unsafe { &*base.add(off) })
    }

    /// Takes a free descriptor index, growing the pool if needed.
    pub(crate) fn alloc(&self) -> std::io::Result<u32> {
        let mut fl = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = fl.free.pop() {
            return Ok(i);
        }
        if fl.next >= CAPACITY {
            return Err(std::io::Error::new(std::io::ErrorKind::OutOfMemory, "netpoll: descriptor pool exhausted"));
        }
        let index = fl.next as u32;
        let (k, off) = locate(index);
        if off == 0 {
            // First index of a new chunk: allocate it.
            let chunk: Box<[PollDesc]> = (0..chunk_len(k)).map(|_| PollDesc::new()).collect();
            let base = Box::into_raw(chunk) as *mut PollDesc;
            // Release: pairs with the Acquire load in `get`.
            self.chunks[k].store(base, Ordering::Release);
        }
        fl.next += 1;
        Ok(index)
    }

    /// Returns `index` to the free list. The caller has made the descriptor's previous users
    /// unable to touch it meaningfully (fdseq bumped, closing set).
    pub(crate) fn free(&self, index: u32) {
        let mut fl = self.free.lock().unwrap_or_else(|e| e.into_inner());
        debug_assert!((index as u64) < fl.next && !fl.free.contains(&index));
        fl.free.push(index);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for (k, c) in self.chunks.iter_mut().enumerate() {
            let base = *c.get_mut();
            if !base.is_null() {
                // SAFETY: `base` came from `Box::into_raw` of a `Box<[PollDesc]>` of
                // `chunk_len(k)` elements in `alloc`, and `&mut self` proves no reference from
                // `get` is alive any more.
                drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(base, chunk_len(k))) });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_covers_chunks_contiguously() {
        let mut expect = (0usize, 0usize);
        for i in 0..10_000u32 {
            assert_eq!(locate(i), expect, "index {i}");
            expect.1 += 1;
            if expect.1 == chunk_len(expect.0) {
                expect = (expect.0 + 1, 0);
            }
        }
        let last = (CAPACITY - 1) as u32;
        assert_eq!(locate(last), (CHUNKS - 1, chunk_len(CHUNKS - 1) - 1));
        assert!(CAPACITY < u32::MAX as u64);
    }

    #[test]
    fn alloc_reuses_lifo_and_get_rejects_unknown() {
        let p = Pool::new();
        assert!(p.get(0).is_none());
        let a: Vec<u32> = (0..200).map(|_| p.alloc().unwrap()).collect();
        assert_eq!(a, (0..200).collect::<Vec<_>>());
        assert!(p.get(199).is_some());
        assert!(p.get(1000).is_none());
        assert!(p.get(u32::MAX).is_none());
        p.free(7);
        p.free(150);
        assert_eq!(p.alloc().unwrap(), 150);
        assert_eq!(p.alloc().unwrap(), 7);
        assert_eq!(p.alloc().unwrap(), 200);
    }
}
