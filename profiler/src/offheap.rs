//! Memory for the heap profile's own tables, mapped from the kernel rather than taken from the
//! global allocator (Go keeps its profiling buckets off the heap the same way, in
//! `persistentalloc`).
//!
//! # Why
//!
//! The sampling allocator's records live as long as the program. Allocated from the global
//! allocator they would land between the user's blocks wherever a sample happened to fall, and a
//! long-lived block in the middle of a heap changes what the allocator can coalesce and give back
//! to the kernel: a program that builds and frees its data in rounds would see its heap trimmed
//! and grown again (and page-faulted in again) more or less often than without the profiler,
//! depending on where the samples fell, which costs more than the sampling itself. Mapped memory
//! keeps the user's heap laid out as if no profiler were there.
//!
//! # How
//!
//! [`Pages`] is an [`Allocator`] for a handful of growable buffers (the records, the stacks, the
//! hash tables): each allocation is its own anonymous mapping, rounded up to whole pages, grown
//! with `mremap` (no copy) and unmapped when freed. That suits few, large, doubling buffers and
//! nothing else; small objects never go through it. A mapping that cannot be made
//! (`vm.max_map_count`, memory) is an [`AllocError`], which the table turns into a dropped sample
//! rather than an abort.

use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator, Layout};

const PAGE: usize = 4096;

/// Whole pages for `size` bytes (at least one).
fn pages(size: usize) -> Option<usize> {
    size.max(1).checked_add(PAGE - 1).map(|n| n & !(PAGE - 1))
}

#[cfg(test)]
thread_local! {
    /// Tests: while set, this thread's allocations and growths fail as an exhausted
    /// `vm.max_map_count` would make them.
    pub(crate) static REFUSE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a test has this thread's mappings fail.
#[inline]
fn refused() -> bool {
    #[cfg(test)]
    return REFUSE.with(|r| r.get());
    #[cfg(not(test))]
    false
}

/// Anonymous private mappings, one per allocation (module docs).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pages;

// SAFETY: every block returned is a fresh mapping of at least the layout's size, page-aligned
// (which satisfies any alignment up to a page; larger ones are refused), readable and writable,
// and stays valid until `deallocate` or a `grow` that returns a new block unmaps it; `Pages` is a
// stateless handle, so a block may be freed through any copy of it.
unsafe impl Allocator for Pages {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let len = pages(layout.size()).ok_or(AllocError)?;
        if layout.align() > PAGE || refused() {
            return Err(AllocError);
        }
        // SAFETY: a new anonymous private mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(AllocError);
        }
        let p = NonNull::new(p.cast::<u8>()).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, len))
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        // Fresh anonymous mappings read as zeroes.
        self.allocate(layout)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        let len = pages(layout.size()).expect("the layout was allocated, so its pages fit");
        // SAFETY: the caller hands back a block `allocate` or `grow` mapped with this layout's
        // size, so `len` bytes from `ptr` are exactly that mapping, which nothing uses any more.
        unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
    }

    unsafe fn grow(&self, ptr: NonNull<u8>, old: Layout, new: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let (from, to) = (pages(old.size()).ok_or(AllocError)?, pages(new.size()).ok_or(AllocError)?);
        if new.align() > PAGE {
            return Err(AllocError);
        }
        if to == from {
            return Ok(NonNull::slice_from_raw_parts(ptr, from));
        }
        if refused() {
            return Err(AllocError);
        }
        // SAFETY: `ptr` is a live mapping of `from` bytes (the caller's contract for `grow`);
        // `mremap` moves or extends it as a whole, keeping its contents, and on failure leaves it
        // as it was, which is what `grow`'s failure must do.
        let p = unsafe { libc::mremap(ptr.as_ptr().cast(), from, to, libc::MREMAP_MAYMOVE) };
        if p == libc::MAP_FAILED {
            return Err(AllocError);
        }
        let p = NonNull::new(p.cast::<u8>()).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_in_place_or_moves_keeping_contents() {
        let mut v: allocator_api2::vec::Vec<u64, Pages> = allocator_api2::vec::Vec::new_in(Pages);
        for i in 0..100_000u64 {
            v.push(i * 3);
        }
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
        let mut m: hashbrown::HashMap<u64, u64, std::hash::BuildHasherDefault<std::hash::DefaultHasher>, Pages> =
            hashbrown::HashMap::with_hasher_in(Default::default(), Pages);
        for i in 0..10_000u64 {
            m.insert(i, i + 1);
        }
        assert!((0..10_000u64).all(|i| m[&i] == i + 1));
    }

    #[test]
    fn refuses_what_it_cannot_map() {
        // 128 TiB: the whole of x86-64's default user address space, which no overcommit policy
        // maps; a page count that overflows is refused before asking.
        let huge = Layout::from_size_align(1 << 47, 8).unwrap();
        assert!(Pages.allocate(huge).is_err());
        let overflow = Layout::from_size_align(isize::MAX as usize - PAGE, 8).unwrap();
        assert!(Pages.allocate(overflow).is_err());
        let aligned = Layout::from_size_align(64, 2 * PAGE).unwrap();
        assert!(Pages.allocate(aligned).is_err());
    }
}
