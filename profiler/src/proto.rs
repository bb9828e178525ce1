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
#[derive(Clone, PartialEq, Eq, Message)]
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

impl Profile {
    /// The string at index `i` (`""` if out of range).
    pub fn str(&self, i: i64) -> &str {
        usize::try_from(i).ok().and_then(|i| self.string_table.get(i)).map(String::as_str).unwrap_or("")
    }

    /// Encodes and gzips the profile (BestSpeed, as Go does): the on-disk and HTTP form.
    pub fn encode_gz(&self) -> Vec<u8> {
        let raw = self.encode_to_vec();
        let mut z = flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 2 + 64), flate2::Compression::fast());
        z.write_all(&raw).expect("writing to a Vec cannot fail");
        z.finish().expect("writing to a Vec cannot fail")
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
