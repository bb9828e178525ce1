//! Turning raw stacks into pprof messages (and Go's text lines), with the frame-hiding rules.
//!
//! # Which frames a profile shows
//!
//! A raw stack begins inside the machinery that took it. Go hides that machinery (`pprof` drops
//! `runtime.*` leaves of heap records, text dumps hide `runtime.*` frames, `runtime.goexit` is
//! never shown); gort does the same by crate, after symbolization (inlining changes how many
//! raw frames the machinery has, so no fixed count is skipped):
//!
//! - **Goroutine stacks** ([`Trim::Goroutine`]): of the leading run of frames in `gort_runtime`,
//!   `corosensei` and `gort_profiler` (park, switch, scheduler, the profiler walking itself),
//!   only the *outermost* is kept: the runtime entry point the user's code called, such as
//!   `gort_runtime::chan::Receiver<T>::recv` or `gort_runtime::time::sleep`.
//! - **Heap stacks** ([`Trim::Heap`]): the whole leading run of allocator plumbing is dropped
//!   (`gort_profiler`, `alloc`, `core`, `std`, `hashbrown`, `__rust_alloc`...), so a
//!   `vec![0; n]` is charged to the function that wrote it, as Go charges `make`. The runtime's
//!   own allocations keep their `gort_runtime` leaf (a goroutine descriptor shows under
//!   `gort_runtime::spawn::...`, a channel buffer under `gort_runtime::chan::...`), as Go's heap
//!   profiles show `runtime.malg` and `runtime.makechan`: memory the runtime holds is not charged
//!   to user code as if the user had allocated it.
//! - **Both**: the trailing run at the root that only starts things (`gort_runtime` goroutine
//!   entry, `corosensei` and its `stack_init_trampoline`, `std`/`core` closure shims and panic catching, libc's `_start`,
//!   `start_thread`, `clone3`) is dropped, as Go drops `runtime.goexit`.
//! - If hiding would leave nothing, every frame is kept (Go's second try "showing all frames").

use std::collections::HashMap;
use std::sync::Arc;

use crate::proto::{Function, Label, Line, Location, Mapping, Profile, Sample, ValueType};
use crate::symbol::{crate_of, Frame, PcInfo, Symbolizer};

/// How to hide machinery frames (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trim {
    /// Goroutine stacks: keep the outermost runtime frame of the leading run.
    Goroutine,
    /// Heap records: drop the allocator plumbing.
    Heap,
    /// Show every frame.
    None,
}

/// One symbolized frame of a stack: frame `idx` of the address `pc`.
#[derive(Clone, Debug)]
pub struct LFrame {
    /// The return address.
    pub pc: usize,
    /// What it means.
    pub info: Arc<PcInfo>,
    /// Which of `info.frames`.
    pub idx: usize,
}

impl LFrame {
    /// The frame's function name.
    pub fn name(&self) -> &str {
        &self.info.frames[self.idx].name
    }
    /// `file:line`.
    pub fn file_line(&self) -> String {
        let f = &self.info.frames[self.idx];
        format!("{}:{}", if f.file.is_empty() { "?" } else { &f.file }, f.line)
    }
    /// Offset of `pc - 1` from the physical function's start (0 if unknown).
    pub fn offset(&self) -> usize {
        if self.info.func_start == 0 {
            0
        } else {
            (self.pc - 1).saturating_sub(self.info.func_start)
        }
    }
}

const RUNTIME: &[&str] = &["gort_runtime", "corosensei", "gort_profiler"];
const PLUMBING: &[&str] = &["gort_profiler", "alloc", "core", "std", "hashbrown", "__rust_alloc"];
const ROOT: &[&str] = &["gort_runtime", "corosensei", "std", "core", "alloc"];

fn is_plumbing(name: &str) -> bool {
    PLUMBING.contains(&crate_of(name))
        || name.starts_with("__rust")
        || name.starts_with("__rdl")
        || name.starts_with("__rg_")
}

fn is_root(name: &str) -> bool {
    ROOT.contains(&crate_of(name))
        || name.starts_with("__libc_start")
        || name.starts_with("__rust")
        || name.starts_with("0x")
        || matches!(
            name,
            "_start" | "start_thread" | "clone" | "clone3" | "__clone" | "__clone3" | "stack_init_trampoline"
        )
}

/// Symbolizes `pcs` (leaf first) and applies `trim`.
pub fn frames(sym: &mut Symbolizer, pcs: &[usize], trim: Trim) -> Vec<LFrame> {
    trimmed(symbolized(sym, pcs), trim)
}

/// [`frames`] of a goroutine stack ([`Trim::Goroutine`]) whose body has the type name `entry`.
///
/// The body is usually a closure, and the optimizer often inlines it (and the runtime calls it
/// makes, such as `Receiver::recv`) into the runtime's entry frame, `Task<T, F>::run`. With debug info the inlined frames are there; without it (the default
/// release profile) only that runtime frame is, and the user's code would vanish from the
/// stack. Then the body is shown as what it is: a frame inlined into that entry frame, named by
/// its type (`my_crate::handler::{{closure}}`), with no line.
pub fn goroutine_frames(sym: &mut Symbolizer, pcs: &[usize], entry: Option<&str>) -> Vec<LFrame> {
    let mut v = symbolized(sym, pcs);
    if let Some(e) = entry {
        inline_entry(&mut v, e);
    }
    trimmed(v, Trim::Goroutine)
}

fn symbolized(sym: &mut Symbolizer, pcs: &[usize]) -> Vec<LFrame> {
    let mut v = Vec::with_capacity(pcs.len() * 2);
    for &pc in pcs {
        let info = sym.lookup(pc);
        for idx in 0..info.frames.len() {
            v.push(LFrame { pc, info: info.clone(), idx });
        }
    }
    v
}

/// The runtime's frame that calls a goroutine's body.
fn is_task_run(name: &str) -> bool {
    name.starts_with("gort_runtime::spawn::Task<") && name.ends_with(">::run")
}

/// Adds the body `entry` as an inlined frame of the entry frame, unless a frame of it is there.
fn inline_entry(v: &mut Vec<LFrame>, entry: &str) {
    if v.iter().any(|f| f.name().starts_with(entry)) {
        return;
    }
    let Some(i) = v.iter().rposition(|f| is_task_run(f.name())) else { return };
    let (pc, phys) = (v[i].pc, v[i].idx);
    let mut info = (*v[i].info).clone();
    let name: Arc<str> = Arc::from(entry);
    let empty: Arc<str> = Arc::from("");
    info.frames.insert(phys, Frame { name: name.clone(), system_name: name, file: empty, line: 0 });
    let info = Arc::new(info);
    for f in v.iter_mut().filter(|f| f.pc == pc) {
        if f.idx >= phys {
            f.idx += 1;
        }
        f.info = info.clone();
    }
    v.insert(i, LFrame { pc, info, idx: phys });
}

fn trimmed(mut v: Vec<LFrame>, trim: Trim) -> Vec<LFrame> {
    if trim == Trim::None || v.is_empty() {
        return v;
    }
    let start = match trim {
        Trim::Goroutine => match v.iter().position(|f| !RUNTIME.contains(&crate_of(f.name()))) {
            Some(0) => 0,
            Some(i) => i - 1,
            None => 0,
        },
        _ => v.iter().position(|f| !is_plumbing(f.name())).unwrap_or(0),
    };
    let mut end = v.len();
    while end > start + 1 && is_root(v[end - 1].name()) {
        end -= 1;
    }
    v.truncate(end);
    v.drain(..start);
    v
}

/// Builds one pprof profile: interns strings, functions, locations and mappings.
pub struct Builder<'a> {
    sym: &'a mut Symbolizer,
    p: Profile,
    strings: HashMap<String, i64>,
    funcs: HashMap<(i64, i64, i64), u64>,
    locs: HashMap<(usize, usize, usize), u64>,
    /// Per symbolizer mapping: (pprof id, every location in it had a name).
    maps: Vec<(u64, bool)>,
    /// Per mapping: whether any of its locations got a name.
    named_any: Vec<bool>,
}

impl<'a> Builder<'a> {
    /// A profile with these sample types (`(type, unit)`), period type and period.
    pub fn new(sym: &'a mut Symbolizer, types: &[(&str, &str)], period_type: (&str, &str), period: i64) -> Self {
        let mut b = Builder {
            sym,
            p: Profile { string_table: vec![String::new()], ..Default::default() },
            strings: HashMap::new(),
            funcs: HashMap::new(),
            locs: HashMap::new(),
            maps: Vec::new(),
            named_any: Vec::new(),
        };
        b.strings.insert(String::new(), 0);
        for (t, u) in types {
            let vt = ValueType { r#type: b.string(t), unit: b.string(u) };
            b.p.sample_type.push(vt);
        }
        b.p.period_type = Some(ValueType { r#type: b.string(period_type.0), unit: b.string(period_type.1) });
        b.p.period = period;
        b.p.time_nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let n = b.sym.mappings.len();
        for i in 0..n {
            let m = b.sym.mappings[i].clone();
            let (filename, build_id) = (b.string(&m.path), b.string(&m.build_id));
            let id = (i + 1) as u64;
            b.p.mapping.push(Mapping {
                id,
                memory_start: m.start as u64,
                memory_limit: m.end as u64,
                file_offset: m.offset as u64,
                filename,
                build_id,
                ..Default::default()
            });
            b.maps.push((id, true));
            b.named_any.push(false);
        }
        b
    }

    /// Interns a string.
    pub fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.p.string_table.len() as i64;
        self.p.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    /// Sets `default_sample_type`.
    pub fn default_sample_type(&mut self, t: &str) {
        self.p.default_sample_type = self.string(t);
    }

    /// The symbolizer (to render text from the same cache).
    pub fn symbolizer(&mut self) -> &mut Symbolizer {
        self.sym
    }

    fn function(&mut self, info: &PcInfo, idx: usize) -> u64 {
        let f = &info.frames[idx];
        let key = (self.string(&f.name), self.string(&f.system_name), self.string(&f.file));
        if let Some(&id) = self.funcs.get(&key) {
            return id;
        }
        let id = self.p.function.len() as u64 + 1;
        self.p.function.push(Function { id, name: key.0, system_name: key.1, filename: key.2, start_line: 0 });
        self.funcs.insert(key, id);
        id
    }

    /// Location ids for `pcs` (leaf first) after `trim`: one location per address, holding the
    /// address's kept frames (inlined callee first).
    pub fn locations(&mut self, pcs: &[usize], trim: Trim) -> Vec<u64> {
        let fr = frames(self.sym, pcs, trim);
        self.locations_of(fr)
    }

    /// [`locations`](Self::locations) of a goroutine stack (see [`goroutine_frames`]).
    pub fn goroutine_locations(&mut self, pcs: &[usize], entry: Option<&str>) -> Vec<u64> {
        let fr = goroutine_frames(self.sym, pcs, entry);
        self.locations_of(fr)
    }

    fn locations_of(&mut self, fr: Vec<LFrame>) -> Vec<u64> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < fr.len() {
            let mut j = i + 1;
            while j < fr.len() && fr[j].pc == fr[i].pc && fr[j].idx == fr[j - 1].idx + 1 {
                j += 1;
            }
            out.push(self.location(&fr[i..j]));
            i = j;
        }
        out
    }

    fn location(&mut self, run: &[LFrame]) -> u64 {
        let (pc, info) = (run[0].pc, run[0].info.clone());
        let key = (pc, run[0].idx, run[run.len() - 1].idx);
        if let Some(&id) = self.locs.get(&key) {
            return id;
        }
        let lines = run
            .iter()
            .map(|f| Line { function_id: self.function(&info, f.idx), line: info.frames[f.idx].line, column: 0 })
            .collect();
        let mapping_id = match info.mapping {
            Some(m) => {
                let named = !info.frames[0].name.starts_with("0x");
                self.maps[m].1 &= named;
                self.named_any[m] |= named;
                self.maps[m].0
            }
            None => 0,
        };
        let id = self.p.location.len() as u64 + 1;
        self.p.location.push(Location { id, mapping_id, address: pc as u64, line: lines, is_folded: false });
        self.locs.insert(key, id);
        id
    }

    /// Adds a sample.
    pub fn sample(&mut self, location_id: Vec<u64>, value: Vec<i64>, label: Vec<Label>) {
        self.p.sample.push(Sample { location_id, value, label });
    }

    /// A numeric label.
    pub fn num_label(&mut self, key: &str, num: i64) -> Label {
        Label { key: self.string(key), str: 0, num, num_unit: 0 }
    }

    /// A string label.
    pub fn str_label(&mut self, key: &str, value: &str) -> Label {
        Label { key: self.string(key), str: self.string(value), num: 0, num_unit: 0 }
    }

    /// Adds a location with no address for a function the stack could not be recorded for.
    pub fn pseudo_location(&mut self, name: &str) -> u64 {
        let n = self.string(name);
        let id = self.p.function.len() as u64 + 1;
        self.p.function.push(Function { id, name: n, system_name: n, filename: 0, start_line: 0 });
        let lid = self.p.location.len() as u64 + 1;
        self.p.location.push(Location {
            id: lid,
            mapping_id: 0,
            address: 0,
            line: vec![Line { function_id: id, line: 0, column: 0 }],
            is_folded: false,
        });
        lid
    }

    /// The finished profile, mapping flags set: the main binary's say functions are present
    /// when any location in it got a name from its DWARF or symbol table (a CPU sample's leaf in
    /// a `.plt` stub has none, and no symbolizer would do better; a stripped binary has none at
    /// all, and then `go tool pprof` may symbolize it from an unstripped copy), and files, lines
    /// and inlined frames when it has line tables; another mapping says functions when every
    /// location in it got a symbol from `dladdr`.
    pub fn finish(mut self) -> Profile {
        let lines = self.sym.has_lines();
        for (i, m) in self.p.mapping.iter_mut().enumerate() {
            let main = self.sym.mappings[i].main;
            let named = self.maps[i].1 || main && self.named_any[i];
            m.has_functions = named;
            m.has_filenames = main && named && lines;
            m.has_line_numbers = main && named && lines;
            m.has_inline_frames = main && named && lines;
        }
        self.p
    }
}
