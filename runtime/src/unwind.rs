//! Stack unwinding for profiles, in any build.
//!
//! gort is a library: it is compiled with whatever flags the user's build has, and the default
//! (release or debug) has no forced frame pointers. So the unwinder is chosen by what the build
//! *is*, never by whether a chain "looks valid" (`rbp` without frame pointers is an ordinary
//! register that often holds a plausible stack address; a frame-pointer walk then returns a
//! believable wrong stack):
//!
//! * **Frame pointers** when the build forces them (`-C force-frame-pointers=yes`; the build
//!   script reads the flags Cargo compiles this crate with and sets `cfg(gort_frame_pointers)`):
//!   follow the `[saved fp][return address]` chain.
//! * **DWARF CFI** everywhere else: `.eh_frame` through its `.eh_frame_hdr` binary-search table,
//!   with `framehop`. Every Rust and C function on Linux has CFI (Rust needs it for unwinding
//!   panics), and corosensei's trampolines carry it too.
//!
//! # Invariants
//!
//! * **Nothing is dereferenced unless bounds-checked.** Every read of a stack word goes through a
//!   check against the `[lo, hi)` the caller vouches for (the running goroutine's or thread's
//!   stack, or a parked goroutine's stack held still by the scan bit) and must be word-aligned. A
//!   bad chain or bad CFI truncates the stack; it never faults. The unwind tables themselves are
//!   copies owned here (see below), so no read reaches a module that may have been unmapped.
//! * **Built before use.** The CFI unwinder and its module list are built once, by [`init`],
//!   which the scheduler calls before it starts its first M (and a walk on a plain thread calls
//!   if nobody has yet). While one thread builds, a walk elsewhere gets an empty stack rather than
//!   waiting. Modules loaded later (`dlopen`) are not known: a walk ends at their first frame.
//! * **Walks allocate nothing and take no lock.** Unwinding state (framehop's `Cache`, with
//!   preallocated fixed-size storage for CFI evaluation) lives in a pool of slots claimed with one
//!   atomic swap each; a walk that finds every slot busy builds a private cache (allocating),
//!   which only code that may allocate ever reaches ([`WalkCtx::MayAllocate`]).
//! * **Park sites record what an unwind starts from**: the pc, sp and fp of a frame that stays
//!   live while the goroutine is parked ([`ParkRegs`](crate::g::ParkRegs), recorded inside
//!   `park::suspend`). A CFI walk from there reads only that frame and its callers' frames, which
//!   are frozen until the goroutine is resumed.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering};

/// What a stack walk produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk {
    /// Addresses written to the buffer, leaf first.
    pub len: usize,
    /// The stack went on past the buffer's end.
    pub truncated: bool,
}

/// How this build of gort walks stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnwindMode {
    /// The build forces frame pointers: walk the frame-pointer chain.
    FramePointers,
    /// Any other build: DWARF call-frame information from `.eh_frame`.
    DwarfCfi,
}

impl UnwindMode {
    /// `"frame-pointers"` or `"dwarf-cfi"`.
    pub fn as_str(self) -> &'static str {
        match self {
            UnwindMode::FramePointers => "frame-pointers",
            UnwindMode::DwarfCfi => "dwarf-cfi",
        }
    }
}

/// The unwinder this build uses (chosen by its compile flags).
pub const fn mode() -> UnwindMode {
    if cfg!(gort_frame_pointers) || cfg!(not(any(target_arch = "x86_64", target_arch = "aarch64"))) {
        UnwindMode::FramePointers
    } else {
        UnwindMode::DwarfCfi
    }
}

/// Registers an unwind starts from: an instruction address inside a live frame, and that
/// frame's stack and frame pointers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    /// An instruction address in the frame (not a return address).
    pub pc: usize,
    /// The stack pointer at `pc`.
    pub sp: usize,
    /// The frame pointer register at `pc` (an ordinary register in a build without frame
    /// pointers; CFI may still say a caller saved something in it).
    pub fp: usize,
}

impl Regs {
    /// The registers at this point of the function it is inlined into.
    #[inline(always)]
    pub fn here() -> Regs {
        let (pc, sp, fp): (usize, usize, usize);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: reads three registers (rip by a `lea`); no memory access, no side effects.
        unsafe {
            std::arch::asm!(
                "lea {0}, [rip]",
                "mov {1}, rsp",
                "mov {2}, rbp",
                out(reg) pc, out(reg) sp, out(reg) fp,
                options(nomem, nostack, preserves_flags)
            )
        };
        #[cfg(target_arch = "aarch64")]
        // SAFETY: reads three registers (pc by an `adr`); no memory access, no side effects.
        unsafe {
            std::arch::asm!(
                "adr {0}, .",
                "mov {1}, sp",
                "mov {2}, x29",
                out(reg) pc, out(reg) sp, out(reg) fp,
                options(nomem, nostack, preserves_flags)
            )
        };
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            let x = 0u8;
            (pc, sp, fp) = (0, &x as *const u8 as usize, 0);
        }
        Regs { pc, sp, fp }
    }
}

/// An instruction address inside the function this is inlined into (Go's `gopc` for spawns:
/// `#[inline(always)]` entry points call it so the address lands in their caller).
#[inline(always)]
pub fn caller_pc() -> usize {
    Regs::here().pc
}

/// Where a walk runs, which decides whether it may allocate when every preallocated unwinding
/// cache is busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkCtx {
    /// Ordinary code (the heap sampler runs with its reentrancy guard set).
    MayAllocate,
    /// A signal handler or similar: a walk that finds no free cache returns an empty stack.
    NoAllocate,
}

/// Walks a stack from `regs`, writing code addresses leaf first into `buf`: `regs.pc` first,
/// then the return address of each caller. The first `skip` addresses are dropped.
///
/// # Safety
///
/// `[lo, hi)` (`bounds`) must be mapped, readable memory holding the stack that `regs` were
/// taken on, and every frame from `regs.sp` up must stay unchanged during the walk (the caller's
/// own stack above the walking frame, or a goroutine held still by the runtime).
pub unsafe fn walk(regs: Regs, bounds: (usize, usize), skip: usize, buf: &mut [usize], ctx: WalkCtx) -> Walk {
    match mode() {
        // SAFETY: the caller's contract, passed on.
        UnwindMode::FramePointers => unsafe { walk_fp_skip(regs.pc, regs.fp, bounds, skip, buf) },
        // SAFETY: the caller's contract, passed on.
        UnwindMode::DwarfCfi => unsafe { cfi::walk(regs, bounds, skip, buf, ctx) },
    }
}

/// Walks the caller's stack into `buf` (leaf first): the first address returns into the
/// function that called `capture`, and `skip` more are dropped. Bounded by the running
/// goroutine's or thread's stack.
#[inline(never)]
pub fn capture(skip: usize, buf: &mut [usize]) -> Walk {
    let regs = Regs::here();
    let bounds = crate::proc::current_stack_bounds();
    if bounds.1 == 0 {
        return Walk { len: 0, truncated: false };
    }
    // SAFETY: the bounds are the running stack's; every frame from ours upwards is live and does
    // not change while we (its leaf) run. `regs.pc` is in this frame: dropped with the skip.
    unsafe { walk(regs, bounds, skip + 1, buf, WalkCtx::MayAllocate) }
}

/// [`capture`], returning how many addresses were written. Inlined, so its caller is the
/// function [`capture`] returns into (a tail call through a frame of its own would drop one).
#[inline(always)]
pub fn capture_stack(skip: usize, buf: &mut [usize]) -> usize {
    capture(skip, buf).len
}

/// Builds the CFI unwinder now if this build uses it (idempotent; the scheduler calls it before
/// its first M starts). Allocates; never call it from a signal handler.
pub fn init() {
    if mode() == UnwindMode::DwarfCfi {
        cfi::init();
    }
}

// ---------------------------------------------------------------------------------------------
// Frame pointers
// ---------------------------------------------------------------------------------------------
//
// Each frame starts with `[saved fp][return address]` at its frame pointer. A walk follows that
// chain and trusts nothing it reads:
// - a frame pointer must be word-aligned and the two words at it inside `[lo, hi)`;
// - the chain must strictly increase (callers sit higher): a loop or a frame built without frame
//   pointers ends the walk instead of wandering;
// - a zero return address ends it (corosensei and the thread entry end their chains so);
// - at most `buf.len()` frames are kept; more mark the walk truncated.
// corosensei links a coroutine's first frame to the stack that resumed it; that frame lies
// outside the goroutine's bounds, so a walk stops at the goroutine's own first frame.

/// Walks the frame-pointer chain starting at `fp` within `bounds = (lo, hi)`, writing return
/// addresses leaf first into `buf`. If `pc` is non-zero it is written first (an address in the
/// frame whose frame pointer is `fp`, e.g. a parked goroutine's park site).
///
/// # Safety
///
/// `[lo, hi)` must be mapped, readable memory that does not change during the walk.
pub unsafe fn walk_fp(pc: usize, fp: usize, bounds: (usize, usize), buf: &mut [usize]) -> Walk {
    // SAFETY: the caller's contract, passed on.
    unsafe { walk_fp_skip(pc, fp, bounds, 0, buf) }
}

/// # Safety
///
/// As for [`walk_fp`].
unsafe fn walk_fp_skip(pc: usize, mut fp: usize, bounds: (usize, usize), mut skip: usize, buf: &mut [usize]) -> Walk {
    const W: usize = std::mem::size_of::<usize>();
    let (lo, hi) = bounds;
    let mut n = 0;
    let mut push = |a: usize, n: &mut usize, skip: &mut usize| -> bool {
        if *skip > 0 {
            *skip -= 1;
            return true;
        }
        if *n == buf.len() {
            return false;
        }
        buf[*n] = a;
        *n += 1;
        true
    };
    if pc != 0 && !push(pc, &mut n, &mut skip) {
        return Walk { len: n, truncated: true };
    }
    loop {
        if !fp.is_multiple_of(W) || fp < lo || fp.checked_add(2 * W).is_none_or(|end| end > hi) {
            break;
        }
        // SAFETY: [fp, fp + 2W) is aligned and inside [lo, hi), which the caller guarantees is
        // mapped and stable.
        let (next, ret) =
            unsafe { (std::ptr::read_volatile(fp as *const usize), std::ptr::read_volatile((fp + W) as *const usize)) };
        if ret == 0 {
            break;
        }
        if !push(ret, &mut n, &mut skip) {
            return Walk { len: n, truncated: true };
        }
        if next <= fp {
            break;
        }
        fp = next;
    }
    Walk { len: n, truncated: false }
}

// ---------------------------------------------------------------------------------------------
// DWARF CFI
// ---------------------------------------------------------------------------------------------

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod cfi {
    use super::*;
    use std::cell::UnsafeCell;

    use framehop::{
        CacheNative, ExplicitModuleSectionInfo, Module, MustNotAllocateDuringUnwind, UnwindRegsNative, Unwinder as _,
        UnwinderNative,
    };

    type Unw = UnwinderNative<Vec<u8>, MustNotAllocateDuringUnwind>;
    type Cache = CacheNative<MustNotAllocateDuringUnwind>;

    /// Caches in the pool: more than the walks that run at once in practice (the heap sampler on
    /// each thread that allocates, a profile being written, block/mutex events).
    const CACHES: usize = 8;

    struct Slot {
        busy: AtomicBool,
        cache: UnsafeCell<Cache>,
    }

    struct Cfi {
        unwinder: Unw,
        slots: Box<[Slot]>,
    }

    // SAFETY: the unwinder is immutable once published; a slot's cache is touched only by the
    // one thread that swapped its `busy` flag from false to true, until it stores false again.
    unsafe impl Sync for Cfi {}

    const UNBUILT: u8 = 0;
    const BUILDING: u8 = 1;
    const BUILT: u8 = 2;
    static STATE: AtomicU8 = AtomicU8::new(UNBUILT);
    static CFI: AtomicPtr<Cfi> = AtomicPtr::new(std::ptr::null_mut());

    pub(super) fn init() {
        if STATE.compare_exchange(UNBUILT, BUILDING, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return;
        }
        let mut unwinder = Unw::new();
        for m in super::modules::loaded() {
            unwinder.add_module(Module::new(
                m.name,
                m.text.start as u64..m.text.end as u64,
                m.bias as u64,
                ExplicitModuleSectionInfo {
                    base_svma: 0,
                    eh_frame_svma: Some(m.eh_frame_svma.clone()),
                    eh_frame: Some(m.eh_frame),
                    eh_frame_hdr_svma: Some(m.eh_frame_hdr_svma.clone()),
                    eh_frame_hdr: Some(m.eh_frame_hdr),
                    ..Default::default()
                },
            ));
        }
        let slots = (0..CACHES).map(|_| Slot { busy: AtomicBool::new(false), cache: UnsafeCell::new(Cache::new_in()) });
        let cfi = Box::new(Cfi { unwinder, slots: slots.collect() });
        // Release: pairs with the Acquire load in `get`, publishing the built unwinder.
        CFI.store(Box::into_raw(cfi), Ordering::Release);
        STATE.store(BUILT, Ordering::Release);
    }

    fn get(ctx: WalkCtx) -> Option<&'static Cfi> {
        // Acquire: pairs with init's Release store.
        let p = CFI.load(Ordering::Acquire);
        if p.is_null() {
            if ctx == WalkCtx::NoAllocate || STATE.load(Ordering::Relaxed) != UNBUILT {
                return None;
            }
            init();
            return get(WalkCtx::NoAllocate);
        }
        // SAFETY: published once by init and never freed.
        Some(unsafe { &*p })
    }

    /// # Safety
    ///
    /// As for [`super::walk`].
    pub(super) unsafe fn walk(
        regs: Regs,
        bounds: (usize, usize),
        skip: usize,
        buf: &mut [usize],
        ctx: WalkCtx,
    ) -> Walk {
        let Some(cfi) = get(ctx) else { return Walk { len: 0, truncated: false } };
        for slot in cfi.slots.iter() {
            // Acquire: pairs with the Release store below by the slot's previous user, so its
            // writes to the cache happen before ours.
            if !slot.busy.swap(true, Ordering::Acquire) {
                // SAFETY: the swap made this thread the slot's only user until the store below.
                let cache = unsafe { &mut *slot.cache.get() };
                // SAFETY: the caller's contract, passed on.
                let w = unsafe { walk_with(&cfi.unwinder, cache, regs, bounds, skip, buf) };
                slot.busy.store(false, Ordering::Release);
                return w;
            }
        }
        if ctx == WalkCtx::NoAllocate {
            return Walk { len: 0, truncated: false };
        }
        let mut cache = Box::new(Cache::new_in());
        // SAFETY: the caller's contract, passed on.
        unsafe { walk_with(&cfi.unwinder, &mut cache, regs, bounds, skip, buf) }
    }

    /// # Safety
    ///
    /// As for [`super::walk`].
    unsafe fn walk_with(
        unwinder: &Unw,
        cache: &mut Cache,
        regs: Regs,
        bounds: (usize, usize),
        mut skip: usize,
        buf: &mut [usize],
    ) -> Walk {
        const W: usize = std::mem::size_of::<usize>();
        let (lo, hi) = bounds;
        let mut read = |addr: u64| -> Result<u64, ()> {
            let a = usize::try_from(addr).map_err(|_| ())?;
            if !a.is_multiple_of(W) || a < lo || a.checked_add(W).is_none_or(|end| end > hi) {
                return Err(());
            }
            // SAFETY: [a, a + W) is aligned and inside [lo, hi), which the caller guarantees is
            // mapped, readable and unchanging during the walk.
            Ok(unsafe { std::ptr::read_volatile(a as *const usize) } as u64)
        };
        #[cfg(target_arch = "x86_64")]
        let start = UnwindRegsNative::new(regs.pc as u64, regs.sp as u64, regs.fp as u64);
        // aarch64's unwind starts from (lr, sp, fp); the lr of a mid-body pc is not known, and
        // CFI never needs it before the first frame's rule says where the caller's was saved.
        #[cfg(target_arch = "aarch64")]
        let start = UnwindRegsNative::new(0, regs.sp as u64, regs.fp as u64);
        let mut frames = unwinder.iter_frames(regs.pc as u64, start, cache, &mut read);
        let mut n = 0;
        // Each step either ends the walk or yields one address; the buffer bounds the steps.
        while let Ok(Some(f)) = frames.next() {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            if n == buf.len() {
                return Walk { len: n, truncated: true };
            }
            buf[n] = f.address() as usize;
            n += 1;
        }
        Walk { len: n, truncated: false }
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod cfi {
    use super::*;

    pub(super) fn init() {}

    /// # Safety
    ///
    /// Nothing: no walk happens on this architecture.
    pub(super) unsafe fn walk(_: Regs, _: (usize, usize), _: usize, _: &mut [usize], _: WalkCtx) -> Walk {
        Walk { len: 0, truncated: false }
    }
}

// ---------------------------------------------------------------------------------------------
// Loaded modules and their unwind tables
// ---------------------------------------------------------------------------------------------

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod modules {
    use std::ffi::CStr;
    use std::ops::Range;

    const PT_LOAD: u32 = 1;
    const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
    const PF_X: u32 = 1;

    /// One loaded ELF object with its unwind tables (copied, so no later `dlclose` can unmap
    /// what a walk reads).
    pub(super) struct Loaded {
        pub(super) name: String,
        /// Load bias: runtime address minus the address the file states.
        pub(super) bias: usize,
        /// Runtime range of its executable segments.
        pub(super) text: Range<usize>,
        pub(super) eh_frame_hdr_svma: Range<u64>,
        pub(super) eh_frame_hdr: Vec<u8>,
        pub(super) eh_frame_svma: Range<u64>,
        pub(super) eh_frame: Vec<u8>,
    }

    /// Every object loaded now that has an `.eh_frame_hdr`.
    pub(super) fn loaded() -> Vec<Loaded> {
        let mut out: Vec<Loaded> = Vec::new();
        unsafe extern "C" fn cb(info: *mut libc::dl_phdr_info, _size: libc::size_t, data: *mut libc::c_void) -> i32 {
            // SAFETY: dl_iterate_phdr passes a valid info for the duration of the call, and
            // `data` is the `out` vector passed below, used by this thread only.
            let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<Loaded>)) };
            // SAFETY: the loader's program headers for this object, `dlpi_phnum` of them,
            // mapped while the object is loaded (it cannot be unloaded during the callback).
            let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
            // SAFETY: as above; reads happen during the callback only and are copied out.
            if let Some(m) = unsafe { describe(info, phdrs) } {
                out.push(m);
            }
            0
        }
        // SAFETY: cb matches dl_iterate_phdr's callback type and only touches `out`.
        unsafe { libc::dl_iterate_phdr(Some(cb), &mut out as *mut Vec<Loaded> as *mut libc::c_void) };
        out
    }

    /// # Safety
    ///
    /// `info` and `phdrs` describe an object that stays loaded during the call.
    unsafe fn describe(info: &libc::dl_phdr_info, phdrs: &[libc::Elf64_Phdr]) -> Option<Loaded> {
        let bias = info.dlpi_addr as usize;
        let (mut lo, mut hi) = (usize::MAX, 0usize);
        let mut hdr: Option<&libc::Elf64_Phdr> = None;
        for ph in phdrs {
            if ph.p_type == PT_LOAD && ph.p_flags & PF_X != 0 {
                lo = lo.min(bias + ph.p_vaddr as usize);
                hi = hi.max(bias + (ph.p_vaddr + ph.p_memsz) as usize);
            } else if ph.p_type == PT_GNU_EH_FRAME {
                hdr = Some(ph);
            }
        }
        let hdr = hdr?;
        if lo >= hi {
            return None;
        }
        let hdr_addr = bias + hdr.p_vaddr as usize;
        // The segment the table lies in bounds every read of it.
        let in_segment = |addr: usize| {
            phdrs.iter().filter(|p| p.p_type == PT_LOAD).find_map(|p| {
                let s = bias + p.p_vaddr as usize;
                let e = s + p.p_memsz as usize;
                (s..e).contains(&addr).then_some(e)
            })
        };
        let hdr_seg_end = in_segment(hdr_addr)?;
        let hdr_len = (hdr.p_memsz as usize).min(hdr_seg_end - hdr_addr);
        // SAFETY: [hdr_addr, hdr_addr + hdr_len) lies inside a loaded PT_LOAD segment.
        let hdr_bytes = unsafe { std::slice::from_raw_parts(hdr_addr as *const u8, hdr_len) };
        let eh_frame_addr = eh_frame_ptr(hdr_bytes, hdr_addr)?;
        let seg_end = in_segment(eh_frame_addr)?;
        // SAFETY: [eh_frame_addr, seg_end) lies inside a loaded PT_LOAD segment.
        let seg = unsafe { std::slice::from_raw_parts(eh_frame_addr as *const u8, seg_end - eh_frame_addr) };
        let eh_frame = &seg[..eh_frame_len(seg)];
        let name = if info.dlpi_name.is_null() {
            String::new()
        } else {
            // SAFETY: the loader's NUL-terminated name for this object.
            unsafe { CStr::from_ptr(info.dlpi_name) }.to_string_lossy().into_owned()
        };
        let svma = |a: usize, len: usize| (a - bias) as u64..(a - bias + len) as u64;
        Some(Loaded {
            name,
            bias,
            text: lo..hi,
            eh_frame_hdr_svma: svma(hdr_addr, hdr_bytes.len()),
            eh_frame_hdr: hdr_bytes.to_vec(),
            eh_frame_svma: svma(eh_frame_addr, eh_frame.len()),
            eh_frame: eh_frame.to_vec(),
        })
    }

    /// The runtime address of `.eh_frame`, from the header's `eh_frame_ptr` (LSB: version 1,
    /// then the pointer's encoding, two more encodings, then the pointer).
    fn eh_frame_ptr(hdr: &[u8], hdr_addr: usize) -> Option<usize> {
        if hdr.len() < 4 || hdr[0] != 1 {
            return None;
        }
        let enc = hdr[1];
        let field = &hdr[4..];
        let raw: i64 = match enc & 0x0f {
            0x00 | 0x04 | 0x0c => i64::from_le_bytes(field.get(..8)?.try_into().ok()?),
            0x03 => u32::from_le_bytes(field.get(..4)?.try_into().ok()?) as i64,
            0x0b => i32::from_le_bytes(field.get(..4)?.try_into().ok()?) as i64,
            0x02 => u16::from_le_bytes(field.get(..2)?.try_into().ok()?) as i64,
            0x0a => i16::from_le_bytes(field.get(..2)?.try_into().ok()?) as i64,
            _ => return None,
        };
        let base = match enc & 0x70 {
            0x00 => 0,
            0x10 => hdr_addr as i64 + 4, // pc-relative: relative to the field itself
            0x30 => hdr_addr as i64,     // data-relative: relative to the header
            _ => return None,
        };
        usize::try_from(base.wrapping_add(raw)).ok()
    }

    /// The length of the `.eh_frame` records at the start of `seg`: CIEs and FDEs up to the zero
    /// terminator (or the segment's end).
    fn eh_frame_len(seg: &[u8]) -> usize {
        let mut off = 0usize;
        while let Some(b) = seg.get(off..off + 4) {
            let len = u32::from_le_bytes(b.try_into().unwrap()) as usize;
            if len == 0 {
                return off + 4;
            }
            let rec = if len == 0xffff_ffff {
                match seg.get(off + 4..off + 12) {
                    Some(b) => 12 + u64::from_le_bytes(b.try_into().unwrap()) as usize,
                    None => return off,
                }
            } else {
                4 + len
            };
            match off.checked_add(rec) {
                Some(next) if next <= seg.len() => off = next,
                _ => return off,
            }
        }
        off
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn eh_frame_len_stops_at_terminator() {
            let mut v = Vec::new();
            v.extend_from_slice(&8u32.to_le_bytes());
            v.extend_from_slice(&[1; 8]);
            v.extend_from_slice(&4u32.to_le_bytes());
            v.extend_from_slice(&[2; 4]);
            v.extend_from_slice(&0u32.to_le_bytes());
            v.extend_from_slice(&[9; 32]);
            assert_eq!(eh_frame_len(&v), 12 + 8 + 4);
            // A record running past the end is not counted.
            assert_eq!(eh_frame_len(&v[..10]), 0);
        }

        #[test]
        fn eh_frame_ptr_encodings() {
            // pcrel|sdata4: -0x10 from the field at hdr+4.
            let hdr = [1, 0x1b, 0x03, 0x3b, 0xf0, 0xff, 0xff, 0xff];
            assert_eq!(eh_frame_ptr(&hdr, 0x1000), Some(0x1000 + 4 - 0x10));
            let hdr = [1, 0x03, 0, 0, 0x00, 0x20, 0, 0];
            assert_eq!(eh_frame_ptr(&hdr, 0x1000), Some(0x2000));
            assert_eq!(eh_frame_ptr(&[2, 0x03, 0, 0, 0, 0, 0, 0], 0), None);
        }

        #[test]
        fn finds_this_binary() {
            let here = finds_this_binary as *const () as usize;
            let mods = loaded();
            let m = mods.iter().find(|m| m.text.contains(&here)).expect("the test binary is a module");
            assert!(m.eh_frame.len() > 1000, "{}", m.eh_frame.len());
            assert_eq!(m.eh_frame_hdr[0], 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = std::mem::size_of::<usize>();

    #[test]
    fn fake_chain() {
        // Three frames in a fake stack: fp chain 0 -> 4 -> 8 (word indices), then a zero ret.
        let mut stack = [0usize; 16];
        let p = stack.as_mut_ptr();
        let base = p as usize;
        // SAFETY: every index is below 16; all accesses go through `p`.
        let set = |i: usize, v: usize| unsafe { p.add(i).write(v) };
        set(0, base + 4 * W);
        set(1, 0x1111);
        set(4, base + 8 * W);
        set(5, 0x2222);
        set(8, base + 12 * W);
        set(9, 0x3333);
        let bounds = (base, base + 16 * W);
        let mut buf = [0usize; 8];
        // SAFETY: the array is live and not written during the walk.
        let w = unsafe { walk_fp(0x9999, base, bounds, &mut buf) };
        assert_eq!(w, Walk { len: 4, truncated: false });
        assert_eq!(&buf[..4], &[0x9999, 0x1111, 0x2222, 0x3333]);
        // Truncation.
        let mut small = [0usize; 2];
        // SAFETY: as above.
        let w = unsafe { walk_fp(0, base, bounds, &mut small) };
        assert_eq!(w, Walk { len: 2, truncated: true });
        // Unaligned, out of range, non-increasing.
        // SAFETY: as above.
        assert_eq!(unsafe { walk_fp(0, base + 1, bounds, &mut buf) }.len, 0);
        // SAFETY: as above.
        assert_eq!(unsafe { walk_fp(0, base + 15 * W, bounds, &mut buf) }.len, 0);
        set(4, base); // loops back
                      // SAFETY: as above.
        assert_eq!(unsafe { walk_fp(0, base, bounds, &mut buf) }.len, 2);
        set(4, base + 64 * W); // points outside: stops after frame 2
                               // SAFETY: as above.
        assert_eq!(unsafe { walk_fp(0, base, bounds, &mut buf) }.len, 2);
        let _ = &mut stack;
    }

    #[inline(never)]
    fn leaf(buf: &mut [usize]) -> Walk {
        let w = capture(0, buf);
        std::hint::black_box(w) // not a tail call: leaf keeps its frame
    }

    #[inline(never)]
    fn middle(buf: &mut [usize]) -> Walk {
        let w = leaf(buf);
        std::hint::black_box(w)
    }

    #[test]
    fn capture_sees_its_callers() {
        init();
        let mut buf = [0usize; 64];
        let w = middle(&mut buf);
        assert!(w.len >= 3, "{w:?}");
        // The first address returns into `leaf`, the next into `middle`: both are code, in
        // increasing caller order, and none is zero.
        let f = |a: usize| a as *const ();
        assert!(buf[..w.len].iter().all(|&a| a != 0), "{:?}", &buf[..w.len]);
        let leaf_at = leaf as *const () as usize;
        let middle_at = middle as *const () as usize;
        assert!(buf[0] > leaf_at && buf[0] < leaf_at + 512, "{:?} vs leaf {:?}", f(buf[0]), f(leaf_at));
        assert!(buf[1] > middle_at && buf[1] < middle_at + 512, "{:?} vs middle {:?}", f(buf[1]), f(middle_at));
    }

    #[test]
    fn cfi_walk_truncates_on_bad_bounds() {
        init();
        let mut buf = [0usize; 64];
        let regs = Regs::here();
        // Bounds that exclude the whole stack: no read is allowed, so at most the pc comes back.
        // SAFETY: an empty range is trivially mapped; nothing is read.
        let w = unsafe { walk(regs, (0x1000, 0x1000), 0, &mut buf, WalkCtx::MayAllocate) };
        assert!(w.len <= 1, "{w:?}");
    }

    #[test]
    fn buffer_bounds_the_walk() {
        init();
        let mut small = [0usize; 2];
        let w = capture(0, &mut small);
        assert_eq!(w, Walk { len: 2, truncated: true });
    }
}
