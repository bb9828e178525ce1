//! The stack a parked goroutine waits on, as the wall-clock profile and the leak census see it.
//!
//! A parked goroutine's stack is frozen at its park site, so its frames can be walked without
//! stopping it. A walk by DWARF CFI costs microseconds, though, and a hot park site (a channel
//! receive in a loop) is parked at millions of times: [`park_stack`] walks each distinct site
//! once and answers later parks from a cache.
//!
//! # Why a cached answer is exact
//!
//! A walk is a function of its start registers and of the stack words it reads (its
//! `ReadLog`). A cached site keeps the registers and every word its walk read, each as one of:
//!
//! - *relative*, when it points into the stack (saved frame pointers): its offset from the
//!   stack's top;
//! - *far*, when it points more than [`GAP`] away from the stack, is not small and is not one of
//!   the addresses the walk returned: such a word was not used as a return address (the walk
//!   returns every one it follows), so it was used as a base for further reads, which fell
//!   outside the stack and ended the walk, or not at all. Any other far word in its place does
//!   the same (the walker's offsets are far smaller than `GAP`). This is what makes goroutines
//!   share sites at all: the top of every goroutine stack links to the stack of the thread that
//!   last resumed it, a word that changes with every resume;
//! - *absolute* otherwise (return addresses, zero, other data), compared exactly.
//!
//! A parked goroutine matches a site when its registers and the words at the same offsets from
//! its own stack's top match under those rules, on a stack of the same size: its walk would
//! then take the same steps and return the same addresses. Checking costs one read per logged
//! word (tens of words), not a walk. Each goroutine
//! remembers the last site it matched (`G::wall_site`), so a goroutine parking at the same
//! place again is checked against that site first, without the cache's lock.
//!
//! The cache keeps at most [`MAX_SITES`] sites for the life of the process (sites are never
//! freed, so a goroutine's remembered site stays valid); past it, stacks are walked every time.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::g::{Parked, G};
use crate::unwind::{walk_logged, ReadLog, Regs, MAX_DEPTH};

/// A parked goroutine's stack: code addresses, leaf first, unsymbolized.
pub type ParkStack = Arc<[usize]>;

/// Most distinct park sites cached.
pub const MAX_SITES: usize = 4096;

/// How far from its stack a word must point to count as *far* (module docs).
pub const GAP: usize = 16 << 20;

/// A word as the cache compares it (module docs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Word {
    Rel(usize),
    Abs(usize),
    Far,
}

/// Whether `v` points into `[lo, hi)` (then `Some(offset from hi)`).
#[inline]
fn rel(v: usize, (lo, hi): (usize, usize)) -> Option<usize> {
    (v >= lo && v < hi).then(|| hi - v)
}

/// Whether `v` may be compared as far from the stack `[lo, hi)`.
#[inline]
fn far(v: usize, (lo, hi): (usize, usize)) -> bool {
    v >= GAP && (v < lo.saturating_sub(GAP) || v >= hi.saturating_add(GAP))
}

/// How a word read by a walk that returned `returned` is kept.
fn classify(v: usize, bounds: (usize, usize), returned: &[usize]) -> Word {
    if let Some(o) = rel(v, bounds) {
        Word::Rel(o)
    } else if far(v, bounds) && !returned.contains(&v) {
        Word::Far
    } else {
        Word::Abs(v)
    }
}

/// Whether `v`, found where a site's walk read `w`, matches it.
#[inline]
fn matches_word(v: usize, w: Word, bounds: (usize, usize)) -> bool {
    match w {
        Word::Rel(o) => rel(v, bounds) == Some(o),
        Word::Abs(a) => v == a,
        Word::Far => far(v, bounds),
    }
}

/// A cached park site: the registers and stack words its walk depended on, and the walk.
/// The words are kept by kind (module docs), each with its offset below the stack's top, so a
/// check is a few straight loops of loads and compares.
pub(crate) struct Site {
    pc: usize,
    size: usize,
    sp: usize,
    fp: Word,
    /// The stack top's remainder modulo the word size: every logged read was word-aligned, so
    /// a stack whose top has the same remainder has them aligned at the same offsets.
    top_rem: usize,
    /// (offset, the word found there) for absolute words.
    abs: Box<[(usize, usize)]>,
    /// (offset, the word's own offset below the top) for relative words.
    rel: Box<[(usize, usize)]>,
    /// Offsets of far words.
    far: Box<[usize]>,
    stack: ParkStack,
}

impl Site {
    fn new(regs: Regs, bounds: (usize, usize), reads: &[(usize, usize)], stack: ParkStack) -> Site {
        let (lo, hi) = bounds;
        let (mut abs, mut relw, mut farw) = (Vec::new(), Vec::new(), Vec::new());
        for &(a, v) in reads {
            match classify(v, bounds, &stack) {
                Word::Abs(w) => abs.push((hi - a, w)),
                Word::Rel(o) => relw.push((hi - a, o)),
                Word::Far => farw.push(hi - a),
            }
        }
        Site {
            pc: regs.pc,
            size: hi - lo,
            sp: hi - regs.sp,
            fp: classify(regs.fp, bounds, &stack),
            top_rem: hi % std::mem::size_of::<usize>(),
            abs: abs.into(),
            rel: relw.into(),
            far: farw.into(),
            stack,
        }
    }

    /// Whether a walk from `regs` over the stack `bounds` would read what this site's walk read.
    ///
    /// # Safety
    ///
    /// `bounds` is mapped, readable memory holding the frozen stack `regs` were taken on.
    #[inline(always)]
    unsafe fn matches(&self, regs: Regs, bounds: (usize, usize)) -> bool {
        let (lo, hi) = bounds;
        if regs.pc != self.pc
            || hi - lo != self.size
            || hi.wrapping_sub(regs.sp) != self.sp
            || hi % std::mem::size_of::<usize>() != self.top_rem
            || !matches_word(regs.fp, self.fp, bounds)
        {
            return false;
        }
        // A logged read lay inside a stack of this size, word-aligned and a whole word below
        // its top, so `hi - off` lies in [lo, hi - W], aligned since `hi` has the remainder the
        // logged stack's top had (checked above).
        let at = |off: usize| {
            // SAFETY: `hi - off` is aligned and inside `bounds` (above), which the caller
            // guarantees readable and frozen.
            unsafe { std::ptr::read((hi - off) as *const usize) }
        };
        // Not short-circuiting: the sites that are checked mostly match, and straight loops
        // of loads and compares are cheaper than a branch per word.
        let mut ok = true;
        for &(off, w) in self.abs.iter() {
            ok &= at(off) == w;
        }
        for &(off, o) in self.rel.iter() {
            // `hi - v == o` for an `o` in (0, size] puts `v` in [lo, hi), as `rel` requires.
            ok &= hi.wrapping_sub(at(off)) == o;
        }
        for &off in self.far.iter() {
            ok &= far(at(off), bounds);
        }
        ok
    }
}

type Key = (usize, usize);

static SITES: Mutex<Option<HashMap<Key, Vec<&'static Site>>>> = Mutex::new(None);
static NSITES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A park-site stack as [`park_stack_of`] finds it: a cached site (shared, never freed: its
/// address identifies the stack) or a walk of its own.
pub(crate) enum SiteRef {
    Cached(&'static Site),
    Walked(ParkStack),
}

impl SiteRef {
    /// The stack.
    pub(crate) fn stack(&self) -> &ParkStack {
        match self {
            SiteRef::Cached(s) => &s.stack,
            SiteRef::Walked(s) => s,
        }
    }

    /// An identity for the stack: equal for equal cached sites.
    pub(crate) fn id(&self) -> usize {
        self.stack().as_ptr() as usize
    }

    /// A cached site's address, which identifies it for the life of the process (cached sites
    /// are never freed); 0 for a walk of its own.
    pub(crate) fn cached_addr(&self) -> usize {
        match self {
            SiteRef::Cached(s) => *s as *const Site as usize,
            SiteRef::Walked(_) => 0,
        }
    }

    /// The cached site at `addr`.
    ///
    /// # Safety
    ///
    /// `addr` is a nonzero [`cached_addr`](Self::cached_addr).
    pub(crate) unsafe fn from_cached_addr(addr: usize) -> SiteRef {
        // SAFETY: `addr` is the address of a site leaked by `lookup` (contract): alive forever.
        SiteRef::Cached(unsafe { &*(addr as *const Site) })
    }
}

/// The stack of a goroutine switched out with `regs` on the stack `bounds`, from the cache if
/// possible (the goroutine's remembered site first).
///
/// # Safety
///
/// `bounds` is mapped, readable memory holding the goroutine's stack, frozen for the call, and
/// `regs` were recorded on it where it switched out.
#[inline]
unsafe fn lookup(regs: Regs, bounds: (usize, usize), g: &G) -> SiteRef {
    let (lo, hi) = bounds;
    if hi == 0 || regs.sp < lo || regs.sp >= hi {
        return SiteRef::Walked(Arc::from(&[][..]));
    }
    let hint = g.rare().wall_site.load(Ordering::Relaxed) as *const Site;
    if !hint.is_null() {
        // SAFETY: `wall_site` only ever holds sites leaked by `insert`, never freed.
        let site: &'static Site = unsafe { &*hint };
        // SAFETY: the caller's contract.
        if unsafe { site.matches(regs, bounds) } {
            return SiteRef::Cached(site);
        }
    }
    // SAFETY: the caller's contract.
    unsafe { lookup_shared(regs, bounds, g) }
}

/// [`lookup`] past the goroutine's own site: the shared cache, or a walk.
///
/// # Safety
///
/// As for [`lookup`].
#[inline(never)]
unsafe fn lookup_shared(regs: Regs, bounds: (usize, usize), g: &G) -> SiteRef {
    let hi = bounds.1;
    let key = (regs.pc, hi - regs.sp);
    {
        let sites = SITES.lock();
        if let Some(v) = sites.as_ref().and_then(|m| m.get(&key)) {
            for &site in v {
                // SAFETY: the caller's contract.
                if unsafe { site.matches(regs, bounds) } {
                    g.rare().wall_site.store(site as *const Site as usize, Ordering::Relaxed);
                    return SiteRef::Cached(site);
                }
            }
        }
    }
    let mut buf = [0usize; MAX_DEPTH];
    let mut log = Box::new(ReadLog::new());
    // SAFETY: the caller's contract is the walk's.
    let w = unsafe { walk_logged(regs, bounds, &mut buf, &mut log) };
    let stack: ParkStack = Arc::from(&buf[..w.len]);
    if log.overflow || NSITES.load(Ordering::Relaxed) >= MAX_SITES {
        return SiteRef::Walked(stack);
    }
    let site = Site::new(regs, bounds, log.reads(), stack.clone());
    let mut sites = SITES.lock();
    if NSITES.fetch_add(1, Ordering::Relaxed) >= MAX_SITES {
        return SiteRef::Walked(stack);
    }
    let site: &'static Site = Box::leak(Box::new(site));
    sites.get_or_insert_with(HashMap::new).entry(key).or_default().push(site);
    g.rare().wall_site.store(site as *const Site as usize, Ordering::Relaxed);
    SiteRef::Cached(site)
}

/// The frozen stack of the goroutine `p` holds still: code addresses, leaf first (the first in
/// the runtime's switch-out path), as [`Parked::walk`] writes them.
pub fn park_stack(p: &Parked<'_>) -> ParkStack {
    // SAFETY: the hold keeps the G still while `p` lives: its stack is mapped and frozen,
    // and the park registers were recorded on it (see `Parked::walk`).
    unsafe { lookup(p.regs(), p.stack_bounds(), p.g()) }.stack().clone()
}

/// The frozen stack of `g`, switched out and held by the caller, or `None` if it never ran.
///
/// # Safety
///
/// The caller holds `g` still: it is switched out (parked, runnable or about to be resumed by
/// the caller's M) and cannot run or exit until this returns.
pub(crate) unsafe fn park_stack_of(g: &G) -> Option<SiteRef> {
    let regs = Regs {
        pc: g.park_pc.load(Ordering::Relaxed),
        sp: g.park_sp.load(Ordering::Relaxed),
        fp: g.park_fp.load(Ordering::Relaxed),
    };
    if regs.sp == 0 {
        return None;
    }
    let bounds = (g.stack_lo.load(Ordering::Relaxed), g.stack_hi.load(Ordering::Relaxed));
    // SAFETY: the caller holds `g` still, so its stack (kept while it is not dead) is mapped
    // and frozen, and the registers were recorded on it when it switched out.
    Some(unsafe { lookup(regs, bounds, g) })
}
