//! The guard plan: how many stacks get a guard, made at start from the kernel and
//! `vm.max_map_count` (see the module docs of `stack`), and which kind of guard.

use super::vm::{install_light_guard, protect_none};
use super::SLOTS_PER_SLAB;

/// How many goroutines may hold a stack at once, and whether their stacks are all guarded: the
/// runtime's plan, made at start from the kernel and `vm.max_map_count` (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GuardPlan {
    /// Stacks the pool guards (counted from the first carved).
    pub(crate) budget: usize,
    /// Live goroutines allowed, so that every stack is guarded; `None`: no limit (lightweight
    /// guards, or unguarded stacks allowed past the budget).
    pub(crate) spawn_cap: Option<usize>,
    /// `vm.max_map_count` the plan was made with (for error messages).
    pub(crate) max_map_count: usize,
    /// Guards are `mprotect`s (two mappings each).
    pub(crate) mprotect: bool,
}

/// Mappings kept free for everything but goroutine stacks: malloc arenas, thread stacks (two
/// mappings each, and `blocking` may start threads), libraries loaded later, the slabs' own
/// mappings. A sixteenth of the map count on top of a fixed 2048.
pub(crate) fn map_reserve(max_map_count: usize) -> usize {
    2048 + max_map_count / 16
}

/// The guard plan (module docs). An explicit budget (`GORT_GUARDED_STACKS=N`: the first N stacks
/// guarded, the rest not) is itself the opt-in to unguarded stacks. Otherwise: every stack with
/// lightweight guards; with `mprotect` guards, the stacks whose guards fit in `max_map_count`
/// less the mappings in use (`maps_now`) and a reserve (a guarded stack costs two mappings, and
/// every 256 stacks a slab costs two more), with spawns capped there unless `unguarded_ok`.
/// `cache_slack` stacks sit in per-P caches without a goroutine: the cap leaves room for them.
pub(crate) fn guard_plan(
    light: bool,
    explicit: Option<usize>,
    unguarded_ok: bool,
    max_map_count: usize,
    maps_now: usize,
    cache_slack: usize,
) -> GuardPlan {
    let mprotect = !light;
    if let Some(budget) = explicit {
        return GuardPlan { budget, spawn_cap: None, max_map_count, mprotect };
    }
    if light {
        return GuardPlan { budget: usize::MAX, spawn_cap: None, max_map_count, mprotect };
    }
    let room = max_map_count.saturating_sub(maps_now).saturating_sub(map_reserve(max_map_count));
    let budget = room * SLOTS_PER_SLAB / (2 * SLOTS_PER_SLAB + 2);
    let spawn_cap = (!unguarded_ok).then(|| budget.saturating_sub(cache_slack));
    GuardPlan { budget, spawn_cap, max_map_count, mprotect }
}

/// `vm.max_map_count`, or Linux's default if it cannot be read.
pub(crate) fn max_map_count() -> usize {
    std::fs::read_to_string("/proc/sys/vm/max_map_count").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(65530)
}

/// Mappings in use now (lines of `/proc/self/maps`); 0 if unreadable.
pub(crate) fn maps_in_use() -> usize {
    std::fs::read_to_string("/proc/self/maps").map(|s| s.lines().count()).unwrap_or(0)
}

/// Which kind of guard a pool (or [`alloc_dedicated`]) installs on the gaps within its budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GuardKind {
    /// Lightweight guards where the kernel has them ([`light_guards_supported`]), else `mprotect`.
    Auto,
    /// Always `mprotect(PROT_NONE)` (2 VMAs per guarded stack; visible in `/proc/self/maps`).
    Mprotect,
}

/// Turns a gap into a guard: a lightweight guard if `light`, else `PROT_NONE`. Returns whether
/// the lightweight kind is still usable (false after it failed once) and whether a guard is set.
pub(crate) fn guard_gap(addr: usize, len: usize, light: bool) -> (bool, bool) {
    if light {
        if install_light_guard(addr, len).is_ok() {
            return (true, true);
        }
        // Unexpected (seccomp, an exotic mapping): fall back to mprotect from now on.
        return (false, protect_none(addr, len).is_ok());
    }
    (false, protect_none(addr, len).is_ok())
}
