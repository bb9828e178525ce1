//! pprof's `profile.proto` (github.com/google/pprof, `proto/profile.proto`), derived by hand with
//! prost so that no build step needs `protoc`. Field numbers are the file's own; a profile
//! written by Go (`tests/fixtures/go_goroutine.pb.gz`) is decoded in the tests to prove them.
//!
//! [`validate`] mirrors the rules `pprof` applies when it reads a profile (`profile.CheckValid`
//! plus the string-table rules of its decoder), so a test can fail on what pprof would refuse.

use std::collections::HashSet;
use std::io::{self, Read, Write};

use prost::Message;

/// The whole profile (`perftools.profiles.Profile`).
#[derive(Clone, PartialEq, Message)]
pub struct Profile {
    /// What each value of a sample measures.
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    /// The samples: a stack (leaf first) and one value per sample type.
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    /// The loaded binaries the addresses belong to; mapping 1 is the main binary.
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    /// Addresses and the source lines (inlined callee first) they stand for.
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    /// Functions referenced by the lines.
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    /// Every string; index 0 is `""`.
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    /// Regexp (string index) of frames to drop.
    #[prost(int64, tag = "7")]
    pub drop_frames: i64,
    /// Regexp (string index) of frames to keep.
    #[prost(int64, tag = "8")]
    pub keep_frames: i64,
    /// When the profile was taken (ns since the epoch).
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    /// How long the profile covers, for delta and CPU profiles.
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    /// What an event of the sampling period is.
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    /// The sampling period (MemProfileRate for heap profiles).
    #[prost(int64, tag = "12")]
    pub period: i64,
    /// Free-form comments (string indices).
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    /// Index into the string table of the sample type shown by default.
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

/// A type and unit, both string indices (`alloc_space` / `bytes`).
#[derive(Clone, PartialEq, Eq, Message)]
pub struct ValueType {
    /// String index of the type.
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    /// String index of the unit.
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// One sample: a stack and its values.
#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// Location ids, leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    /// One value per `Profile::sample_type`.
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    /// Labels (`bytes` = object size in heap profiles).
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

/// A sample label: a string or a number.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Message)]
pub struct Label {
    /// String index of the key.
    #[prost(int64, tag = "1")]
    pub key: i64,
    /// String index of the value (0 for a numeric label).
    #[prost(int64, tag = "2")]
    pub str: i64,
    /// Numeric value.
    #[prost(int64, tag = "3")]
    pub num: i64,
    /// String index of the numeric value's unit.
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

/// A mapped binary.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Mapping {
    /// Unique, non-zero.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Start of the mapped range.
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    /// End (exclusive) of the mapped range.
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    /// File offset of `memory_start`.
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    /// String index of the file's path.
    #[prost(int64, tag = "5")]
    pub filename: i64,
    /// String index of the build id (hex).
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    /// Every location in this mapping has function names.
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    /// ... and file names.
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    /// ... and line numbers.
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    /// ... and inlined frames expanded.
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

/// An address and what it means.
#[derive(Clone, PartialEq, Message)]
pub struct Location {
    /// Unique, non-zero.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The mapping holding `address` (0: none).
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    /// The instruction address (a return address for every frame but a CPU sample's leaf).
    #[prost(uint64, tag = "3")]
    pub address: u64,
    /// Source lines, the innermost inlined callee first, the physical function last.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
    /// Several addresses folded into one location.
    #[prost(bool, tag = "5")]
    pub is_folded: bool,
}

/// One source line of a location.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Line {
    /// The function's id.
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    /// Line number (0: unknown).
    #[prost(int64, tag = "2")]
    pub line: i64,
    /// Column number (0: unknown).
    #[prost(int64, tag = "3")]
    pub column: i64,
}

/// A function.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Function {
    /// Unique, non-zero.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// String index of the human-readable name (demangled, no hash).
    #[prost(int64, tag = "2")]
    pub name: i64,
    /// String index of the raw (mangled) symbol.
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    /// String index of the source file.
    #[prost(int64, tag = "4")]
    pub filename: i64,
    /// First line of the function (0: unknown).
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}

/// The stack [`on_roomy_stack`] lends: a thread's default, which the compressor fits in at any
/// optimization level.
const ROOMY_STACK: usize = 2 << 20;

/// Runs `f`, on a stack of its own when the caller is a goroutine. A goroutine's default stack
/// (256 KiB) does not hold gzip's compressor being built in an unoptimized build: miniz_oxide
/// makes its buffers (about 150 KiB) on the stack before boxing them. `f` must not park (it
/// would park off its goroutine's stack, which nothing walks); signals that land meanwhile find
/// the goroutine between stacks. The stack is mapped for the call (lazily touched) and unmapped
/// after it; if it cannot be mapped, `f` runs where it is.
fn on_roomy_stack<R>(f: impl FnOnce() -> R) -> R {
    if gort_runtime::current_id().is_none() {
        return f();
    }
    match corosensei::stack::DefaultStack::new(ROOMY_STACK) {
        Ok(stack) => corosensei::on_stack(stack, f),
        Err(_) => f(),
    }
}

impl Profile {
    /// The string at index `i` (`""` if out of range).
    pub fn str(&self, i: i64) -> &str {
        usize::try_from(i).ok().and_then(|i| self.string_table.get(i)).map(String::as_str).unwrap_or("")
    }

    /// Encodes and gzips the profile (BestSpeed, as Go does): the on-disk and HTTP form.
    pub fn encode_gz(&self) -> Vec<u8> {
        let raw = self.encode_to_vec();
        on_roomy_stack(|| {
            let mut z =
                flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 2 + 64), flate2::Compression::fast());
            z.write_all(&raw).expect("writing to a Vec cannot fail");
            z.finish().expect("writing to a Vec cannot fail")
        })
    }

    /// Decodes a profile, gzipped or not (pprof accepts both).
    pub fn decode_any(data: &[u8]) -> io::Result<Profile> {
        let mut raw = Vec::new();
        let bytes = if data.starts_with(&[0x1f, 0x8b]) {
            flate2::read::GzDecoder::new(data).read_to_end(&mut raw)?;
            &raw[..]
        } else {
            data
        };
        Profile::decode(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// Checks `p` against pprof's own rules. Returns the first violation.
///
/// - `string_table[0] == ""`, and every string index (types, units, names, files, labels,
///   build ids, comments, default type) is in range;
/// - `sample_type` is non-empty and every sample has exactly `sample_type.len()` values;
/// - mapping, location and function ids are non-zero and unique;
/// - every referenced id (sample -> location, location -> mapping, line -> function) exists.
pub fn validate(p: &Profile) -> Result<(), String> {
    let ns = p.string_table.len() as i64;
    if p.string_table.first().map(String::as_str) != Some("") {
        return Err("string_table[0] must be \"\"".into());
    }
    let s = |what: &str, i: i64| {
        if (0..ns).contains(&i) {
            Ok(())
        } else {
            Err(format!("{what}: string index {i} out of range"))
        }
    };
    if p.sample_type.is_empty() {
        return Err("no sample types".into());
    }
    for vt in p.sample_type.iter().chain(p.period_type.iter()) {
        s("value type", vt.r#type)?;
        s("value unit", vt.unit)?;
    }
    s("default_sample_type", p.default_sample_type)?;
    s("drop_frames", p.drop_frames)?;
    s("keep_frames", p.keep_frames)?;
    for &c in &p.comment {
        s("comment", c)?;
    }
    let mut mappings = HashSet::new();
    for m in &p.mapping {
        if m.id == 0 || !mappings.insert(m.id) {
            return Err(format!("mapping id {} zero or duplicate", m.id));
        }
        s("mapping filename", m.filename)?;
        s("mapping build_id", m.build_id)?;
    }
    let mut functions = HashSet::new();
    for f in &p.function {
        if f.id == 0 || !functions.insert(f.id) {
            return Err(format!("function id {} zero or duplicate", f.id));
        }
        s("function name", f.name)?;
        s("function system_name", f.system_name)?;
        s("function filename", f.filename)?;
    }
    let mut locations = HashSet::new();
    for l in &p.location {
        if l.id == 0 || !locations.insert(l.id) {
            return Err(format!("location id {} zero or duplicate", l.id));
        }
        if l.mapping_id != 0 && !mappings.contains(&l.mapping_id) {
            return Err(format!("location {} references missing mapping {}", l.id, l.mapping_id));
        }
        for ln in &l.line {
            if ln.function_id == 0 || !functions.contains(&ln.function_id) {
                return Err(format!("location {} references missing function {}", l.id, ln.function_id));
            }
        }
    }
    for (i, smp) in p.sample.iter().enumerate() {
        if smp.value.len() != p.sample_type.len() {
            return Err(format!("sample {i} has {} values, want {}", smp.value.len(), p.sample_type.len()));
        }
        for id in &smp.location_id {
            if *id == 0 || !locations.contains(id) {
                return Err(format!("sample {i} references missing location {id}"));
            }
        }
        for l in &smp.label {
            s("label key", l.key)?;
            s("label str", l.str)?;
            s("label num_unit", l.num_unit)?;
        }
    }
    Ok(())
}

/// The delta `p1 - p0` of two profiles of the same kind, as Go's `net/http/pprof` serves for
/// `?seconds=N` (`p0.Scale(-1)`, `profile.Merge`): samples are matched by their stacks
/// (addresses and symbolized lines) and labels, values subtracted, all-zero samples dropped;
/// `time_nanos` is `p1`'s and `duration_nanos` the time between them. Errors if the sample
/// types or period types differ (pprof refuses to merge those too).
pub fn delta(p0: &Profile, p1: &Profile) -> Result<Profile, String> {
    let types = |p: &Profile| {
        let vt = |v: &ValueType| (p.str(v.r#type).to_string(), p.str(v.unit).to_string());
        (p.sample_type.iter().map(vt).collect::<Vec<_>>(), p.period_type.as_ref().map(vt))
    };
    if types(p0) != types(p1) {
        return Err("profiles have different sample or period types".into());
    }
    let mut m = Merger::new(p1);
    m.add(p0, -1);
    m.add(p1, 1);
    let mut out = m.out;
    let n = out.sample_type.len();
    let mut samples: Vec<_> = m.values.into_iter().filter(|(_, v)| v.iter().any(|x| *x != 0)).collect();
    samples.sort_by(|a, b| a.0.cmp(&b.0));
    for ((locs, labels), value) in samples {
        debug_assert_eq!(value.len(), n);
        out.sample.push(Sample { location_id: locs, value, label: labels });
    }
    out.time_nanos = p1.time_nanos;
    out.duration_nanos = p1.time_nanos.saturating_sub(p0.time_nanos);
    Ok(out)
}

type LineKey = Vec<(String, String, String, i64)>;

/// Re-interns profiles into one output (strings, functions, locations; mappings by file+start).
struct Merger {
    out: Profile,
    strings: std::collections::HashMap<String, i64>,
    functions: std::collections::HashMap<(i64, i64, i64), u64>,
    locations: std::collections::HashMap<(u64, u64, LineKey), u64>,
    mappings: std::collections::HashMap<(String, u64), u64>,
    values: std::collections::HashMap<(Vec<u64>, Vec<Label>), Vec<i64>>,
}

impl Merger {
    fn new(like: &Profile) -> Merger {
        let mut m = Merger {
            out: Profile { string_table: vec![String::new()], ..Default::default() },
            strings: std::collections::HashMap::new(),
            functions: std::collections::HashMap::new(),
            locations: std::collections::HashMap::new(),
            mappings: std::collections::HashMap::new(),
            values: std::collections::HashMap::new(),
        };
        m.strings.insert(String::new(), 0);
        for vt in &like.sample_type {
            let v = ValueType { r#type: m.s(like.str(vt.r#type)), unit: m.s(like.str(vt.unit)) };
            m.out.sample_type.push(v);
        }
        if let Some(pt) = &like.period_type {
            m.out.period_type = Some(ValueType { r#type: m.s(like.str(pt.r#type)), unit: m.s(like.str(pt.unit)) });
        }
        m.out.period = like.period;
        m.out.default_sample_type = m.s(like.str(like.default_sample_type));
        m
    }

    fn s(&mut self, v: &str) -> i64 {
        if let Some(&i) = self.strings.get(v) {
            return i;
        }
        let i = self.out.string_table.len() as i64;
        self.out.string_table.push(v.to_string());
        self.strings.insert(v.to_string(), i);
        i
    }

    fn mapping(&mut self, p: &Profile, id: u64) -> u64 {
        let Some(mp) = p.mapping.iter().find(|m| m.id == id) else { return 0 };
        let key = (p.str(mp.filename).to_string(), mp.memory_start);
        if let Some(&i) = self.mappings.get(&key) {
            return i;
        }
        let nid = self.out.mapping.len() as u64 + 1;
        let mut nm = mp.clone();
        nm.id = nid;
        nm.filename = self.s(p.str(mp.filename));
        nm.build_id = self.s(p.str(mp.build_id));
        self.out.mapping.push(nm);
        self.mappings.insert(key, nid);
        nid
    }

    fn location(&mut self, p: &Profile, l: &Location) -> u64 {
        let func = |id: u64| p.function.iter().find(|f| f.id == id);
        let lines: LineKey = l
            .line
            .iter()
            .map(|ln| match func(ln.function_id) {
                Some(f) => (p.str(f.name).into(), p.str(f.system_name).into(), p.str(f.filename).into(), ln.line),
                None => (String::new(), String::new(), String::new(), ln.line),
            })
            .collect();
        let mapping_id = self.mapping(p, l.mapping_id);
        let key = (mapping_id, l.address, lines);
        if let Some(&i) = self.locations.get(&key) {
            return i;
        }
        let mut out_lines = Vec::new();
        for (name, sys, file, line) in &key.2 {
            let fk = (self.s(name), self.s(sys), self.s(file));
            let fid = match self.functions.get(&fk) {
                Some(&f) => f,
                None => {
                    let f = self.out.function.len() as u64 + 1;
                    self.out.function.push(Function {
                        id: f,
                        name: fk.0,
                        system_name: fk.1,
                        filename: fk.2,
                        start_line: 0,
                    });
                    self.functions.insert(fk, f);
                    f
                }
            };
            out_lines.push(Line { function_id: fid, line: *line, column: 0 });
        }
        let id = self.out.location.len() as u64 + 1;
        self.out.location.push(Location {
            id,
            mapping_id,
            address: l.address,
            line: out_lines,
            is_folded: l.is_folded,
        });
        self.locations.insert(key, id);
        id
    }

    fn add(&mut self, p: &Profile, sign: i64) {
        let by_id: std::collections::HashMap<u64, &Location> = p.location.iter().map(|l| (l.id, l)).collect();
        for smp in &p.sample {
            let locs: Vec<u64> =
                smp.location_id.iter().filter_map(|id| by_id.get(id)).map(|l| self.location(p, l)).collect();
            let labels: Vec<Label> = smp
                .label
                .iter()
                .map(|l| Label {
                    key: self.s(p.str(l.key)),
                    str: self.s(p.str(l.str)),
                    num: l.num,
                    num_unit: self.s(p.str(l.num_unit)),
                })
                .collect();
            let v = self.values.entry((locs, labels)).or_insert_with(|| vec![0; smp.value.len()]);
            for (a, b) in v.iter_mut().zip(&smp.value) {
                *a += sign * b;
            }
        }
    }
}
