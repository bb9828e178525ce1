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
//! per batch. Plain threads use the spare list directly, one block per lock; blocks bigger or
//! more aligned than the classes use the global allocator directly.
//!
//! Blocks are carved from chunks of [`CHUNK`] bytes, one class per chunk, taken from the global
//! allocator (so a heap profile sees them, charged to the spawn that needed each chunk). A
//! chunk is carved lazily, a batch at a time, so its pages are first touched by the tasks that
//! use them. One block at a time from `malloc`, a million live tasks grew the thread's `malloc`
//! arena a page at a time, one `mprotect` per page, and cost `malloc`'s own header per block.
//!
//! Chunks go back to the global allocator from sysmon ([`scavenge`], once a second), not from
//! the goroutine that ends: a burst of goroutines ending (a wave of sleepers waking, a fan-out
//! joined) would otherwise pay the freeing on the goroutines' own time. A spare list keeps
//! [`SPARE_BYTES`] per class; of what it did not need over the last period (the blocks below
//! its low-water mark) above that, every chunk whose blocks are all there is freed.
//!
//! Invariants:
//! 1. Every chunk was allocated by [`std::alloc::alloc`] with [`chunk_layout`], and is carved
//!    into blocks of one class only, at multiples of the class's size from its start; the
//!    chunk of a block is its address rounded down to [`CHUNK`].
//! 2. Every block is in exactly one place: handed out (a live task), in one M's cache, on its
//!    class's spare list, or in the uncarved rest of its class's newest chunk. A list owns its
//!    blocks (nobody else holds a pointer to them); a chunk is freed only when all its blocks
//!    are on the spare list, and they are taken off it first.
//! 3. A [`BlockCache`] is touched only by the thread of the M that holds it, and borrowed only
//!    for one call of its own, which never calls the global allocator: a user's allocator may
//!    run any code, and must not find the cache borrowed.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

/// The classes' block sizes, in bytes: 16 apart up to 128 (the common closures), so that a
/// task's block wastes at most 15 bytes (a million parked goroutines hold a million tasks).
const CLASSES: [usize; 14] = [32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 512];

/// The alignment every class guarantees.
const ALIGN: usize = 16;

/// The bytes of one chunk, and its alignment (invariant 1). Big enough that the global
/// allocator hands it out by `mmap` or one arena growth, not page by page.
const CHUNK: usize = 256 << 10;

/// Blocks one M keeps per class.
pub(crate) const CACHE_MAX: usize = 64;

/// Blocks moved per trip to the spare list.
const BATCH: usize = CACHE_MAX / 2;

/// Bytes a spare list keeps per class however little it is used: one chunk.
const SPARE_BYTES: usize = CHUNK;

/// A size class: an index into [`CLASSES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Class(u8);

impl Class {
    /// The size of this class's blocks.
    fn size(self) -> usize {
        CLASSES[self.0 as usize]
    }
}

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

/// The layout of every chunk.
fn chunk_layout() -> Layout {
    match Layout::from_size_align(CHUNK, CHUNK) {
        Ok(l) => l,
        Err(_) => unreachable!("the chunk size is a power of two"),
    }
}

/// One class's cached blocks.
struct List {
    len: usize,
    blocks: [*mut u8; CACHE_MAX],
}

/// An M's cached blocks (invariant 3).
pub(crate) struct BlockCache {
    lists: [List; CLASSES.len()],
}

/// One class's spare blocks, the fewest it held since the last [`scavenge`], and the uncarved
/// rest of the class's newest chunk (`next..end`, empty if both are 0).
struct Spare {
    blocks: Vec<usize>,
    low: usize,
    next: usize,
    end: usize,
}

impl Spare {
    /// One block: the most recently freed, else a new one carved from the newest chunk.
    fn take(&mut self, class: Class) -> Option<usize> {
        if let Some(b) = self.blocks.pop() {
            self.low = self.low.min(self.blocks.len());
            return Some(b);
        }
        if self.end - self.next >= class.size() {
            let b = self.next;
            self.next += class.size();
            return Some(b);
        }
        None
    }

    /// Blocks it can give without a new chunk.
    fn available(&self, class: Class) -> usize {
        self.blocks.len() + (self.end - self.next) / class.size()
    }
}

/// Blocks given back by Ms with full caches, per class, and the chunks being carved.
static SPARE: Mutex<[Spare; CLASSES.len()]> =
    Mutex::new([const { Spare { blocks: Vec::new(), low: 0, next: 0, end: 0 } }; CLASSES.len()]);

/// How many blocks `SPARE` can give per class ([`Spare::available`]), written under its lock:
/// read without it, so that an M whose cache is empty does not take the lock to find the list
/// empty too.
static SPARE_LEN: [AtomicUsize; CLASSES.len()] = [const { AtomicUsize::new(0) }; CLASSES.len()];

impl BlockCache {
    pub(crate) const fn new() -> BlockCache {
        BlockCache { lists: [const { List { len: 0, blocks: [std::ptr::null_mut(); CACHE_MAX] } }; CLASSES.len()] }
    }

    /// A block of `class` from this cache, else from a batch taken from the spare list (or
    /// carved from its chunk); None if both are empty (the caller then uses [`alloc_global`],
    /// after this borrow ends).
    pub(crate) fn alloc(&mut self, class: Class) -> Option<NonNull<u8>> {
        let l = &mut self.lists[class.0 as usize];
        // Relaxed: a hint; the lock orders the list itself. A block given back meanwhile is
        // found by a later call.
        if l.len == 0 && SPARE_LEN[class.0 as usize].load(Ordering::Relaxed) != 0 {
            let mut spare = SPARE.lock();
            let sp = &mut spare[class.0 as usize];
            while l.len < BATCH {
                match sp.take(class) {
                    Some(b) => {
                        l.blocks[l.len] = b as *mut u8;
                        l.len += 1;
                    }
                    None => break,
                }
            }
            SPARE_LEN[class.0 as usize].store(sp.available(class), Ordering::Relaxed);
        }
        if l.len == 0 {
            return None;
        }
        l.len -= 1;
        // SAFETY: the first `len` slots hold blocks (invariant 2), non-null as carved from a
        // chunk.
        Some(unsafe { NonNull::new_unchecked(l.blocks[l.len]) })
    }

    /// Takes `block` back into this cache. If the cache was full, half of it is returned, for
    /// the caller to drop after this borrow ends; dropping it moves the blocks to the spare list
    /// (whose growth may call the global allocator).
    ///
    /// # Safety
    ///
    /// `block` was returned by [`alloc`](Self::alloc) of some cache (or [`alloc_global`]) for
    /// `class`, and nothing uses it any more: it becomes the cache's (invariant 2).
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
        SPARE_LEN[c].store(sp.available(self.class), Ordering::Relaxed);
    }
}

/// Gives back to the global allocator what each spare list did not need since the last call:
/// of the blocks below its low-water mark, beyond [`SPARE_BYTES`], those whose chunks are
/// entirely there. A chunk with one block still in use (or in an M's cache) stays, as a span
/// does in Go. Called by sysmon, once a second.
pub(crate) fn scavenge() {
    for c in 0..CLASSES.len() {
        let class = Class(c as u8);
        let per_chunk = CHUNK / class.size();
        let keep = SPARE_BYTES / class.size();
        // The bottom of the list is what stayed put over the period (a stack's low-water
        // mark): take those beyond `keep` off it. The list's growth and the copy out may call
        // the global allocator under the lock, as a spill's growth does.
        let mut cold = {
            let mut spare = SPARE.lock();
            let sp = &mut spare[c];
            let e = sp.low.saturating_sub(keep);
            let cold: Vec<usize> = if e >= per_chunk { sp.blocks.drain(..e).collect() } else { Vec::new() };
            sp.low = sp.blocks.len();
            SPARE_LEN[c].store(sp.available(class), Ordering::Relaxed);
            cold
        };
        if cold.is_empty() {
            continue;
        }
        // Group by chunk: a chunk with all its blocks here is free.
        cold.sort_unstable();
        let mut kept = Vec::new();
        let mut i = 0;
        while i < cold.len() {
            let chunk = cold[i] & !(CHUNK - 1);
            let mut j = i;
            while j < cold.len() && cold[j] & !(CHUNK - 1) == chunk {
                j += 1;
            }
            if j - i == per_chunk {
                // SAFETY: every block of the chunk was on the spare list (each block is in one
                // place, and the group holds `per_chunk` distinct ones), and is now off it: the
                // chunk is nobody's (invariants 1 and 2).
                unsafe { std::alloc::dealloc(chunk as *mut u8, chunk_layout()) };
            } else {
                kept.extend_from_slice(&cold[i..j]);
            }
            i = j;
        }
        // What could not go back returns to the bottom, cold as it was.
        let mut spare = SPARE.lock();
        let sp = &mut spare[c];
        sp.blocks.splice(0..0, kept);
        sp.low = sp.blocks.len();
        if sp.blocks.capacity() > 4 * sp.blocks.len().max(keep) {
            sp.blocks.shrink_to(2 * sp.blocks.len().max(keep));
        }
        SPARE_LEN[c].store(sp.available(class), Ordering::Relaxed);
    }
}

/// A block of `class` from the spare list, else from a new chunk: for a thread without a cache,
/// or an M whose cache and spare list were empty.
pub(crate) fn alloc_global(class: Class) -> NonNull<u8> {
    let c = class.0 as usize;
    let taken = {
        let mut spare = SPARE.lock();
        let b = spare[c].take(class);
        SPARE_LEN[c].store(spare[c].available(class), Ordering::Relaxed);
        b
    };
    let b = match taken {
        Some(b) => b,
        None => {
            let layout = chunk_layout();
            // SAFETY: the layout's size is non-zero.
            let chunk = unsafe { std::alloc::alloc(layout) };
            if chunk.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            let chunk = chunk as usize;
            let mut spare = SPARE.lock();
            let sp = &mut spare[c];
            // Another thread may have started a chunk meanwhile: what is left of it is kept as
            // spare blocks, and the new one carved from now on.
            while sp.end - sp.next >= class.size() {
                sp.blocks.push(sp.next);
                sp.next += class.size();
            }
            sp.next = chunk + class.size();
            sp.end = chunk + CHUNK / class.size() * class.size();
            SPARE_LEN[c].store(sp.available(class), Ordering::Relaxed);
            chunk
        }
    };
    // SAFETY: blocks are carved from non-null chunks.
    unsafe { NonNull::new_unchecked(b as *mut u8) }
}

/// Puts a block of `class` on the spare list, from a thread without a cache.
///
/// # Safety
///
/// `block` came from some cache's `alloc` (or [`alloc_global`]) for `class`, and nothing uses it
/// any more: it becomes the spare list's (invariant 2).
pub(crate) unsafe fn free_global(class: Class, block: NonNull<u8>) {
    let c = class.0 as usize;
    let mut spare = SPARE.lock();
    spare[c].blocks.push(block.as_ptr() as usize);
    SPARE_LEN[c].store(spare[c].available(class), Ordering::Relaxed);
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
        let take = |c: &mut BlockCache| c.alloc(class).unwrap_or_else(|| alloc_global(class));
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
        // Drain both caches onto the spare list.
        for c in [&mut a, &mut b] {
            let l = &mut c.lists[10];
            for &p in &l.blocks[..l.len] {
                // SAFETY: the cache owned it.
                unsafe { free_global(class, NonNull::new(p).unwrap()) };
            }
            l.len = 0;
        }
    }

    #[test]
    fn scavenge_frees_whole_chunks_the_list_did_not_need_since_the_last_call() {
        // The largest class, which no task of the test binary uses.
        let class = Class(13);
        let per_chunk = CHUNK / CLASSES[13];
        let keep = SPARE_BYTES / CLASSES[13];
        let len = || SPARE.lock()[13].blocks.len();
        // Four chunks' worth, carved in order and freed in that order: the list's bottom is
        // whole chunks.
        let before = len();
        let blocks: Vec<NonNull<u8>> = (0..4 * per_chunk).map(|_| alloc_global(class)).collect();
        let seen: std::collections::HashSet<usize> = blocks.iter().map(|p| p.as_ptr() as usize).collect();
        assert_eq!(seen.len(), blocks.len(), "a block was handed out twice");
        for p in blocks {
            // SAFETY: each block is written within its class's size, then given back once.
            unsafe {
                p.as_ptr().write_bytes(7, CLASSES[13]);
                free_global(class, p);
            }
        }
        assert_eq!(len(), before + 4 * per_chunk);
        // The first call only starts the period (sysmon may make it, in a test binary whose
        // runtime is running); the second frees down to the floor, since nothing was taken.
        scavenge();
        scavenge();
        assert_eq!(len(), keep);
        // What is left is still usable.
        let p = alloc_global(class);
        // SAFETY: a block of the class, written within its size and given back.
        unsafe {
            p.as_ptr().write_bytes(9, CLASSES[13]);
            free_global(class, p);
        }
    }
}
