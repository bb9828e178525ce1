//! The goroutine leak census: growth of parked groups over time, the honest substitute for Go
//! 1.27's `goroutineleak` profile.
//!
//! Go finds leaked goroutines with its garbage collector: one blocked on a channel or lock that
//! no runnable goroutine can reach can never wake. gort has no GC, so reachability is unknowable;
//! what it can see is the symptom that makes leaks expensive: a group of goroutines parked at the
//! same place for the same reason that keeps growing and never shrinks.
//!
//! Every `interval` a thread of its own (`gort-census`, not sysmon: a census walks every G)
//! counts the waiting goroutines grouped by (wait reason, park-site stack), holding each one
//! still (its hold) only for the walk of its stack ([`park_stack`]). Per group it keeps
//! the counts of the last `window` (K) census points, and from the latest: when its
//! longest-waiting member started waiting, and the ids of a few members. [`report`] applies the
//! finder: a group is a suspected leak when, over the last K points,
//!
//! - its count never fell (a leaked goroutine never leaves; one that wakes now and then is not
//!   leaked),
//! - it rose in at least two of the K - 1 intervals (a single step is a pool filled once, or a
//!   burst, not a leak; a leak slower than the interval still rises in several of them), and
//! - it grew by at least `threshold` between the first and the last point.
//!
//! Requiring a rise at *every* point would miss a leak slower than the census; requiring only
//! "never fell" would flag every idle pool. A pool that fills gradually over more than one
//! interval is reported until the window has slid past its growth (K intervals at most).
//!
//! Memory is bounded: one census keeps at most `max_groups` groups (goroutines of further groups
//! are counted as overflow), and the history holds at most K points of each group seen in the
//! window.
//!
//! Off by default; started by `GORT_LEAKCHECK=<interval>[,window=K][,threshold=N]` (with the
//! first spawn, see `env.rs`) or by [`start`]/[`start_with`], stopped by [`stop`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::clock::nanotime;
use crate::env::{Config, ConfigError, LeakCheck};
use crate::g::{for_each_g_held, WaitReason};
use crate::parksite::{park_stack, ParkStack};

/// How many goroutine ids a group keeps (the lowest: usually its oldest members).
pub const IDS_KEPT: usize = 5;

/// One group of parked goroutines in a census: same wait reason, same park-site stack.
#[derive(Clone, Debug)]
pub struct Group {
    /// Why they wait.
    pub wait_reason: WaitReason,
    /// Where they parked: code addresses, leaf first (as [`park_stack`] gives them).
    pub stack: ParkStack,
    /// The type name of their body (the same for all: the stack runs through the runtime's
    /// entry frame monomorphized for it), for profiles of builds without debug info.
    pub entry_name: Option<&'static str>,
    /// How many.
    pub count: u64,
    /// When the longest-waiting of them started waiting (`time::nanotime`).
    pub oldest_since: u64,
    /// The lowest goroutine ids among them, ascending (at most [`IDS_KEPT`]).
    pub ids: Vec<u64>,
}

/// What one census saw.
#[derive(Clone, Debug, Default)]
pub struct Census {
    /// When it started (`time::nanotime`).
    pub at: u64,
    /// The groups, largest first.
    pub groups: Vec<Group>,
    /// Waiting goroutines counted, grouped or not.
    pub parked: u64,
    /// Waiting goroutines not grouped because `max_groups` groups were full.
    pub overflow: u64,
    /// How long the census took.
    pub took: Duration,
}

/// A census in numbers (the latest, in a [`Report`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CensusStats {
    /// When it started (`time::nanotime`).
    pub at: u64,
    /// Waiting goroutines counted.
    pub parked: u64,
    /// Groups kept.
    pub groups: usize,
    /// Waiting goroutines not grouped (the group cap was reached).
    pub overflow: u64,
    /// How long it took.
    pub took: Duration,
}

/// A suspected leak: a group that grew over the whole window without ever shrinking.
#[derive(Clone, Debug)]
pub struct Leak {
    /// Why its goroutines wait.
    pub wait_reason: WaitReason,
    /// Where they parked, leaf first, unsymbolized.
    pub stack: ParkStack,
    /// The type name of their body ([`Group::entry_name`]).
    pub entry_name: Option<&'static str>,
    /// How many there are at the last census.
    pub count: u64,
    /// How many more than at the first census point of the window.
    pub growth: u64,
    /// The window's counts, oldest first.
    pub counts: Vec<u64>,
    /// Time from the first to the last census point of the window.
    pub window: Duration,
    /// Growth per minute over the window.
    pub per_minute: f64,
    /// How long the longest-waiting member has waited (at the time of the report).
    pub oldest_wait: Duration,
    /// A few of their goroutine ids ([`Group::ids`]).
    pub ids: Vec<u64>,
}

/// The finder's answer ([`report`]).
#[derive(Clone, Debug)]
pub struct Report {
    /// How the census runs.
    pub config: LeakCheck,
    /// Census points taken since it started.
    pub points: u64,
    /// The latest census, if one was taken.
    pub last: Option<CensusStats>,
    /// Suspected leaks, the fastest-growing first.
    pub leaks: Vec<Leak>,
}

/// Counts the waiting goroutines now, grouped by wait reason and park site, keeping at most
/// `max_groups` groups. Each goroutine is held still (its hold) only while its stack is
/// walked; nothing else stops. Not recorded in the census history: [`start`] does that.
pub fn take(max_groups: usize) -> Census {
    let t0 = Instant::now();
    let at = nanotime();
    let mut groups: HashMap<(WaitReason, ParkStack), Group> = HashMap::new();
    let (mut parked, mut overflow) = (0u64, 0u64);
    for_each_g_held(|_, p| {
        // Runnable goroutines are not leaked.
        let seen = p.and_then(|p| {
            let reason = p.wait_reason()?;
            Some((reason, park_stack(p), p.id(), p.wait_since(), p.entry_name()))
        });
        let Some((reason, stack, id, since, entry_name)) = seen else { return };
        parked += 1;
        let key = (reason, stack);
        if let Some(grp) = groups.get_mut(&key) {
            grp.count += 1;
            grp.oldest_since = grp.oldest_since.min(since);
            keep_id(&mut grp.ids, id);
        } else if groups.len() < max_groups {
            let stack = key.1.clone();
            let grp = Group { wait_reason: reason, stack, entry_name, count: 1, oldest_since: since, ids: vec![id] };
            groups.insert(key, grp);
        } else {
            overflow += 1;
        }
    });
    let mut groups: Vec<Group> = groups.into_values().collect();
    groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.stack.cmp(&b.stack)));
    Census { at, groups, parked, overflow, took: t0.elapsed() }
}

/// Inserts `id` into the ascending list `ids`, keeping the lowest [`IDS_KEPT`].
fn keep_id(ids: &mut Vec<u64>, id: u64) {
    if ids.len() == IDS_KEPT && id > ids[IDS_KEPT - 1] {
        return;
    }
    let at = ids.partition_point(|&x| x < id);
    ids.insert(at, id);
    ids.truncate(IDS_KEPT);
}

/// One group across the window.
struct Tracked {
    wait_reason: WaitReason,
    stack: ParkStack,
    entry_name: Option<&'static str>,
    /// One count per point of `History::times` (0 where the group was absent).
    counts: VecDeque<u64>,
    /// From the latest census (0 and empty if absent from it).
    oldest_since: u64,
    ids: Vec<u64>,
}

/// The census points of the window.
struct History {
    cfg: LeakCheck,
    points: u64,
    /// When each point of the window was taken, oldest first (at most `cfg.window`).
    times: VecDeque<u64>,
    groups: HashMap<(WaitReason, ParkStack), Tracked>,
    last: Option<CensusStats>,
}

impl History {
    fn new(cfg: LeakCheck) -> History {
        History { cfg, points: 0, times: VecDeque::new(), groups: HashMap::new(), last: None }
    }

    /// Adds a census point, dropping the oldest beyond the window and groups absent from all.
    fn record(&mut self, c: Census) {
        self.points += 1;
        self.last = Some(CensusStats {
            at: c.at,
            parked: c.parked,
            groups: c.groups.len(),
            overflow: c.overflow,
            took: c.took,
        });
        self.times.push_back(c.at);
        let full = self.times.len() > self.cfg.window;
        if full {
            self.times.pop_front();
        }
        for t in self.groups.values_mut() {
            t.counts.push_back(0);
            if full {
                t.counts.pop_front();
            }
            t.oldest_since = 0;
            t.ids.clear();
        }
        let n = self.times.len();
        for grp in c.groups {
            let t = self.groups.entry((grp.wait_reason, grp.stack.clone())).or_insert_with(|| Tracked {
                wait_reason: grp.wait_reason,
                stack: grp.stack,
                entry_name: grp.entry_name,
                counts: std::iter::repeat_n(0, n).collect(),
                oldest_since: 0,
                ids: Vec::new(),
            });
            *t.counts.back_mut().expect("one count per point") = grp.count;
            t.oldest_since = grp.oldest_since;
            t.ids = grp.ids;
        }
        self.groups.retain(|_, t| t.counts.iter().any(|&n| n > 0));
    }

    fn report(&self, now: u64) -> Report {
        let window_ns = match (self.times.front(), self.times.back()) {
            (Some(a), Some(b)) => b - a,
            _ => 0,
        };
        let mut leaks: Vec<Leak> = Vec::new();
        if self.times.len() >= self.cfg.window {
            for t in self.groups.values() {
                let Some(growth) = suspect(&t.counts, self.cfg.threshold) else { continue };
                let count = *t.counts.back().unwrap_or(&0);
                leaks.push(Leak {
                    wait_reason: t.wait_reason,
                    stack: t.stack.clone(),
                    entry_name: t.entry_name,
                    count,
                    growth,
                    counts: t.counts.iter().copied().collect(),
                    window: Duration::from_nanos(window_ns),
                    per_minute: if window_ns == 0 { 0.0 } else { growth as f64 * 60e9 / window_ns as f64 },
                    oldest_wait: Duration::from_nanos(now.saturating_sub(t.oldest_since)),
                    ids: t.ids.clone(),
                });
            }
        }
        leaks.sort_by(|a, b| {
            b.growth.cmp(&a.growth).then_with(|| b.count.cmp(&a.count)).then_with(|| a.stack.cmp(&b.stack))
        });
        Report { config: self.cfg, points: self.points, last: self.last, leaks }
    }
}

/// The finder's rule (module docs) on one group's window of counts: its growth if it is a
/// suspected leak.
fn suspect(counts: &VecDeque<u64>, threshold: u64) -> Option<u64> {
    let (first, last) = (*counts.front()?, *counts.back()?);
    let mut rises = 0;
    for (a, b) in counts.iter().zip(counts.iter().skip(1)) {
        if b < a {
            return None;
        }
        rises += usize::from(b > a);
    }
    (rises >= 2 && last - first >= threshold).then_some(last - first)
}

/// The census state: the history of the running census (`None`: off), and a generation that
/// every start and stop bumps, so that a census thread of an earlier start exits.
struct State {
    hist: Option<History>,
    gen: u64,
}

static STATE: Mutex<State> = Mutex::new(State { hist: None, gen: 0 });
/// Wakes the census thread early when it is stopped or restarted.
static WAKE: Condvar = Condvar::new();
/// Whether `GORT_LEAKCHECK` has been looked at (or an explicit start made it moot).
static ENV_SEEN: AtomicBool = AtomicBool::new(false);

/// Starts the census every `interval` with the default window
/// ([`LeakCheck::DEFAULT_WINDOW`] points) and threshold ([`LeakCheck::DEFAULT_THRESHOLD`]).
/// A census already running is replaced (its history is dropped).
///
/// # Panics
///
/// If `interval` is zero.
pub fn start(interval: Duration) {
    if let Err(e) = start_with(LeakCheck::every(interval)) {
        panic!("gort: census::start: {e}");
    }
}

/// Starts the census as `cfg` says (the same settings as `GORT_LEAKCHECK`), replacing one that
/// runs (its history is dropped). The first census is taken at once, then one every interval.
/// Fails if `cfg` is out of range ([`LeakCheck::validate`]). `GORT_LEAKCHECK` is ignored once
/// the census has been started or stopped here.
pub fn start_with(cfg: LeakCheck) -> Result<(), ConfigError> {
    cfg.validate()?;
    ENV_SEEN.store(true, Ordering::Relaxed);
    let gen = {
        let mut st = STATE.lock();
        st.gen += 1;
        st.hist = Some(History::new(cfg));
        st.gen
    };
    WAKE.notify_all();
    std::thread::Builder::new()
        .name("gort-census".into())
        .spawn(move || census_loop(gen))
        .expect("gort: cannot start the leak census thread");
    Ok(())
}

/// Stops the census and drops its history. Does nothing if it is not running.
pub fn stop() {
    ENV_SEEN.store(true, Ordering::Relaxed);
    let mut st = STATE.lock();
    if st.hist.take().is_some() {
        st.gen += 1;
        WAKE.notify_all();
    }
}

/// How the census runs, or `None` if it is off.
pub fn config() -> Option<LeakCheck> {
    STATE.lock().hist.as_ref().map(|h| h.cfg)
}

/// The suspected leaks (the finder's rule, module docs) over the last window of census points,
/// or `None` if the census is off. Leaks are reported only once the window is full (`window`
/// census points taken since the start).
pub fn report() -> Option<Report> {
    let now = nanotime();
    STATE.lock().hist.as_ref().map(|h| h.report(now))
}

/// Starts the census that `GORT_LEAKCHECK` asked for, the first time it is called (the spawn
/// path calls it: the runtime's start is below this layer).
#[inline]
pub(crate) fn start_from_env(cfg: &Config) {
    if !ENV_SEEN.load(Ordering::Relaxed) {
        start_from_env_slow(cfg);
    }
}

#[cold]
fn start_from_env_slow(cfg: &Config) {
    if ENV_SEEN.swap(true, Ordering::Relaxed) {
        return;
    }
    if let Some(lc) = cfg.leakcheck {
        // The configuration was validated when the runtime started.
        let _ = start_with(lc);
    }
}

/// The census thread of generation `gen`: a census now, then one per interval, until a stop or
/// a new start changes the generation.
fn census_loop(gen: u64) {
    let mut next = Instant::now();
    loop {
        let max_groups = {
            let mut st = STATE.lock();
            loop {
                if st.gen != gen {
                    return;
                }
                if WAKE.wait_until(&mut st, next).timed_out() || Instant::now() >= next {
                    break;
                }
            }
            if st.gen != gen {
                return;
            }
            st.hist.as_ref().map_or(LeakCheck::DEFAULT_MAX_GROUPS, |h| h.cfg.max_groups)
        };
        // The walk runs without the lock: `report` and `stop` do not wait for it.
        let c = take(max_groups);
        let mut st = STATE.lock();
        if st.gen != gen {
            return;
        }
        let Some(h) = st.hist.as_mut() else { return };
        h.record(c);
        // Drift-free, but a census slower than the interval does not queue up more.
        next = (next + h.cfg.interval).max(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(v: &[u64]) -> VecDeque<u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn the_rule() {
        // Grew at every point.
        assert_eq!(suspect(&window(&[0, 5, 10, 15, 20]), 10), Some(20));
        // Slower than the census: flat stretches, no fall.
        assert_eq!(suspect(&window(&[1, 1, 1, 2, 2, 2, 3, 3, 3, 4]), 3), Some(3));
        // Fell once: something wakes them.
        assert_eq!(suspect(&window(&[0, 5, 10, 9, 20]), 10), None);
        // One step: a pool filled once.
        assert_eq!(suspect(&window(&[0, 0, 50, 50, 50]), 10), None);
        // Below the threshold.
        assert_eq!(suspect(&window(&[0, 1, 2, 3, 4]), 10), None);
        assert_eq!(suspect(&window(&[]), 1), None);
    }

    #[test]
    fn ids_keep_the_lowest() {
        let mut ids = Vec::new();
        for id in [9, 3, 7, 1, 8, 2, 10] {
            keep_id(&mut ids, id);
        }
        assert_eq!(ids, [1, 2, 3, 7, 8]);
    }

    fn census(at: u64, groups: &[(usize, u64)]) -> Census {
        let stacks: Vec<ParkStack> = (0..4).map(|i| ParkStack::from(&[0x1000 + i][..])).collect();
        Census {
            at,
            groups: groups
                .iter()
                .map(|&(s, n)| Group {
                    wait_reason: WaitReason::ChanReceive,
                    stack: stacks[s].clone(),
                    entry_name: None,
                    count: n,
                    oldest_since: 1,
                    ids: vec![s as u64],
                })
                .collect(),
            parked: groups.iter().map(|g| g.1).sum(),
            overflow: 0,
            took: Duration::ZERO,
        }
    }

    #[test]
    fn history_slides_and_forgets() {
        let mut h = History::new(LeakCheck { window: 3, threshold: 2, ..LeakCheck::every(Duration::from_secs(1)) });
        // Group 0 leaks, group 1 holds, group 2 comes and goes.
        h.record(census(10, &[(0, 1), (1, 5)]));
        h.record(census(20, &[(0, 2), (1, 5), (2, 1)]));
        assert!(h.report(20).leaks.is_empty(), "the window is not full yet");
        h.record(census(30, &[(0, 3), (1, 5)]));
        let r = h.report(40);
        assert_eq!(r.points, 3);
        assert_eq!(r.leaks.len(), 1, "{:?}", r.leaks);
        let l = &r.leaks[0];
        assert_eq!((l.count, l.growth, &l.counts[..]), (3, 2, &[1, 2, 3][..]));
        assert_eq!(l.window, Duration::from_nanos(20));
        assert_eq!(l.oldest_wait, Duration::from_nanos(39));
        assert_eq!(h.groups.len(), 3);
        h.record(census(40, &[(0, 3), (1, 5)]));
        h.record(census(50, &[(0, 3), (1, 5)]));
        assert_eq!(h.groups.len(), 2, "group 2 left the window");
        assert!(h.report(50).leaks.is_empty(), "group 0 stopped growing");
        assert_eq!(h.groups[&(WaitReason::ChanReceive, ParkStack::from(&[0x1000][..]))].counts.len(), 3);
    }
}
