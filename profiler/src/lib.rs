//! gort-profiler: Go's `runtime/pprof`, from inside gort.
//!
//! `go tool pprof` reads what this crate writes as if a Go program had written it: the same
//! profiles (`goroutine`, `heap`, `allocs`, `threadcreate`, `mutex`, `block`), the same sample
//! types, periods and text formats, and function names already in the file (no symbolization
//! step). One more, `hog` ([`hog`]), shows goroutines that ran past a threshold without
//! entering the scheduler. The CPU profile too ([`start_cpu_profile`]/[`stop_cpu_profile`],
//! `/debug/pprof/profile?seconds=N`, see [`cpu`]), and a flame graph of any profile
//! (`/debug/pprof/flamegraph`, see [`flame`]). Beyond Go 1.19: the goroutine leak profile
//! (`/debug/pprof/goroutineleak`, see [`leak`]) from the runtime's leak census.
//!
//! ```
//! use gort_runtime::chan::chan;
//!
//! let (tx, rx) = chan::<()>(0);
//! // SAFETY: the goroutine holds only its `Receiver` (Send) and touches no thread-local.
//! let h = unsafe { gort_runtime::spawn(move || rx.recv()) };
//! while !gort_runtime::goroutines().iter().any(|g| g.id == h.id() && g.state == "chan receive") {
//!     std::thread::yield_now();
//! }
//! let mut text = Vec::new();
//! gort_profiler::lookup("goroutine").unwrap().write_to(&mut text, 1).unwrap();
//! let text = String::from_utf8(text).unwrap();
//! assert!(text.starts_with("goroutine profile: total"), "{text}");
//! tx.send(()).unwrap();
//! h.join().unwrap();
//! ```
//!
//! # How a profile is made
//!
//! 1. **Stacks** ([`walk`]): raw return addresses from the runtime's unwinder (frame pointers
//!    where the build forces them, DWARF CFI everywhere else), every read bounds-checked: a
//!    parked goroutine is walked from the park site the runtime recorded while the runtime
//!    holds it still (its hold), the caller walks itself, an allocation walks its own stack.
//!    Nothing stops the world.
//! 2. **Symbols** ([`symbol`]): the running binary's own DWARF through `addr2line`, cached per
//!    address, inlined frames expanded, Rust names demangled without the hash.
//! 3. **Hiding machinery** ([`builder`]): the frames of the runtime's park path, the scheduler,
//!    corosensei, the allocator and the profiler are hidden as Go hides `runtime.*`, so the leaf
//!    is what the user called (`gort_runtime::chan::Receiver<T>::recv`) or the function that
//!    allocated.
//! 4. **Encoding** ([`proto`]): prost messages with `profile.proto`'s field numbers, gzipped.
//!
//! # Rejected alternatives
//!
//! - *Stopping the world to walk goroutines* (Go's goroutine profile does, briefly): gort has no
//!   safe points to stop at; a hold keeps each parked goroutine still while it is walked instead.
//! - *Unwinding with `backtrace` (libgcc's unwinder)*: it allocates and takes locks, which the
//!   allocator hook cannot afford; the runtime's own CFI unwinder (`framehop` over tables copied
//!   at start, preallocated caches) does neither.
//! - *Symbolizing at record time*: the allocator would pay for it on every sample; addresses are
//!   symbolized only when a profile is written.
//!
//! # API
//!
//! Shaped like Go's `runtime/pprof`: [`lookup`]`("heap")`, [`Profile::write_to`]`(w, debug)`,
//! [`Profile::count`], [`profiles`], [`write_heap_profile`], [`set_mem_profile_rate`],
//! [`set_mutex_profile_fraction`] and [`set_block_profile_rate`] (both off until set). The heap
//! profiles need [`Allocator`] installed as the `#[global_allocator]`. For an HTTP server:
//! [`Profile::description`] (the index page), [`Profile::to_proto`] and [`proto::delta`]
//! (`?seconds=N`), [`symbolize`] (`/debug/pprof/symbol`); [`serve`] is that server, Go's
//! `net/http/pprof` on a gort listener ([`http`]; `examples/leak.rs`, `examples/heap.rs`).
//!
//! Profile building runs on the caller's stack (a goroutine's 256 KiB by default is plenty; the
//! first profile reads the binary's DWARF) and never parks the calling goroutine.
//!
//! # Not here yet
//!
//! - Labels on CPU samples: goroutine labels ([`with_labels`], Go's `pprof.Do`) are in the
//!   goroutine profile, not yet in the CPU profile ([`cpu`]).
//! - The execution trace (`/debug/pprof/trace` answers 501).
//! - Goroutines inside `blocking` at snapshot time are counted with an empty stack (Go stops the
//!   world to walk them; gort asks running goroutines' threads for their stacks, but does not
//!   interrupt a system call).
//! - `threadcreate` stacks end where the runtime decided to start an M (Go shows the same path).
//! - Release builds with `debug = "line-tables-only"` name inlined functions without their path;
//!   the symbolizer reconstructs crate and module from the source file, but a closure loses its
//!   enclosing function. `debug = "limited"` gives exact names.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod builder;
pub mod contention;
pub mod cpu;
pub mod flame;
pub mod goroutine;
pub mod heap;
pub mod hog;
pub mod http;
pub mod labels;
pub mod leak;
pub mod metrics;
mod offheap;
pub mod proto;
pub mod symbol;
pub mod threadcreate;
pub mod walk;
pub mod wall;

use std::io::{self, Write};
use std::sync::Mutex;

pub use cpu::{cpu_profile_running, set_cpu_profile_rate, start_cpu_profile, stop_cpu_profile};
pub use flame::write_flamegraph;
pub use gort_runtime::mprof::{set_block_profile_rate, set_mutex_profile_fraction};
pub use heap::{mem_profile_rate, set_mem_profile_rate, Allocator, DEFAULT_MEM_PROFILE_RATE};
pub use http::{serve, Server};
pub use labels::{labels, with_labels, LabelSet};

use builder::{Builder, Trim};
use contention::Which;
use heap::NoSample;
use symbol::Symbolizer;

/// The process's symbolizer, created on first use. A thread lock (never a gort one): profile
/// building must not park while [`NoSample`] is set.
static SYMBOLIZER: Mutex<Option<Symbolizer>> = Mutex::new(None);

fn with_symbolizer<R>(f: impl FnOnce(&mut Symbolizer) -> R) -> R {
    let mut g = SYMBOLIZER.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(Symbolizer::new))
}

pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Allocs,
    Block,
    Goroutine,
    Heap,
    Hog,
    Mutex,
    ThreadCreate,
}

/// A named profile, like Go's `*pprof.Profile`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Profile {
    kind: Kind,
}

const ALL: [Kind; 7] =
    [Kind::Allocs, Kind::Block, Kind::Goroutine, Kind::Heap, Kind::Hog, Kind::Mutex, Kind::ThreadCreate];

/// The profile called `name` (`goroutine`, `heap`, `allocs`, `threadcreate`, `mutex`, `block`,
/// and gort's `hog`, see [`hog`]), as Go's `pprof.Lookup`. The CPU profile is not exported yet.
pub fn lookup(name: &str) -> Option<Profile> {
    ALL.into_iter().map(|kind| Profile { kind }).find(|p| p.name() == name)
}

/// Every profile, sorted by name (Go's `pprof.Profiles`).
pub fn profiles() -> Vec<Profile> {
    ALL.into_iter().map(|kind| Profile { kind }).collect()
}

/// Go's `pprof.WriteHeapProfile`: the heap profile, gzipped proto.
pub fn write_heap_profile<W: Write + ?Sized>(w: &mut W) -> io::Result<()> {
    Profile { kind: Kind::Heap }.write_to(w, 0)
}

impl Profile {
    /// The profile's name.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Allocs => "allocs",
            Kind::Block => "block",
            Kind::Goroutine => "goroutine",
            Kind::Heap => "heap",
            Kind::Hog => "hog",
            Kind::Mutex => "mutex",
            Kind::ThreadCreate => "threadcreate",
        }
    }

    /// Go's one-line description (the `/debug/pprof/` index shows it).
    pub fn description(&self) -> &'static str {
        match self.kind {
            Kind::Allocs => "A sampling of all past memory allocations",
            Kind::Block => "Stack traces that led to blocking on synchronization primitives",
            Kind::Goroutine => {
                "Stack traces of all current goroutines. Use debug=2 as a query parameter to export in the same \
                 format as an unrecovered panic."
            }
            Kind::Heap => {
                "A sampling of memory allocations of live objects. You can specify the gc GET parameter to run GC \
                 before taking the heap sample."
            }
            Kind::Hog => {
                "Stack traces of goroutines that ran longer than the hog threshold (GORT_HOGTHRESHOLD, 10ms by \
                 default) without entering the scheduler"
            }
            Kind::Mutex => "Stack traces of holders of contended mutexes",
            Kind::ThreadCreate => "Stack traces that led to the creation of new OS threads",
        }
    }

    /// How many entries the profile has now: goroutines, heap records, threads created, mutex,
    /// block or hog records (distinct stacks).
    pub fn count(&self) -> usize {
        let _g = NoSample::enter();
        match self.kind {
            Kind::Goroutine => gort_runtime::num_goroutine(),
            Kind::Heap | Kind::Allocs => heap::records().len(),
            Kind::ThreadCreate => threadcreate::count(),
            Kind::Hog => hog::records().len(),
            Kind::Mutex => gort_runtime::mprof::mutex_profile().len(),
            Kind::Block => gort_runtime::mprof::block_profile().len(),
        }
    }

    /// The profile as a pprof message (what debug=0 writes, before gzip). A delta profile
    /// (`?seconds=N`) is two of these subtracted.
    pub fn to_proto(&self) -> proto::Profile {
        let snap = Snapshot::take(self.kind, 0);
        let _g = NoSample::enter();
        with_symbolizer(|sym| match self.kind {
            Kind::Goroutine => goroutine::proto(sym, &snap.grouped()),
            Kind::Heap => heap_proto(sym, false),
            Kind::Allocs => heap_proto(sym, true),
            Kind::ThreadCreate => threadcreate::proto(sym),
            Kind::Hog => hog::proto(sym),
            Kind::Mutex => contention::proto(sym, Which::Mutex),
            Kind::Block => contention::proto(sym, Which::Block),
        })
    }

    /// Writes the profile: `debug == 0` the gzipped proto; `1` Go's legacy text (`goroutine
    /// profile: total N`, `heap profile: ...`, `--- mutex:`, `--- contention:`, `--- hog:`); `2` for
    /// `goroutine` the full dump in Go's traceback format (other profiles treat 2 as 1).
    pub fn write_to<W: Write + ?Sized>(&self, w: &mut W, debug: u8) -> io::Result<()> {
        let out: Vec<u8> = {
            let snap = Snapshot::take(self.kind, debug);
            let _g = NoSample::enter();
            with_symbolizer(|sym| {
                let text = match (self.kind, debug) {
                    (Kind::Goroutine, 0) => return goroutine::proto(sym, &snap.grouped()).encode_gz(),
                    (Kind::Heap, 0) => return heap_proto(sym, false).encode_gz(),
                    (Kind::Allocs, 0) => return heap_proto(sym, true).encode_gz(),
                    (Kind::ThreadCreate, 0) => return threadcreate::proto(sym).encode_gz(),
                    (Kind::Hog, 0) => return hog::proto(sym).encode_gz(),
                    (Kind::Mutex, 0) => return contention::proto(sym, Which::Mutex).encode_gz(),
                    (Kind::Block, 0) => return contention::proto(sym, Which::Block).encode_gz(),
                    (Kind::Goroutine, 1) => goroutine::text1(sym, &snap.grouped()),
                    (Kind::Goroutine, _) => goroutine::render2(sym, &snap.all()),
                    (Kind::Heap | Kind::Allocs, _) => heap_text(sym),
                    (Kind::ThreadCreate, _) => threadcreate::text1(sym),
                    (Kind::Hog, _) => hog::text1(sym),
                    (Kind::Mutex, _) => contention::text1(sym, Which::Mutex),
                    (Kind::Block, _) => contention::text1(sym, Which::Block),
                };
                with_no_lines_note(sym, text).into_bytes()
            })
        };
        w.write_all(&out)
    }
}

/// A goroutine profile's walk of every goroutine, taken before the profile is built: building
/// holds the symbolizer's thread lock and sets [`NoSample`], neither of which may be held
/// across a park, and the walk yields its P now and then
/// ([`gort_runtime::for_each_g_held_yielding`]).
enum Snapshot {
    None,
    Grouped(goroutine::Grouped),
    All(Vec<goroutine::GStack>),
}

impl Snapshot {
    /// What the goroutine profile written with `debug` needs; nothing for the other profiles.
    fn take(kind: Kind, debug: u8) -> Snapshot {
        match (kind, debug) {
            (Kind::Goroutine, 0 | 1) => Snapshot::Grouped(goroutine::grouped()),
            (Kind::Goroutine, _) => Snapshot::All(goroutine::all()),
            _ => Snapshot::None,
        }
    }

    /// The grouped walk (taken now, without yielding, if the snapshot is not one).
    fn grouped(self) -> goroutine::Grouped {
        match self {
            Snapshot::Grouped(g) => g,
            _ => goroutine::grouped_in(goroutine::Scan::InPlace),
        }
    }

    /// Every goroutine's stack (taken now, without yielding, if the snapshot is not that).
    fn all(self) -> Vec<goroutine::GStack> {
        match self {
            Snapshot::All(v) => v,
            _ => goroutine::all_in(goroutine::Scan::InPlace),
        }
    }
}

/// Puts [`symbol::NO_LINES_NOTE`] on the first line of a text profile when the binary has no line
/// tables. Go's text formats begin with a fixed line (`goroutine profile: total N`, `heap
/// profile: ...`) that parsers match, so there the note is the first comment line after it; a
/// full dump (`goroutine 1 [running]:`) has no such header and gets it on top.
fn with_no_lines_note(sym: &Symbolizer, text: String) -> String {
    let Some(note) = sym.no_lines_note() else { return text };
    if text.starts_with("goroutine ") && !text.starts_with("goroutine profile:") || text.is_empty() {
        return format!("{note}\n\n{text}");
    }
    match text.split_once('\n') {
        Some((first, rest)) => format!("{first}\n{note}\n{rest}"),
        None => format!("{text}\n{note}\n"),
    }
}

/// The `heap` (or `allocs`) profile: Go's four sample types, unsampled, `bytes` labels.
fn heap_proto(sym: &mut Symbolizer, allocs: bool) -> proto::Profile {
    let rate = mem_profile_rate();
    let recs = heap::records();
    let mut b = Builder::new(
        sym,
        &[("alloc_objects", "count"), ("alloc_space", "bytes"), ("inuse_objects", "count"), ("inuse_space", "bytes")],
        ("space", "bytes"),
        rate as i64,
    );
    for r in &recs {
        let size = r.size as i64;
        let (ac, ab) = heap::scale_heap_sample(r.allocs, r.allocs * size, rate);
        let (ic, ib) = heap::scale_heap_sample(r.inuse(), r.inuse() * size, rate);
        let locs = b.locations(&r.stack, Trim::Heap);
        let mut label = vec![b.num_label("bytes", size)];
        label.extend(r.labels.iter().flat_map(|l| l.0.iter()).map(|(k, v)| b.str_label(k, v)));
        b.sample(locs, vec![ac, ab, ic, ib], label);
    }
    if allocs {
        b.default_sample_type("alloc_space");
    }
    let mut p = b.finish();
    for c in heap::table_comments() {
        p.comment.push(p.string_table.len() as i64);
        p.string_table.push(c);
    }
    p
}

/// Go's heap debug=1 text: raw sampled counts, `@ heap/<2*rate>` so readers can unsample.
fn heap_text(sym: &mut Symbolizer) -> String {
    use std::fmt::Write as _;
    let rate = mem_profile_rate();
    let mut recs = heap::site_records();
    recs.sort_by_key(|r| std::cmp::Reverse(r.inuse() * r.size as i64));
    let (mut io, mut ib, mut ao, mut ab) = (0i64, 0i64, 0i64, 0i64);
    for r in &recs {
        io += r.inuse();
        ib += r.inuse() * r.size as i64;
        ao += r.allocs;
        ab += r.allocs * r.size as i64;
    }
    let mut out = format!("heap profile: {io}: {ib} [{ao}: {ab}] @ heap/{}\n", 2 * rate);
    for r in &recs {
        let size = r.size as i64;
        let _ = write!(out, "{}: {} [{}: {}] @", r.inuse(), r.inuse() * size, r.allocs, r.allocs * size);
        for pc in r.stack.iter() {
            let _ = write!(out, " {pc:#x}");
        }
        out.push('\n');
        goroutine::hash_lines(&mut out, &builder::frames(sym, &r.stack, Trim::Heap));
        out.push('\n');
    }
    out
}

/// Symbolizes one address for `/debug/pprof/symbol`: the physical function's demangled name.
pub fn symbolize(addr: usize) -> Option<String> {
    let _g = NoSample::enter();
    // The symbol endpoint gets call-site addresses already; lookup() subtracts 1 for return
    // addresses, so add it back.
    let info = with_symbolizer(|s| s.lookup(addr.wrapping_add(1)));
    let f = info.frames.last()?;
    (!f.name.starts_with("0x")).then(|| f.name.to_string())
}
