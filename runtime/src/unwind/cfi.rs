//! The DWARF CFI unwinder: framehop over the copied `.eh_frame` of every module, with a pool of
//! preallocated caches so that a walk allocates nothing (see the module docs of `unwind`).

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

thread_local! {
    /// Whether this thread is building the unwinder: a walk it starts meanwhile (the heap
    /// sampler, on one of the build's allocations) must not wait for itself.
    static BUILDER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Builds the unwinder, once; a caller that finds another thread building it waits for that
/// build, so that its first walk does not come back empty.
pub(super) fn init() {
    if STATE.compare_exchange(UNBUILT, BUILDING, Ordering::Relaxed, Ordering::Relaxed).is_err() {
        if !BUILDER.with(|b| b.get()) {
            // Acquire: pairs with the builder's Release store of BUILT (with `get`'s Acquire
            // load of CFI, what the caller then reads).
            while STATE.load(Ordering::Acquire) == BUILDING {
                std::thread::yield_now();
            }
        }
        return;
    }
    BUILDER.with(|b| b.set(true));
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
    BUILDER.with(|b| b.set(false));
}

fn get(ctx: WalkCtx) -> Option<&'static Cfi> {
    // Acquire: pairs with init's Release store.
    let p = CFI.load(Ordering::Acquire);
    if p.is_null() {
        if ctx == WalkCtx::NoAllocate {
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
    mut log: Option<&mut ReadLog>,
) -> Walk {
    let Some(cfi) = get(ctx) else { return Walk { len: 0, truncated: false } };
    for slot in cfi.slots.iter() {
        // Acquire: pairs with the Release store below by the slot's previous user, so its
        // writes to the cache happen before ours.
        if !slot.busy.swap(true, Ordering::Acquire) {
            // SAFETY: the swap made this thread the slot's only user until the store below.
            let cache = unsafe { &mut *slot.cache.get() };
            // SAFETY: the caller's contract, passed on.
            let w = unsafe { walk_with(&cfi.unwinder, cache, regs, bounds, skip, buf, log.as_deref_mut()) };
            slot.busy.store(false, Ordering::Release);
            return w;
        }
    }
    if ctx == WalkCtx::NoAllocate {
        return Walk { len: 0, truncated: false };
    }
    let mut cache = Box::new(Cache::new_in());
    // SAFETY: the caller's contract, passed on.
    unsafe { walk_with(&cfi.unwinder, &mut cache, regs, bounds, skip, buf, log) }
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
    mut log: Option<&mut ReadLog>,
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
        let v = unsafe { std::ptr::read_volatile(a as *const usize) };
        if let Some(log) = log.as_deref_mut() {
            log.push(a, v);
        }
        Ok(v as u64)
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
