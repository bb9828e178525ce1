//! The `hog` profile: goroutines that ran at least the hog threshold without entering the
//! scheduler, on the stack they were running when sysmon caught them (`gort_runtime::hog` has
//! how they are detected and measured). Cumulative, like `mutex` and `block`: a `?seconds=N`
//! delta is two snapshots subtracted. A goroutine still spinning is in it already, and grows.
//!
//! # Format
//!
//! Sample types `count/count` (events), `delay/nanoseconds` (time run beyond the threshold: what
//! the hog made others wait past their due, the default) and `run/nanoseconds` (time run);
//! period type `delay/nanoseconds`, period 1; a comment names the threshold. Samples carry the
//! hog's labels. Stacks are trimmed as goroutine stacks are ([`Trim::Goroutine`]), so the leaf is
//! the function that was spinning (or the runtime entry point it was inside). An event whose
//! stack could not be taken shows as the pseudo-frame [`NO_STACK`].
//!
//! The debug=1 text follows the mutex profile's shape: `--- hog:`, `threshold=<ns>`, then per
//! record, largest delay first, `<delay ns> <count> @ 0x..`, a `# run: <ns>` line, the labels,
//! and the `#` frame lines.
//!
//! # Trace lines
//!
//! `GORT_HOGTRACE=1` lines are printed by the runtime, which cannot symbolize: this module
//! installs [`trace_frames`] into it when the program loads (an `.init_array` entry), so any
//! program linking the profiler (every program that depends on `gort`) prints names.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use gort_runtime::hog;

use crate::builder::{frames, Builder, Trim};
use crate::labels::LabelSet;
use crate::symbol::Symbolizer;

/// The frame an event without a stack is charged to.
pub const NO_STACK: &str = "gort::hog_stack_unavailable";

/// One record, label sets resolved; the leaf address made a return address (`+ 1`).
#[derive(Clone, Debug)]
pub struct Record {
    /// Leaf first, ready for symbolization.
    pub stack: Vec<usize>,
    /// The hog's labels.
    pub labels: Option<Arc<LabelSet>>,
    /// Events.
    pub count: i64,
    /// Nanoseconds run beyond the threshold.
    pub delay_ns: i64,
    /// Nanoseconds run.
    pub run_ns: i64,
}

/// (stack, labels) -> (count, delay, run).
type Merged = HashMap<(Vec<usize>, Option<Arc<LabelSet>>), (i64, i64, i64)>;

/// The records, largest delay first (ties by stack), merged where the runtime kept equal label
/// sets apart.
pub fn records() -> Vec<Record> {
    let mut m: Merged = HashMap::new();
    for r in hog::records() {
        let mut stack = r.stack;
        // The leaf is the interrupted pc, not a return address: symbolization looks up `pc - 1`.
        if let Some(leaf) = stack.first_mut() {
            *leaf += 1;
        }
        let e = m.entry((stack, crate::labels::from_slot(r.labels))).or_default();
        e.0 += r.count;
        e.1 += r.delay_ns;
        e.2 += r.run_ns;
    }
    let mut v: Vec<Record> = m
        .into_iter()
        .map(|((stack, labels), (count, delay_ns, run_ns))| Record { stack, labels, count, delay_ns, run_ns })
        .collect();
    v.sort_by(|a, b| {
        b.delay_ns.cmp(&a.delay_ns).then_with(|| a.stack.cmp(&b.stack)).then_with(|| a.labels.cmp(&b.labels))
    });
    v
}

/// The pprof profile.
pub fn proto(sym: &mut Symbolizer) -> crate::proto::Profile {
    let mut b = Builder::new(
        sym,
        &[("count", "count"), ("delay", "nanoseconds"), ("run", "nanoseconds")],
        ("delay", "nanoseconds"),
        1,
    );
    for r in records() {
        let locs =
            if r.stack.is_empty() { vec![b.pseudo_location(NO_STACK)] } else { b.locations(&r.stack, Trim::Goroutine) };
        let labels = r.labels.iter().flat_map(|l| l.0.iter()).map(|(k, v)| b.str_label(k, v)).collect();
        b.sample(locs, vec![r.count, r.delay_ns, r.run_ns], labels);
    }
    b.default_sample_type("delay");
    let comment = b.string(&format!("hog threshold {}ns", hog::threshold().as_nanos()));
    let mut p = b.finish();
    p.comment.push(comment);
    p
}

/// The debug=1 text.
pub fn text1(sym: &mut Symbolizer) -> String {
    let mut out = format!("--- hog:\nthreshold={}\n", hog::threshold().as_nanos());
    for r in records() {
        let _ = write!(out, "{} {} @", r.delay_ns, r.count);
        for pc in &r.stack {
            let _ = write!(out, " {pc:#x}");
        }
        out.push('\n');
        let _ = writeln!(out, "# run: {}", r.run_ns);
        if let Some(l) = &r.labels {
            let _ = writeln!(out, "# labels: {}", l.to_go_string());
        }
        if r.stack.is_empty() {
            let _ = writeln!(out, "#\t0x0\t{NO_STACK}+0x0\t?:0");
        }
        crate::goroutine::hash_lines(&mut out, &frames(sym, &r.stack, Trim::Goroutine));
        out.push('\n');
    }
    out
}

/// The runtime's trace-line symbolizer: the names of `pcs` (raw, leaf first, the leaf an
/// interrupted pc), trimmed as goroutine stacks are.
pub fn trace_frames(pcs: &[usize]) -> Vec<String> {
    let mut pcs = pcs.to_vec();
    if let Some(leaf) = pcs.first_mut() {
        *leaf += 1;
    }
    let _g = crate::heap::NoSample::enter();
    crate::with_symbolizer(|sym| frames(sym, &pcs, Trim::Goroutine).iter().map(|f| f.name().to_string()).collect())
}

extern "C" fn install_trace_symbolizer() {
    hog::set_symbolizer(trace_frames);
}

// Runs when the program loads, before `main`: the runtime's trace lines need names even in a
// program that never calls the profiler. It only stores a function pointer (under a lock no one
// else can hold yet), which needs nothing of std's runtime. `#[used]` keeps it in the link.
#[used]
#[link_section = ".init_array"]
static INSTALL_TRACE_SYMBOLIZER: extern "C" fn() = install_trace_symbolizer;
