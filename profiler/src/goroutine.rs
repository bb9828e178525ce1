//! The goroutine profile: every live goroutine's stack, without stopping the world.
//!
//! A snapshot visits every G once ([`gort_runtime::for_each_g_held`]). A parked or runnable
//! goroutine is held still, a batch at a time, until the walk of its own stack from the park
//! site the runtime recorded is done; an M that would resume it meanwhile waits for that long
//! at most, and no other goroutine notices. The goroutine taking the profile walks
//! itself. A goroutine running on another M is walked by that M's own thread, from a signal
//! handler (`gort_runtime::running_stacks`: SIGURG, a bounded wait, no stop-the-world). One in a
//! `blocking` call is not interrupted (its system call would see EINTR), nor one whose M does
//! not answer in time: it is counted with an empty stack, and the full dump says so in Go's
//! words (`goroutine running on other thread; stack unavailable`). A goroutine that switched
//! between the two passes (running when the first looked, switched out or between its stack
//! and its M's when the second asked) is looked for again, for up to about 25 ms
//! (`look_again`).
//!
//! Raw stacks are grouped before symbolization (debug=0 and 1), so 100k goroutines parked in
//! the same place cost 100k short walks and one symbolization.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::panic::Location;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort_runtime::GRef;

use crate::builder::{frames, goroutine_frames, Builder, LFrame, Trim};
use crate::labels::LabelSet;
use crate::symbol::Symbolizer;
use crate::walk::{walk_current, MAX_DEPTH};

/// One goroutine in a full dump.
#[derive(Clone, Debug)]
pub struct GStack {
    /// Goroutine id.
    pub id: u64,
    /// `running`, `runnable`, `syscall`, or the wait reason (`chan receive`).
    pub state: String,
    /// Nanoseconds spent waiting (0 unless waiting).
    pub waiting_ns: u64,
    /// Return addresses, leaf first; `None` if the stack could not be read.
    pub pcs: Option<Vec<usize>>,
    /// The walk hit [`MAX_DEPTH`].
    pub truncated: bool,
    /// Parent goroutine id.
    pub parent_id: u64,
    /// Where it was spawned.
    pub created_at: Option<&'static Location<'static>>,
    /// Return addresses at the spawn, innermost first (zeros: unknown); see
    /// [`gort_runtime::GoroutineInfo::created_pcs`].
    pub created_pcs: [usize; gort_runtime::g::CREATED_PCS],
    /// This is the goroutine taking the dump.
    pub current: bool,
    /// The type name of its body ([`gort_runtime::GoroutineInfo::entry_name`]).
    pub entry_name: Option<&'static str>,
    /// Its labels ([`with_labels`](crate::with_labels)), printed in its header as Go 1.27 does.
    pub labels: Option<Arc<LabelSet>>,
}

/// Grouped stacks: (raw stack, labels) -> number of goroutines, and the total.
pub struct Grouped {
    /// Distinct stacks and label sets with their counts (an empty stack: goroutines that could
    /// not be walked).
    pub groups: Vec<(Vec<usize>, Option<Arc<LabelSet>>, i64)>,
    /// Goroutines in total.
    pub total: i64,
    /// The body's type name of the goroutines with each stack (the same for all of them: the
    /// stack passes through the runtime's entry frame monomorphized for that body).
    pub entries: HashMap<Box<[usize]>, &'static str>,
}

type GroupKey = (Box<[usize]>, Option<Arc<LabelSet>>);

/// How long [`look_again`] keeps looking, and its first pause; each pause doubles the last. A
/// thread the OS took off its CPU between two goroutines gets most of a time slice to come
/// back, and a goroutine that stays unreadable (running on a stack not its own) costs a dump
/// this much at most, plus one stack request's patience.
const AGAIN_SPAN: Duration = Duration::from_millis(25);
const AGAIN_PAUSE: Duration = Duration::from_micros(100);

/// A goroutine [`look_again`] found.
struct Found {
    id: u64,
    pcs: Vec<usize>,
    truncated: bool,
    labels: Option<Arc<LabelSet>>,
    entry: Option<&'static str>,
}

/// Looks again for the goroutines (with their ids) that neither pass of a snapshot could read:
/// holds each still if it has switched out since, asks again if it runs. A goroutine that
/// finished meanwhile is dropped; one still missing after [`AGAIN_SPAN`] stays without a
/// stack.
fn look_again(mut missed: Vec<(GRef, u64)>) -> Vec<Found> {
    let mut found = Vec::new();
    let mut buf = [0usize; MAX_DEPTH];
    let deadline = Instant::now() + AGAIN_SPAN;
    let mut pause = AGAIN_PAUSE;
    while !missed.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause *= 2;
        missed.retain(|&(g, id)| {
            if g.id() != id || !g.has_readable_stack() {
                return false;
            }
            let got = g.with_parked(|p| {
                let w = p.walk(&mut buf);
                (buf[..w.len].to_vec(), w.truncated, crate::labels::from_slot(p.labels()), p.entry_name())
            });
            match got {
                Some((pcs, truncated, labels, entry)) => {
                    found.push(Found { id, pcs, truncated, labels, entry });
                    false
                }
                None => true,
            }
        });
        if missed.is_empty() {
            break;
        }
        let running = running();
        missed.retain(|&(_, id)| match running.iter().find(|r| r.id == id) {
            Some(r) => {
                found.push(Found {
                    id,
                    pcs: r.pcs.clone(),
                    truncated: r.truncated,
                    labels: crate::labels::from_slot(r.labels.clone()),
                    entry: None,
                });
                false
            }
            None => true,
        });
    }
    found
}

/// Walks every goroutine and groups identical stacks (with identical labels). On a goroutine
/// the walk yields its P now and then ([`gort_runtime::for_each_g_held_yielding`]): call it
/// holding no thread lock.
pub fn grouped() -> Grouped {
    grouped_in(Scan::Yielding)
}

/// How a snapshot walks the goroutines.
#[derive(Clone, Copy)]
pub(crate) enum Scan {
    /// Yielding its P between batches (the caller holds nothing a park must not).
    Yielding,
    /// Without yielding (the caller holds a thread lock, or must not park).
    InPlace,
}

impl Scan {
    fn each_held(self, f: impl FnMut(GRef, Option<&gort_runtime::Parked<'_>>)) {
        match self {
            Scan::Yielding => gort_runtime::for_each_g_held_yielding(f),
            Scan::InPlace => gort_runtime::for_each_g_held(f),
        }
    }
}

/// [`grouped`], walking as `scan` says.
pub(crate) fn grouped_in(scan: Scan) -> Grouped {
    // Unlabelled stacks (the common case) are counted without building a key per goroutine.
    let mut plain: HashMap<Box<[usize]>, i64> = HashMap::new();
    let mut labelled: HashMap<GroupKey, i64> = HashMap::new();
    let mut entries: HashMap<Box<[usize]>, &'static str> = HashMap::new();
    let mut buf = [0usize; MAX_DEPTH];
    let mut walked = 0i64;
    let mut entry = |stack: &[usize], e: Option<&'static str>| {
        if let Some(e) = e {
            if !entries.contains_key(stack) {
                entries.insert(stack.into(), e);
            }
        }
    };
    let mut add = |stack: &[usize], labels: Option<Arc<LabelSet>>, n: i64| match labels {
        None => match plain.get_mut(stack) {
            Some(c) => *c += n,
            None => {
                plain.insert(stack.into(), n);
            }
        },
        Some(l) => *labelled.entry((stack.into(), Some(l))).or_insert(0) += n,
    };
    let me = gort_runtime::current_id();
    // Goroutines the hold could not take but that have a stack: running, or switching.
    let mut unheld: Vec<(GRef, u64)> = Vec::new();
    scan.each_held(|g, p| {
        let got = p.map(|p| (p.walk(&mut buf), crate::labels::from_slot(p.labels()), p.entry_name()));
        match got {
            Some((w, labels, e)) => {
                walked += 1;
                entry(&buf[..w.len], e);
                add(&buf[..w.len], labels, 1);
            }
            None if g.has_readable_stack() && Some(g.id()) != me => unheld.push((g, g.id())),
            None => {}
        }
    });
    let running = running();
    unheld.retain(|&(_, id)| !running.iter().any(|r| r.id == id));
    for r in running {
        walked += 1;
        add(&r.pcs, crate::labels::from_slot(r.labels), 1);
    }
    for f in look_again(unheld) {
        walked += 1;
        entry(&f.pcs, f.entry);
        add(&f.pcs, f.labels, 1);
    }
    let mut total = gort_runtime::num_goroutine() as i64;
    if me.is_some() {
        let w = walk_current(&mut buf);
        let labels = crate::labels::from_slot(gort_runtime::current_labels());
        entry(&buf[..w.len], gort_runtime::current_entry_name());
        add(&buf[..w.len], labels, 1);
        walked += 1;
    }
    total = total.max(walked);
    if total > walked {
        add(&[], None, total - walked);
    }
    let mut groups: Vec<(Vec<usize>, Option<Arc<LabelSet>>, i64)> =
        plain.into_iter().map(|(k, v)| (k.into_vec(), None, v)).collect();
    groups.extend(labelled.into_iter().map(|((k, l), v)| (k.into_vec(), l, v)));
    groups.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)).then_with(|| a.1.cmp(&b.1)));
    Grouped { groups, total, entries }
}

/// The goroutines running on other threads, each walked by its own thread (no stop-the-world;
/// an M that does not answer in time leaves its goroutine without a stack). The leaf is the
/// interrupted pc, not a return address: it gets `+ 1`, as symbolization looks up `pc - 1`.
fn running() -> Vec<gort_runtime::RunningStack> {
    let me = gort_runtime::current_id();
    let mut v = gort_runtime::running_stacks();
    v.retain(|r| Some(r.id) != me && !r.pcs.is_empty());
    for r in &mut v {
        r.pcs[0] += 1;
    }
    v
}

/// Every live goroutine with its stack, the caller first, then by id (the full dump). On a
/// goroutine the walk yields its P now and then, as [`grouped`]'s does.
pub fn all() -> Vec<GStack> {
    all_in(Scan::Yielding)
}

/// [`all`], walking as `scan` says.
pub(crate) fn all_in(scan: Scan) -> Vec<GStack> {
    let infos = gort_runtime::goroutines();
    let me = gort_runtime::current_id();
    type Walked = (Vec<usize>, bool, Option<Arc<LabelSet>>);
    let mut stacks: HashMap<u64, Walked> = HashMap::with_capacity(infos.len());
    let mut buf = [0usize; MAX_DEPTH];
    let mut unheld: Vec<(GRef, u64)> = Vec::new();
    scan.each_held(|g, p| match p.map(|p| (p.id(), p.walk(&mut buf), p.labels())) {
        Some((id, w, l)) => {
            stacks.insert(id, (buf[..w.len].to_vec(), w.truncated, crate::labels::from_slot(l)));
        }
        None if g.has_readable_stack() && Some(g.id()) != me => unheld.push((g, g.id())),
        None => {}
    });
    for r in running() {
        stacks.insert(r.id, (r.pcs, r.truncated, crate::labels::from_slot(r.labels)));
    }
    unheld.retain(|(_, id)| !stacks.contains_key(id));
    for f in look_again(unheld) {
        stacks.insert(f.id, (f.pcs, f.truncated, f.labels));
    }
    if let Some(id) = me {
        let w = walk_current(&mut buf);
        let l = crate::labels::from_slot(gort_runtime::current_labels());
        stacks.insert(id, (buf[..w.len].to_vec(), w.truncated, l));
    }
    let mut v: Vec<GStack> = infos
        .into_iter()
        .map(|i| {
            let current = Some(i.id) == me;
            let (pcs, truncated, labels) = match stacks.remove(&i.id) {
                Some((s, t, l)) => (Some(s), t, l),
                None => (None, false, None),
            };
            GStack {
                id: i.id,
                state: if current { "running".into() } else { i.state },
                waiting_ns: i.waiting_ns,
                pcs,
                truncated,
                parent_id: i.parent_id,
                created_at: i.created_at,
                created_pcs: i.created_pcs,
                current,
                entry_name: i.entry_name,
                labels,
            }
        })
        .collect();
    v.sort_by_key(|g| (!g.current, g.id));
    v
}

/// The debug=0 profile of `g` (from [`grouped`]).
pub fn proto(sym: &mut Symbolizer, g: &Grouped) -> crate::proto::Profile {
    let mut b = Builder::new(sym, &[("goroutine", "count")], ("goroutine", "count"), 1);
    for (stack, labels, n) in &g.groups {
        let locs = b.goroutine_locations(stack, g.entries.get(&stack[..]).copied());
        let labels = labels.iter().flat_map(|l| l.0.iter()).map(|(k, v)| b.str_label(k, v)).collect();
        b.sample(locs, vec![*n], labels);
    }
    b.finish()
}

/// Go's `#\t0xpc\tfunc+0xoff\tfile:line` lines for a stack.
pub(crate) fn hash_lines(out: &mut String, fr: &[LFrame]) {
    for f in fr {
        let _ = writeln!(out, "#\t{:#x}\t{}+{:#x}\t{}", f.pc - 1, f.name(), f.offset(), f.file_line());
    }
}

/// The debug=1 text of `g` (from [`grouped`]): `goroutine profile: total N`, then per stack
/// `N @ 0x.. 0x..` and its frames.
pub fn text1(sym: &mut Symbolizer, g: &Grouped) -> String {
    let mut out = format!("goroutine profile: total {}\n", g.total);
    for (stack, labels, n) in &g.groups {
        out.push_str(&n.to_string());
        out.push_str(" @");
        for pc in stack {
            let _ = write!(out, " {pc:#x}");
        }
        out.push('\n');
        if let Some(l) = labels {
            let _ = writeln!(out, "# labels: {}", l.to_go_string());
        }
        hash_lines(&mut out, &goroutine_frames(sym, stack, g.entries.get(&stack[..]).copied()));
        out.push('\n');
    }
    out
}

/// Renders a full dump of `gs` (public for tests that fake a long wait).
pub fn render2(sym: &mut Symbolizer, gs: &[GStack]) -> String {
    let mut out = String::new();
    for (i, g) in gs.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        // The caller's own goroutine is running, not waiting: no minutes.
        let labels = g.labels.as_ref().filter(|l| !l.0.is_empty()).map(|l| l.to_go_string());
        gort_runtime::g::write_header(
            &mut out,
            g.id,
            &g.state,
            if g.current { 0 } else { g.waiting_ns },
            labels.as_deref(),
        );
        let fr = match &g.pcs {
            Some(pcs) => goroutine_frames(sym, pcs, g.entry_name),
            None => {
                out.push_str("\tgoroutine running on other thread; stack unavailable\n");
                Vec::new()
            }
        };
        for f in &fr {
            let _ = writeln!(out, "{}(...)\n\t{} +{:#x}", f.name(), f.file_line(), f.offset());
        }
        if g.truncated {
            out.push_str("...additional frames elided...\n");
        }
        // Go prints ` in goroutine N` only when a goroutine spawned it; here parent 0 means a
        // plain thread did (the caller of `gort::run`, or any non-goroutine code).
        let parent = if g.parent_id == 0 { String::new() } else { format!(" in goroutine {}", g.parent_id) };
        if let Some(f) = spawner(sym, &g.created_pcs) {
            let _ = writeln!(out, "created by {}{parent}\n\t{} +{:#x}", f.name(), f.file_line(), f.offset());
        } else if let Some(loc) = g.created_at {
            let _ = writeln!(out, "created by {}{parent}\n\t{}:{}", creator(&fr), loc.file(), loc.line());
        }
    }
    out
}

/// The frame that spawned a goroutine (Go's `gopc`): of the frames at the spawn's address (with
/// debug info, the runtime's inlined `spawn` path first, then the caller), the first that is not
/// the runtime's own.
fn spawner(sym: &mut Symbolizer, pcs: &[usize]) -> Option<LFrame> {
    let n = pcs.iter().position(|&pc| pc == 0).unwrap_or(pcs.len());
    frames(sym, &pcs[..n], Trim::None).into_iter().find(|f| {
        let name = f.name();
        !(name.starts_with("gort_runtime::") || name.starts_with("<gort_runtime::") || name.starts_with("0x"))
    })
}

/// Fallback when the spawn's return addresses are unknown (a caller built without frame
/// pointers): the spawning function's name, as far as it can be told: the goroutine's outermost frame is
/// normally the closure given to `go!`, whose name is its defining function's plus
/// `::{{closure}}`. Otherwise `???` (the runtime records the spawn site's file and line, not its
/// function).
fn creator(fr: &[LFrame]) -> String {
    match fr.last() {
        Some(f) if f.name().ends_with("::{{closure}}") => {
            let mut n = f.name();
            while let Some(s) = n.strip_suffix("::{{closure}}") {
                n = s;
            }
            n.to_string()
        }
        _ => "???".to_string(),
    }
}
