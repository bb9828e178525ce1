//! The virtual-memory calls stacks are made of: anonymous mappings, guards (`MADV_GUARD_INSTALL`
//! or `mprotect`), releasing pages, and residency checks (`mincore`).

use std::io;
use std::ptr;
use std::sync::atomic::{AtomicU8, Ordering};

use super::page_size;

/// `madvise` advice installing lightweight guard pages (Linux 6.13, `uapi/asm-generic/mman-common.h`;
/// not in the libc crate yet).
pub(crate) const MADV_GUARD_INSTALL: libc::c_int = 102;

/// Whether the kernel supports lightweight guard pages (`MADV_GUARD_INSTALL`, Linux 6.13+): guards
/// that cost no VMA, so every stack can be guarded. Probed once (one tiny mapping), then cached.
pub(crate) fn light_guards_supported() -> bool {
    // 0: not probed yet, 1: supported, 2: not supported.
    static LIGHT: AtomicU8 = AtomicU8::new(0);
    match LIGHT.load(Ordering::Relaxed) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    let page = page_size();
    let ok = match map_anon(2 * page) {
        Ok(p) => {
            let ok = install_light_guard(p, page).is_ok();
            // SAFETY: p..p+2 pages is the probe mapping created above, used by nothing else.
            unsafe { libc::munmap(p as *mut libc::c_void, 2 * page) };
            ok
        }
        Err(_) => false,
    };
    LIGHT.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
    ok
}

/// Bytes of `[addr, addr + len)` that are resident, by `mincore` (0 if the range is not mapped).
pub(crate) fn resident_bytes(addr: usize, len: usize) -> usize {
    let page = page_size();
    let mut vec = [0u8; 256];
    let mut off = 0;
    let mut resident = 0;
    while off < len {
        let chunk = (len - off).min(vec.len() * page);
        // SAFETY: addr + off is page-aligned; vec has room for chunk / page entries; mincore
        // only reads the page tables and writes vec.
        let r = unsafe { libc::mincore((addr + off) as *mut libc::c_void, chunk, vec.as_mut_ptr()) };
        if r != 0 {
            debug_assert!(false, "mincore({:#x}, {chunk}) failed: {}", addr + off, io::Error::last_os_error());
            return resident;
        }
        resident += vec[..chunk.div_ceil(page)].iter().filter(|b| **b & 1 != 0).count() * page;
        off += chunk;
    }
    resident
}

/// `madvise(MADV_DONTNEED)`: the range's pages go back to the kernel and read as zeros afterwards.
///
/// Bytes in the resident pages of `[addr, addr + len)` that hold anything but zeros, counted in
/// whole pages. Pages that are not resident are not read (a read would fault them in).
///
/// # Safety
/// `[addr, addr + len)` must be page-aligned, mapped readable, and not written during the call.
pub(crate) unsafe fn written_bytes(addr: usize, len: usize) -> usize {
    let page = page_size();
    let mut written = 0;
    let mut off = 0;
    while off < len {
        if resident_bytes(addr + off, page) != 0 {
            // SAFETY: the page is inside the caller's mapped, readable, unchanging range.
            let words = unsafe { std::slice::from_raw_parts((addr + off) as *const u64, page / 8) };
            if words.iter().any(|&w| w != 0) {
                written += page;
            }
        }
        off += page;
    }
    written
}

/// # Safety
/// `[addr, addr + len)` must be a page-aligned private anonymous range that nothing is using (no
/// live stack frames, no references into it).
pub(crate) unsafe fn release_pages(addr: usize, len: usize) {
    // SAFETY: the caller guarantees nobody uses the range; DONTNEED on private anonymous memory
    // only drops its contents.
    let r = unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) };
    debug_assert_eq!(r, 0, "madvise(DONTNEED) failed: {}", io::Error::last_os_error());
}

/// An anonymous read-write `MAP_NORESERVE` mapping with transparent huge pages off.
pub(crate) fn map_anon(len: usize) -> io::Result<usize> {
    // SAFETY: a fresh anonymous mapping at a kernel-chosen address aliases nothing.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: p..p+len is the mapping just created; the advice only changes paging policy.
    // Failure (kernel without THP) is harmless and ignored.
    unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
    Ok(p as usize)
}

/// Makes `[addr, addr + len)` inaccessible. Fails (typically `ENOMEM`) when the VMA split would
/// exceed `vm.max_map_count`; the range is then unchanged (still read-write).
pub(crate) fn protect_none(addr: usize, len: usize) -> io::Result<()> {
    // SAFETY: the caller passes a gap inside a mapping it owns that nothing uses.
    let r = unsafe { libc::mprotect(addr as *mut libc::c_void, len, libc::PROT_NONE) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Installs lightweight guard pages over `[addr, addr + len)` (no VMA split); any later access
/// raises SIGSEGV. Fails with `EINVAL` on kernels before 6.13.
pub(crate) fn install_light_guard(addr: usize, len: usize) -> io::Result<()> {
    // SAFETY: the caller passes a gap inside a private anonymous mapping it owns that nothing
    // uses; installing guards discards the (untouched) contents of the range.
    let r = unsafe { libc::madvise(addr as *mut libc::c_void, len, MADV_GUARD_INSTALL) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
