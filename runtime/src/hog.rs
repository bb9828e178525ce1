//! The hog detector: goroutines that run a long time without entering the scheduler.
//!
//! Sysmon already watches every P's `schedtick` to retake Ps from hogs when work waits. This
//! module turns the same observation into events, whether or not work waits (the retake policy
//! does not change):
//!
//! - **A run** is one `schedtick` value on a P in `P_USER`, as sysmon sees it: it begins when
//!   sysmon first sees the value and ends when sysmon sees the tick change or the P leave
//!   `P_USER` (the goroutine parked, yielded, entered `blocking`, or sysmon retook the P). Its
//!   length is measured between sysmon's first and last sightings, so it is a lower bound,
//!   short by at most one sysmon tick at each end (1 ms while any P is busy; up to 10 ms at the
//!   start of a run that began while every P was idle). After a retake the hog keeps its thread
//!   until its next runtime entry; that stretch is not part of the run.
//! - **An event** is a run that reaches the threshold ([`threshold`], 10 ms by default,
//!   `GORT_HOGTHRESHOLD`, [`set_threshold`]): one per run. At detection sysmon asks the hog's
//!   thread for its stack with the running-stack request (`running.rs`: SIGURG, walked by the
//!   hog's own thread in the signal handler, which allocates nothing) and never waits for the
//!   answer: it collects it at a later tick (microseconds later, usually the next), and gives up
//!   after 50 ms (the event then has an empty stack). If a goroutine dump owns that thread's
//!   request slot at that moment, sysmon asks again at the next ticks while the run goes on,
//!   within the same 50 ms.
//! - **The record** is made as soon as the stack is known, with the run's length so far, and
//!   sysmon adds to it at every tick while the run goes on: a goroutine that spins forever shows
//!   in the profile at once and grows there. Records live in a bounded table keyed by stack and
//!   label set ([`MAX_RECORDS`] keys; events past that are counted in [`dropped_records`]):
//!   count, nanoseconds over the threshold (the delay the hog imposed beyond what is allowed),
//!   and nanoseconds run.
//! - **The trace** ([`set_trace`], `GORT_HOGTRACE=1`) prints one line per event on stderr:
//!   when the run ends, or once it has gone on for a second (or the threshold, if longer) while
//!   it is still going. Sysmon only hands the line to a bounded queue (lines that do not fit are
//!   counted in [`trace_dropped`]); a dedicated thread formats and prints them, so a slow stderr
//!   never holds sysmon up. The runtime cannot symbolize: the profiler installs a
//!   [`Symbolizer`] when the program loads ([`set_symbolizer`]); without one the line shows raw
//!   addresses.
//!
//! Cost: nothing on the goroutines' paths. Sysmon compares each busy P's run length with the
//! threshold at every tick (it reads both already); an event costs one signal, one stack walk
//! on the hog's thread, and a table update per sysmon tick while the run lasts.
//!
//! Stacks are raw addresses, leaf first; the leaf is the interrupted pc itself (not a return
//! address), the rest are return addresses.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use parking_lot::Mutex;

use crate::g::{GRef, Labels};
use crate::m::M;
use crate::p::P;
use crate::running::{answer, request, withdraw, RunningStack, Sent};

/// The threshold unless configured: Go's scheduler slice, and sysmon's retake limit.
pub const DEFAULT_THRESHOLD: Duration = Duration::from_millis(10);
/// The smallest threshold [`set_threshold`] keeps.
pub const MIN_THRESHOLD: Duration = Duration::from_micros(1);
/// Distinct (stack, label set) keys kept.
pub const MAX_RECORDS: usize = 4096;
/// How long sysmon keeps collecting a stack it asked for.
const PATIENCE_NS: u64 = 50_000_000;
/// A run still going after this long (or the threshold, if longer) gets its trace line now.
const TRACE_LATE_NS: u64 = 1_000_000_000;
/// Trace lines waiting for the printing thread.
const TRACE_QUEUE: usize = 64;

static THRESHOLD_NS: AtomicU64 = AtomicU64::new(DEFAULT_THRESHOLD.as_nanos() as u64);
static TRACE: AtomicBool = AtomicBool::new(false);
static EVENTS: AtomicU64 = AtomicU64::new(0);
static RETAKES: AtomicU64 = AtomicU64::new(0);
static YIELDS: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static TRACE_DROPPED: AtomicU64 = AtomicU64::new(0);
static TRACE_PRINTED: AtomicU64 = AtomicU64::new(0);

/// A table key: the stack, and the address of the label set (0: none). Label sets are opaque
/// here; the `Arc` kept in the record keeps the address from being reused, and readers merge
/// records whose label sets are equal but distinct.
type Key = (Box<[usize]>, usize);

struct Rec {
    labels: Option<Labels>,
    count: i64,
    delay_ns: i64,
    run_ns: i64,
}

static TABLE: Mutex<Option<HashMap<Key, Rec>>> = Mutex::new(None);

/// Turns a stack (leaf first, the leaf an interrupted pc) into the names of the frames worth
/// printing, leaf first, the runtime's machinery hidden.
pub type Symbolizer = fn(&[usize]) -> Vec<String>;

static SYMBOLIZER: RwLock<Option<Symbolizer>> = RwLock::new(None);

/// One record: the events on one stack with one label set.
#[derive(Clone, Debug)]
pub struct HogRecord {
    /// Leaf first: the interrupted pc, then return addresses (unsymbolized). Empty when the
    /// stack could not be taken.
    pub stack: Vec<usize>,
    /// The hog's labels when its stack was taken.
    pub labels: Option<Labels>,
    /// Events.
    pub count: i64,
    /// Nanoseconds run beyond the threshold, summed.
    pub delay_ns: i64,
    /// Nanoseconds run, summed.
    pub run_ns: i64,
}

/// The threshold: a run this long is a hog event.
pub fn threshold() -> Duration {
    Duration::from_nanos(THRESHOLD_NS.load(Ordering::Relaxed))
}

/// Sets the threshold (at least [`MIN_THRESHOLD`]). Runs detected later use it.
/// `GORT_HOGTHRESHOLD` sets it when the runtime starts.
pub fn set_threshold(d: Duration) {
    let ns = d.max(MIN_THRESHOLD).as_nanos().min(u64::MAX as u128) as u64;
    THRESHOLD_NS.store(ns, Ordering::Relaxed);
}

/// Whether each event is printed on stderr.
pub fn trace() -> bool {
    TRACE.load(Ordering::Relaxed)
}

/// Prints each event on stderr, or stops. `GORT_HOGTRACE=1` turns it on when the runtime
/// starts.
pub fn set_trace(on: bool) {
    TRACE.store(on, Ordering::Relaxed);
}

/// Installs the function that names the frames of trace lines (the profiler installs one when
/// the program loads).
pub fn set_symbolizer(f: Symbolizer) {
    *SYMBOLIZER.write().unwrap_or_else(|e| e.into_inner()) = Some(f);
}

/// Hog events so far (runs that reached the threshold).
pub fn events() -> u64 {
    EVENTS.load(Ordering::Relaxed)
}

/// Ps sysmon took from hogs so far, because work waited for them.
pub fn retakes() -> u64 {
    RETAKES.load(Ordering::Relaxed)
}

/// Goroutines so far that sysmon asked to yield, because work waited for their P, and that
/// yielded at the entry of a blocking operation (a channel operation, a lock, a spawn) before
/// it had to take the P ([`retakes`]).
pub fn yields() -> u64 {
    YIELDS.load(Ordering::Relaxed)
}

/// Events not recorded because the table already held [`MAX_RECORDS`] keys.
pub fn dropped_records() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Trace lines dropped because the printing thread was behind.
pub fn trace_dropped() -> u64 {
    TRACE_DROPPED.load(Ordering::Relaxed)
}

/// Trace lines printed so far (tests wait for them).
#[doc(hidden)]
pub fn trace_printed() -> u64 {
    TRACE_PRINTED.load(Ordering::Relaxed)
}

/// Every record so far (cumulative, like the mutex and block profiles).
pub fn records() -> Vec<HogRecord> {
    let t = TABLE.lock();
    let Some(m) = t.as_ref() else { return Vec::new() };
    m.iter()
        .map(|((stack, _), r)| HogRecord {
            stack: stack.to_vec(),
            labels: r.labels.clone(),
            count: r.count,
            delay_ns: r.delay_ns,
            run_ns: r.run_ns,
        })
        .collect()
}

/// Sysmon took a P from a hog.
pub(crate) fn count_retake() {
    RETAKES.fetch_add(1, Ordering::Relaxed);
}

/// A goroutine yielded because sysmon asked it to.
pub(crate) fn count_yield() {
    YIELDS.fetch_add(1, Ordering::Relaxed);
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Adds `runs` events and `run_ns`/`delay_ns` to the record of `key`; with `insert`, makes the
/// record if there is room. Returns whether the record exists.
fn add(key: &Key, labels: &Option<Labels>, insert: bool, runs: i64, run_ns: u64, delay_ns: u64) -> bool {
    let mut t = TABLE.lock();
    let m = t.get_or_insert_with(HashMap::new);
    if let Some(r) = m.get_mut(key) {
        r.count += runs;
        r.run_ns = r.run_ns.saturating_add(saturating_i64(run_ns));
        r.delay_ns = r.delay_ns.saturating_add(saturating_i64(delay_ns));
        return true;
    }
    if !insert || m.len() >= MAX_RECORDS {
        return false;
    }
    let r =
        Rec { labels: labels.clone(), count: runs, delay_ns: saturating_i64(delay_ns), run_ns: saturating_i64(run_ns) };
    m.insert(key.clone(), r);
    true
}

/// Sysmon's watch over one P's runs.
#[derive(Default)]
pub(crate) struct Watch {
    /// The `schedtick` of the last run that made an event: one event per run.
    evented: Option<u64>,
    /// The current run, once it is an event.
    run: Option<Hog>,
    /// A run that ended before its stack came back.
    closing: Option<Hog>,
}

struct Hog {
    tick: u64,
    goid: u64,
    name: Option<Arc<str>>,
    /// The threshold when it was detected.
    threshold: u64,
    /// Run length so far, as sysmon measured it.
    ran: u64,
    stack: Stack,
    traced: bool,
}

enum Stack {
    /// Asked `m` at this time.
    Asking(&'static M, u64),
    /// `m`'s request slot was another asker's when we first tried, at this time.
    Busy(&'static M, u64),
    /// Unavailable (nobody answered, or SIGURG is not ours).
    Unknown,
    /// In the table under `key` (`None`: the table was full), with `accounted` ns of the run.
    Known { pcs: Arc<[usize]>, key: Option<Key>, accounted: u64 },
}

impl Watch {
    /// The P is in `P_USER` running `tick`, for `ran` ns so far; `now` is sysmon's clock.
    pub(crate) fn running(&mut self, p: &P, tick: u64, ran: u64, now: u64) {
        if self.run.as_ref().is_some_and(|h| h.tick != tick) {
            self.ended(now);
        }
        self.poll_closing(now);
        if let Some(h) = &mut self.run {
            h.ran = h.ran.max(ran);
            h.progress(now, false);
            return;
        }
        let threshold = THRESHOLD_NS.load(Ordering::Relaxed);
        if ran < threshold || self.evented == Some(tick) {
            return;
        }
        self.evented = Some(tick);
        EVENTS.fetch_add(1, Ordering::Relaxed);
        let g = p.curg.load(Ordering::Relaxed);
        let (goid, name, m) = if g.is_null() {
            (0, None, None)
        } else {
            // SAFETY: curg only holds pointers made from GRefs (never freed).
            let g = unsafe { GRef::from_ptr(g) };
            // A lock sysmon must not wait for: a name being set is left out.
            let name = g.0.name_now();
            let m =
                crate::m::all().into_iter().find(|m| m.curg().is_some_and(|c| std::ptr::eq(c.as_ptr(), g.as_ptr())));
            (g.id(), name, m)
        };
        let stack = match m.map(|m| (m, request(m))) {
            Some((m, Sent::Yes)) => Stack::Asking(m, now),
            Some((m, Sent::Busy)) => Stack::Busy(m, now),
            _ => Stack::Unknown,
        };
        let mut h = Hog { tick, goid, name, threshold, ran, stack, traced: false };
        h.progress(now, false);
        self.run = Some(h);
    }

    /// The P's run, if any, is over (its tick changed, or the P left `P_USER`).
    pub(crate) fn ended(&mut self, now: u64) {
        self.poll_closing(now);
        let Some(mut h) = self.run.take() else { return };
        h.progress(now, true);
        if let Stack::Asking(..) = h.stack {
            // Keep collecting the stack at the next ticks; a run still waiting from before
            // gives up now.
            if let Some(mut old) = self.closing.take() {
                old.give_up();
                old.progress(now, true);
            }
            self.closing = Some(h);
        }
    }

    fn poll_closing(&mut self, now: u64) {
        if let Some(h) = &mut self.closing {
            h.progress(now, true);
            if !matches!(h.stack, Stack::Asking(..)) {
                self.closing = None;
            }
        }
    }
}

impl Hog {
    /// Collects the stack if it came, brings the record up to `ran`, and traces the event when
    /// it is over (`ended`) or has gone on long enough.
    fn progress(&mut self, now: u64, ended: bool) {
        if let Stack::Busy(m, at) = self.stack {
            // Once the run is over, its thread runs something else: too late to ask.
            self.stack = if ended {
                Stack::Unknown
            } else {
                match request(m) {
                    Sent::Yes => Stack::Asking(m, at),
                    Sent::Busy if now.saturating_sub(at) < PATIENCE_NS => Stack::Busy(m, at),
                    _ => Stack::Unknown,
                }
            };
        }
        if let Stack::Asking(m, at) = self.stack {
            match answer(m) {
                Some(a) => self.resolve(a),
                None if now.saturating_sub(at) >= PATIENCE_NS => self.give_up(),
                None => {}
            }
        }
        if let Stack::Known { key: Some(key), accounted, .. } = &mut self.stack {
            if self.ran > *accounted {
                let d = self.ran - *accounted;
                add(key, &None, false, 0, d, d);
                *accounted = self.ran;
            }
        }
        if matches!(self.stack, Stack::Asking(..) | Stack::Busy(..)) || self.traced || !trace() {
            return;
        }
        let late = self.ran >= TRACE_LATE_NS.max(self.threshold);
        if ended || late {
            self.traced = true;
            let pcs = match &self.stack {
                Stack::Known { pcs, .. } => pcs.clone(),
                _ => Arc::from(&[][..]),
            };
            send_line(Line {
                goid: self.goid,
                name: self.name.clone(),
                ran: self.ran,
                threshold: self.threshold,
                going: !ended,
                pcs,
            });
        }
    }

    /// Withdraws an unanswered request (an answer already on its way is taken).
    fn give_up(&mut self) {
        if let Stack::Asking(m, _) = self.stack {
            let a = withdraw(m);
            self.resolve(a);
        }
    }

    /// Records the event with the answer, if it is this goroutine's stack.
    fn resolve(&mut self, a: Option<RunningStack>) {
        let Some(a) = a.filter(|a| a.id == self.goid && self.goid != 0) else {
            self.stack = Stack::Unknown;
            return;
        };
        let labels_addr = a.labels.as_ref().map_or(0, |l| Arc::as_ptr(l) as *const () as usize);
        let key: Key = (a.pcs.clone().into_boxed_slice(), labels_addr);
        let over = self.ran.saturating_sub(self.threshold);
        let key = if add(&key, &a.labels, true, 1, self.ran, over) {
            Some(key)
        } else {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            None
        };
        self.stack = Stack::Known { pcs: Arc::from(a.pcs), key, accounted: self.ran };
    }
}

/// One trace line, before formatting.
struct Line {
    goid: u64,
    name: Option<Arc<str>>,
    ran: u64,
    threshold: u64,
    /// Still running when traced.
    going: bool,
    pcs: Arc<[usize]>,
}

/// The printing thread's queue, started with the first line.
static TRACER: OnceLock<Option<SyncSender<Line>>> = OnceLock::new();

fn send_line(l: Line) {
    let tx = TRACER.get_or_init(|| {
        let (tx, rx) = sync_channel(TRACE_QUEUE);
        let spawned = std::thread::Builder::new().name("gort-hogtrace".into()).spawn(move || print_lines(rx));
        spawned.ok().map(|_| tx)
    });
    if tx.as_ref().is_none_or(|tx| tx.try_send(l).is_err()) {
        TRACE_DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

fn print_lines(rx: Receiver<Line>) {
    while let Ok(l) = rx.recv() {
        eprintln!("{}", format_line(&l));
        TRACE_PRINTED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Frames printed per line.
const TRACE_FRAMES: usize = 4;

fn format_line(l: &Line) -> String {
    let who = match &l.name {
        Some(n) => format!("goroutine {} [{n:?}]", l.goid),
        None => format!("goroutine {}", l.goid),
    };
    let what = if l.going { "has run" } else { "ran" };
    let more = if l.going { ", still running" } else { "" };
    let frames = if l.pcs.is_empty() {
        "stack unavailable".to_string()
    } else {
        let sym = *SYMBOLIZER.read().unwrap_or_else(|e| e.into_inner());
        let mut names = match sym {
            Some(f) => f(&l.pcs),
            None => l.pcs.iter().map(|pc| format!("{pc:#x}")).collect(),
        };
        let cut = names.len() > TRACE_FRAMES;
        names.truncate(TRACE_FRAMES);
        if cut {
            names.push("...".into());
        }
        names.join(" <- ")
    };
    format!(
        "gort: hog: {who} {what} {} without entering the scheduler (threshold {}){more}: {frames}",
        fmt_ns(l.ran),
        fmt_ns(l.threshold)
    )
}

/// `12.3ms`, `10ms`, `1.5s`, `500us`.
fn fmt_ns(ns: u64) -> String {
    let (v, unit) = if ns >= 1_000_000_000 {
        (format!("{:.2}", ns as f64 / 1e9), "s")
    } else if ns >= 1_000_000 {
        (format!("{:.1}", ns as f64 / 1e6), "ms")
    } else {
        (format!("{:.1}", ns as f64 / 1e3), "us")
    };
    let v = if v.contains('.') { v.trim_end_matches('0').trim_end_matches('.') } else { &v };
    format!("{v}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_short() {
        assert_eq!(fmt_ns(12_345_678), "12.3ms");
        assert_eq!(fmt_ns(10_000_000), "10ms");
        assert_eq!(fmt_ns(1_500_000_000), "1.5s");
        assert_eq!(fmt_ns(500_000), "500us");
    }

    #[test]
    fn a_line_names_the_goroutine_and_its_length() {
        let l = Line {
            goid: 7,
            name: Some("spinner".into()),
            ran: 100_000_000,
            threshold: 10_000_000,
            going: false,
            pcs: Arc::from(&[][..]),
        };
        assert_eq!(
            format_line(&l),
            "gort: hog: goroutine 7 [\"spinner\"] ran 100ms without entering the scheduler (threshold 10ms): \
             stack unavailable"
        );
    }
}
