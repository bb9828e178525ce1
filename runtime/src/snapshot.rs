//! Snapshots of the runtime for dumps and profiles, taken without stopping anything: the live
//! goroutines, the threads the runtime made, counts.

use std::any::Any;
use std::panic::Location;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::clock::nanotime;
use crate::g::{self, WaitReason};
use crate::m::current_m;
use crate::sched::state::sched_if_started;

/// How long a [`for_each_g_held_yielding`] scan runs between yields.
const SCAN_SLICE_NS: u64 = 1_000_000;

/// [`for_each_g_held`](crate::for_each_g_held) for a scan that runs on a goroutine while others
/// wait for its P: between two batches of holds (when it holds no goroutine) it yields once per
/// millisecond of scanning, so that a dump of 100k goroutines delays the rest of its P by about
/// a millisecond at a time rather than for the whole walk (or until sysmon takes the P from it).
/// `f` runs on either side of those yields, possibly on another thread: the caller must not
/// hold a thread lock or a thread-local's state across the call, as for any blocking
/// operation. On a plain thread it is [`for_each_g_held`](crate::for_each_g_held).
pub fn for_each_g_held_yielding(f: impl FnMut(g::GRef, Option<&g::Parked<'_>>)) {
    if !crate::park::in_goroutine() {
        return g::for_each_g_held(f);
    }
    let mut since = nanotime();
    g::for_each_g_held_then(f, || {
        if nanotime().saturating_sub(since) >= SCAN_SLICE_NS {
            crate::park::yield_now();
            since = nanotime();
        }
    });
}

/// The type name of the current goroutine's body (`None` on a plain thread).
pub fn current_entry_name() -> Option<&'static str> {
    current_m().and_then(|m| m.curg()).and_then(|g| g::entry_name(g.0))
}

/// One OS thread the runtime created to run goroutines (an M), for the threadcreate profile.
#[derive(Clone, Debug)]
pub struct ThreadInfo {
    /// 1-based M number (the thread is named `gort-m<id>`).
    pub id: usize,
    /// The goroutine whose actions created the thread (0: none, e.g. sysmon or a plain thread).
    pub created_by: u64,
    /// Return addresses of the creating code, leaf first (Go's `mp.createstack`).
    pub create_stack: Vec<usize>,
}

/// Every M created so far (Ms never exit).
pub fn threads() -> Vec<ThreadInfo> {
    crate::m::all()
        .iter()
        .map(|m| ThreadInfo {
            id: m.id,
            created_by: m.created_by.load(Ordering::Relaxed) as u64,
            create_stack: m.create_stack.clone(),
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct GoroutineInfo {
    /// Goroutine id.
    pub id: u64,
    /// `runnable`, `running`, `syscall` or the wait reason.
    pub state: String,
    /// Wait reason while waiting.
    pub wait_reason: Option<WaitReason>,
    /// Nanoseconds spent waiting so far (0 unless waiting).
    pub waiting_ns: u64,
    /// Name from `Builder::name`.
    pub name: Option<Arc<str>>,
    /// Parent goroutine id (0: spawned from a plain thread).
    pub parent_id: u64,
    /// The `spawn`/`go!` call site.
    pub created_at: Option<&'static Location<'static>>,
    /// An address inside the function that spawned (Go's `gopc`; 0 if unknown). With debug info
    /// it symbolizes to the runtime's `spawn` inlined into that function; the profiler skips
    /// the runtime's frames.
    pub created_pcs: [usize; g::CREATED_PCS],
    /// The type name of the goroutine's body (`my_crate::handler::{{closure}}`).
    pub entry_name: Option<&'static str>,
}

/// Lists live goroutines without stopping anything.
pub fn goroutines() -> Vec<GoroutineInfo> {
    let now = nanotime();
    let mut v = Vec::new();
    g::for_each_g(|g| {
        let st = g.status();
        let state = match st {
            g::RUNNABLE => "runnable".to_string(),
            g::RUNNING => "running".to_string(),
            g::SYSCALL => "syscall".to_string(),
            g::WAITING => WaitReason::from_u8(g.0.wait_reason.load(Ordering::Relaxed)).as_str().to_string(),
            _ => return,
        };
        let waiting = st == g::WAITING;
        let loc = g.0.created_at.load(Ordering::Relaxed);
        v.push(GoroutineInfo {
            id: g.id(),
            state,
            wait_reason: waiting.then(|| WaitReason::from_u8(g.0.wait_reason.load(Ordering::Relaxed))),
            waiting_ns: if waiting { now.saturating_sub(g.0.wait_since.load(Ordering::Relaxed)) } else { 0 },
            name: if g.0.has_name.load(Ordering::Relaxed) {
                g.0.rare_if_any().and_then(|r| r.name.lock().clone())
            } else {
                None
            },
            parent_id: g.0.parent_goid.load(Ordering::Relaxed),
            // SAFETY: created_at holds &'static Locations or null.
            created_at: if loc.is_null() { None } else { Some(unsafe { &*loc }) },
            created_pcs: std::array::from_fn(|i| g.0.created_pcs[i].load(Ordering::Relaxed)),
            entry_name: g::entry_name(g.0),
        });
    });
    v.sort_by_key(|i| i.id);
    v
}

/// Number of live goroutines (spawned and not finished), like `runtime.NumGoroutine`.
pub fn num_goroutine() -> usize {
    sched_if_started().map(|s| s.live_goroutines()).unwrap_or(0)
}

/// Idle Ps as (the scheduler's counter, the idle list's length); both agree whenever no M is
/// between the two updates. For tests of the scheduler's bookkeeping.
#[doc(hidden)]
pub fn idle_procs() -> (usize, usize) {
    sched_if_started().map(|s| s.idle_counts()).unwrap_or((0, 0))
}

/// How many times sysmon has taken a P from a goroutine in `blocking`. For tests.
#[doc(hidden)]
pub fn syscall_retakes() -> u64 {
    crate::sysmon::SYSCALL_RETAKES.load(Ordering::Relaxed)
}

/// The current goroutine's id, or `None` on a plain thread.
pub fn current_id() -> Option<u64> {
    current_m().and_then(|m| m.curg()).map(|g| g.id())
}

/// Payload type of a goroutine panic (what `JoinHandle::join` returns in `Err`).
pub type PanicPayload = Box<dyn Any + Send + 'static>;
