//! Small memory blocks recycled per thread, by size class: the memory of spawned goroutines'
//! tasks (a closure and its result slot).
//!
//! A goroutine's task is allocated by the spawner and usually freed on another thread, the one
//! that ran the goroutine to its end. Through `malloc` that pattern is slow at 2 Ps: the freeing
//! thread's cache of recent frees fills within a few frees, after which every free locks the
//! allocating thread's arena, and the allocating thread, its own cache empty, takes every block
//! from that arena under the same lock. Here each M keeps up to [`CACHE_MAX`] blocks per class;
//! an M that runs out takes a batch from a global spare list, and one that overflows gives a
//! batch back, so blocks flow from the threads that free to the threads that allocate one lock
//! per batch. Plain threads and blocks bigger or more aligned than the classes use the global
//! allocator directly.
//!
//! Blocks come from the global allocator (so a heap profile sees them, charged to the spawn that
//! first needed each one). They go back to it from sysmon ([`scavenge`], once a second), not
//! from the goroutine that ends: a burst of goroutines ending (a wave of sleepers waking, a
//! fan-out joined) would otherwise pay `free`'s coalescing, which touches the cold neighbours of
//! every block, on the goroutines' own time. A spare list keeps [`SPARE_BYTES`] per class; above
//! that, what it did not need over the last period (its low-water mark) is freed.
//!
//! Invariants:
//! 1. Every block on a list was allocated by [`std::alloc::alloc`] with [`class_layout`] of that
//!    list's class, and is owned by the list (nobody else holds a pointer to it).
//! 2. A [`BlockCache`] is touched only by the thread of the M that holds it, and borrowed only
//!    for one call of its own, which never calls the global allocator: a user's allocator may
//!    run any code, and must not find the cache borrowed.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

/// The classes' block sizes, in bytes: 16 apart up to 128 (the common closures), as `malloc`'s
/// own bins are, so that a block costs no more memory than the `malloc` it replaces (a million
/// parked goroutines hold a million tasks).
const CLASSES: [usize; 14] = [32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 512];

/// The alignment every class guarantees.
const ALIGN: usize = 16;

/// Blocks one M keeps per class.
pub(crate) const CACHE_MAX: usize = 64;

/// Blocks moved per trip to the spare list.
const BATCH: usize = CACHE_MAX / 2;

/// Bytes a spare list keeps per class however little it is used.
const SPARE_BYTES: usize = 256 << 10;

/// Blocks [`scavenge`] takes off a list per hold of its lock.
const SCAVENGE_CHUNK: usize = 256;

/// A size class: an index into [`CLASSES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Class(u8);

/// The class for blocks of `layout`, if one fits it.
pub(crate) const fn class_of(layout: Layout) -> Option<Class> {
    if layout.align() > ALIGN {
        return None;
    }
    let mut i = 0;
    while i < CLASSES.len() {
        if layout.size() <= CLASSES[i] {
            return Some(Class(i as u8));
        }
        i += 1;
    }
    None
}

/// The layout of `class`'s blocks.
fn class_layout(class: Class) -> Layout {
    match Layout::from_size_align(CLASSES[class.0 as usize], ALIGN) {
        Ok(l) => l,
        Err(_) => unreachable!("the classes are valid layouts"),
    }
}

/// One class's cached blocks.
struct List {
    len: usize,
    blocks: [*mut u8; CACHE_MAX],
}

/// An M's cached blocks (invariant 2).
pub(crate) struct BlockCache {
    lists: [List; CLASSES.len()],
}

/// One class's spare blocks, and the fewest it held since the last [`scavenge`].
struct Spare {
    blocks: Vec<usize>,
    low: usize,
}

/// Blocks given back by Ms with full caches, per class.
static SPARE: Mutex<[Spare; CLASSES.len()]> =
    Mutex::new([const { Spare { blocks: Vec::new(), low: 0 } }; CLASSES.len()]);

/// How many blocks `SPARE` holds, per class, written under its lock: read without it, so that
/// an M whose cache is empty does not take the lock to find the list empty too (every spawn
/// while goroutines pile up).
static SPARE_LEN: [AtomicUsize; CLASSES.len()] = [const { AtomicUsize::new(0) }; CLASSES.len()];

impl BlockCache {
    pub(crate) const fn new() -> BlockCache {
        BlockCache { lists: [const { List { len: 0, blocks: [std::ptr::null_mut(); CACHE_MAX] } }; CLASSES.len()] }
    }

    /// A block of `class` from this cache, else from a batch taken from the spare list; None
    /// if both are empty (the caller then uses [`alloc_fresh`], after this borrow ends).
    pub(crate) fn alloc(&mut self, class: Class) -> Option<NonNull<u8>> {
        let l = &mut self.lists[class.0 as usize];
        // Relaxed: a hint; the lock orders the list itself. A block given back meanwhile is
        // found by a later call.
        if l.len == 0 && SPARE_LEN[class.0 as usize].load(Ordering::Relaxed) != 0 {
            let mut spare = SPARE.lock();
            let sp = &mut spare[class.0 as usize];
            let take = sp.blocks.len().min(BATCH);
            let at = sp.blocks.len() - take;
            for b in sp.blocks.drain(at..) {
                l.blocks[l.len] = b as *mut u8;
                l.len += 1;
            }
            sp.low = sp.low.min(at);
            SPARE_LEN[class.0 as usize].store(at, Ordering::Relaxed);
        }
        if l.len == 0 {
            return None;
        }
        l.len -= 1;
        // SAFETY: the first `len` slots hold blocks (invariant 1), non-null as allocated.
        Some(unsafe { NonNull::new_unchecked(l.blocks[l.len]) })
    }

    /// Takes `block` back into this cache. If the cache was full, half of it is returned, for
    /// the caller to drop after this borrow ends; dropping it moves the blocks to the spare list
    /// (whose growth may call the global allocator).
    ///
    /// # Safety
    ///
    /// `block` was returned by [`alloc`](Self::alloc) of some cache (or [`alloc_fresh`]) for
    /// `class`, and nothing uses it any more: it becomes the cache's (invariant 1).
    #[inline]
    pub(crate) unsafe fn free(&mut self, class: Class, block: NonNull<u8>) -> Option<Spill> {
        let l = &mut self.lists[class.0 as usize];
        let spill = if l.len == CACHE_MAX { Some(spill(class, l)) } else { None };
        l.blocks[l.len] = block.as_ptr();
        l.len += 1;
        spill
    }
}

/// Takes the top half of a full list.
#[cold]
fn spill(class: Class, l: &mut List) -> Spill {
    let mut s = Spill { class, blocks: [std::ptr::null_mut(); BATCH] };
    l.len -= BATCH;
    s.blocks.copy_from_slice(&l.blocks[l.len..l.len + BATCH]);
    s
}

/// Blocks a full cache passed on; dropping it puts them on the spare list.
#[must_use = "dropping the spill puts its blocks on the spare list; drop it after the cache's borrow ends"]
pub(crate) struct Spill {
    class: Class,
    blocks: [*mut u8; BATCH],
}

impl Drop for Spill {
    fn drop(&mut self) {
        let c = self.class.0 as usize;
        let mut spare = SPARE.lock();
        let sp = &mut spare[c];
        sp.blocks.extend(self.blocks.iter().map(|&b| b as usize));
        SPARE_LEN[c].store(sp.blocks.len(), Ordering::Relaxed);
    }
}

/// Gives back to the global allocator what each spare list did not need since the last call:
/// the part of its low-water mark above [`SPARE_BYTES`]. Called by sysmon, once a second.
pub(crate) fn scavenge() {
    for c in 0..CLASSES.len() {
        let keep = SPARE_BYTES / CLASSES[c];
        let mut excess = {
            let mut spare = SPARE.lock();
            let sp = &mut spare[c];
            let e = sp.low.saturating_sub(keep);
            sp.low = sp.blocks.len();
            e
        };
        while excess > 0 {
            let mut chunk = [0usize; SCAVENGE_CHUNK];
            let n = {
                let mut spare = SPARE.lock();
                let sp = &mut spare[c];
                let n = excess.min(SCAVENGE_CHUNK).min(sp.blocks.len());
                let at = sp.blocks.len() - n;
                chunk[..n].copy_from_slice(&sp.blocks[at..]);
                sp.blocks.truncate(at);
                sp.low = sp.low.min(at);
                SPARE_LEN[c].store(at, Ordering::Relaxed);
                if sp.blocks.capacity() > 4 * sp.blocks.len().max(keep) {
                    sp.blocks.shrink_to(2 * sp.blocks.len().max(keep));
                }
                n
            };
            if n == 0 {
                break;
            }
            for &b in &chunk[..n] {
                // SAFETY: taken off the spare list, which owned it (invariant 1).
                unsafe { std::alloc::dealloc(b as *mut u8, class_layout(Class(c as u8))) };
            }
            excess -= n;
        }
    }
}

/// A new block of `class` from the global allocator, for a thread without a cache.
pub(crate) fn alloc_fresh(class: Class) -> NonNull<u8> {
    let layout = class_layout(class);
    // SAFETY: the classes' layouts have non-zero sizes.
    let p = unsafe { std::alloc::alloc(layout) };
    NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(layout))
}

/// Returns a block of `class` to the global allocator, from a thread without a cache.
///
/// # Safety
///
/// `block` came from some cache's `alloc` (or [`alloc_fresh`]) for `class`, and nothing uses it
/// any more.
pub(crate) unsafe fn free_direct(class: Class, block: NonNull<u8>) {
    // SAFETY: every block of `class`, wherever it was cached, came from `alloc` with this
    // layout (invariant 1 and the caller's contract).
    unsafe { std::alloc::dealloc(block.as_ptr(), class_layout(class)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_fit_and_refuse() {
        assert_eq!(class_of(Layout::new::<[u8; 1]>()), Some(Class(0)));
        assert_eq!(class_of(Layout::new::<[u64; 8]>()), Some(Class(2)));
        assert_eq!(class_of(Layout::new::<[u64; 9]>()), Some(Class(3)));
        assert_eq!(class_of(Layout::new::<[u8; 512]>()), Some(Class(13)));
        assert_eq!(class_of(Layout::new::<[u8; 513]>()), None);
        assert_eq!(class_of(Layout::from_size_align(64, 32).unwrap()), None);
    }

    #[test]
    fn blocks_flow_from_a_freeing_cache_to_an_allocating_one() {
        let class = Class(10);
        let (mut a, mut b) = (Box::new(BlockCache::new()), Box::new(BlockCache::new()));
        // `b` frees what `a` allocated, past its cache's size: the overflow goes to the spare
        // list, from which `a` then allocates.
        let take = |c: &mut BlockCache| c.alloc(class).unwrap_or_else(|| alloc_fresh(class));
        let blocks: Vec<NonNull<u8>> = (0..3 * CACHE_MAX).map(|_| take(&mut a)).collect();
        let seen: std::collections::HashSet<usize> = blocks.iter().map(|p| p.as_ptr() as usize).collect();
        assert_eq!(seen.len(), blocks.len(), "a block was handed out twice");
        for (i, p) in blocks.iter().enumerate() {
            // SAFETY: each block is written within its class's size, then given back once.
            unsafe {
                p.as_ptr().write_bytes(i as u8, CLASSES[10]);
                drop(b.free(class, *p));
            }
        }
        assert!(b.lists[10].len <= CACHE_MAX);
        let again: Vec<NonNull<u8>> = (0..CACHE_MAX).map(|_| take(&mut a)).collect();
        let reused = again.iter().filter(|p| seen.contains(&(p.as_ptr() as usize))).count();
        assert!(reused > 0, "nothing came back through the spare list");
        for p in again {
            // SAFETY: allocated above, given back once.
            drop(unsafe { a.free(class, p) });
        }
        // Drain both caches into the global allocator.
        for c in [&mut a, &mut b] {
            let l = &mut c.lists[10];
            for &p in &l.blocks[..l.len] {
                // SAFETY: the cache owned it.
                unsafe { free_direct(class, NonNull::new(p).unwrap()) };
            }
            l.len = 0;
        }
    }

    #[test]
    fn scavenge_frees_what_a_list_did_not_need_since_the_last_call() {
        let class = Class(13);
        let keep = SPARE_BYTES / CLASSES[13];
        let mut c = Box::new(BlockCache::new());
        // Freed through a cache, the blocks pile up on the spare list.
        for _ in 0..keep + 3 * CACHE_MAX {
            // SAFETY: a fresh block of the class, given up at once.
            drop(unsafe { c.free(class, alloc_fresh(class)) });
        }
        let len = || SPARE.lock()[13].blocks.len();
        assert!(len() >= keep + CACHE_MAX, "spills did not reach the spare list: {}", len());
        // The first call only starts the period (sysmon may make it, in a test binary whose
        // runtime is running); the second frees down to the floor, since nothing was taken.
        scavenge();
        scavenge();
        assert_eq!(len(), keep);
        let l = &mut c.lists[13];
        for &p in &l.blocks[..l.len] {
            // SAFETY: the cache owned it.
            unsafe { free_direct(class, NonNull::new(p).unwrap()) };
        }
        l.len = 0;
    }
}
