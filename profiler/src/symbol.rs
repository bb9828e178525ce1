//! Symbolization: raw return addresses to functions, files and lines, from the running binary's
//! own DWARF (`addr2line` over `gimli`), inlined frames expanded.
//!
//! - The main binary is read once from `/proc/self/exe`; its sections stay in memory for the
//!   life of the process (the debug info of a release build with `line-tables-only` is a few
//!   MiB). The PIE load bias comes from `dl_iterate_phdr` (the main program's `dlpi_addr`), so a
//!   runtime address `pc` is `pc - bias` in the file's address space.
//! - A return address points after its call: lookups use `pc - 1`, so the line is the call's.
//! - Names: the DWARF linkage name (or the ELF symbol for the physical function) goes to
//!   `system_name`; `rustc-demangle` without the hash goes to `name`. pprof then shows the Rust
//!   path as is (it simplifies only when `name == system_name`).
//! - Addresses outside the main binary (libc, the vdso) get the `dladdr` symbol, if any.
//! - Results are cached per address: a goroutine profile of 100k goroutines symbolizes each
//!   distinct return address once.

use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::Arc;

use addr2line::gimli;

type Reader = gimli::EndianSlice<'static, gimli::RunTimeEndian>;

/// One (possibly inlined) function activation at an address.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Demangled name without the hash (`gort_runtime::chan::Receiver<T>::recv`).
    pub name: Arc<str>,
    /// The raw symbol (mangled), or `name` when there is none.
    pub system_name: Arc<str>,
    /// Source file, `""` if unknown.
    pub file: Arc<str>,
    /// Line, 0 if unknown.
    pub line: i64,
}

/// What an address means: its frames, innermost inlined callee first, the physical function
/// last; and the start of the physical function (for `func+0xoff`), 0 if unknown.
#[derive(Clone, Debug, Default)]
pub struct PcInfo {
    /// Frames, callee first.
    pub frames: Vec<Frame>,
    /// Runtime address of the physical function's first instruction (0: unknown).
    pub func_start: usize,
    /// Index into [`Symbolizer::mappings`] of the mapping holding the address.
    pub mapping: Option<usize>,
}

/// An executable mapping from `/proc/self/maps`.
#[derive(Clone, Debug)]
pub struct MapEntry {
    /// Start of the range.
    pub start: usize,
    /// End (exclusive).
    pub end: usize,
    /// File offset of `start`.
    pub offset: usize,
    /// File path (or `[vdso]`).
    pub path: String,
    /// GNU build id, hex (the main binary's only).
    pub build_id: String,
    /// This is the main binary, whose debug info we read.
    pub main: bool,
}

/// The symbolizer: the main binary's DWARF and symbols, the process's mappings, a cache.
pub struct Symbolizer {
    ctx: Option<addr2line::Context<Reader>>,
    /// The binary has line tables (`.debug_line`): frames get files and lines.
    lines: bool,
    /// ELF text symbols of the main binary, sorted by address: (svma, size, raw name).
    syms: Vec<(u64, u64, &'static str)>,
    bias: usize,
    /// Executable mappings, the main binary's first.
    pub mappings: Vec<MapEntry>,
    cache: HashMap<usize, Arc<PcInfo>>,
    names: HashMap<String, Arc<str>>,
    /// Source file -> crate, learnt from physical functions (see `qualify`).
    file_crates: HashMap<String, String>,
    /// Source tree (`.../src/`) -> crate, likewise.
    root_crates: HashMap<String, String>,
}

/// Said once per text profile of a binary without line tables (the default release profile has
/// no debug info): names come from the ELF symbol table, and this is how to get file:line.
pub const NO_LINES_NOTE: &str = "# gort: no debug info in this binary: functions are named from its symbol table, \
without file:line or inlined frames; for them add `debug = \"line-tables-only\"` to `[profile.release]` in Cargo.toml";

impl Symbolizer {
    /// Loads the main binary's debug info and symbols and reads the mappings.
    pub fn new() -> Symbolizer {
        let exe = std::fs::read_link("/proc/self/exe").map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        let data: &'static [u8] = match std::fs::read("/proc/self/exe") {
            Ok(d) => Box::leak(d.into_boxed_slice()),
            Err(_) => &[],
        };
        let mut ctx = None;
        let mut syms = Vec::new();
        let mut build_id = String::new();
        let mut lines = false;
        if let Ok(file) = object::File::parse(data) {
            use object::{Object, ObjectSection, ObjectSymbol};
            if let Ok(Some(id)) = file.build_id() {
                build_id = id.iter().map(|b| format!("{b:02x}")).collect();
            }
            for s in file.symbols() {
                if s.kind() == object::SymbolKind::Text && s.address() != 0 {
                    if let Ok(name) = s.name() {
                        syms.push((s.address(), s.size(), name));
                    }
                }
            }
            syms.sort_unstable_by_key(|s| s.0);
            lines = file.section_by_name(".debug_line").is_some_and(|s| s.size() > 0);
            let endian = if file.is_little_endian() { gimli::RunTimeEndian::Little } else { gimli::RunTimeEndian::Big };
            let load = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
                let bytes: &'static [u8] = match file.section_by_name(id.name()) {
                    Some(sec) => match sec.uncompressed_data() {
                        Ok(std::borrow::Cow::Borrowed(b)) => b,
                        Ok(std::borrow::Cow::Owned(v)) => Box::leak(v.into_boxed_slice()),
                        Err(_) => &[],
                    },
                    None => &[],
                };
                Ok(gimli::EndianSlice::new(bytes, endian))
            };
            if let Ok(dwarf) = gimli::Dwarf::load(load) {
                ctx = addr2line::Context::from_dwarf(dwarf).ok();
            }
        }
        let bias = main_load_bias();
        let mappings = read_maps(&exe, &build_id);
        Symbolizer {
            ctx,
            lines,
            syms,
            bias,
            mappings,
            cache: HashMap::new(),
            names: HashMap::new(),
            file_crates: HashMap::new(),
            root_crates: HashMap::new(),
        }
    }

    /// Whether frames of the main binary get files and lines (it has line tables).
    pub fn has_lines(&self) -> bool {
        self.lines
    }

    /// A line for text profiles when the binary has no line tables, saying how to get them.
    pub fn no_lines_note(&self) -> Option<&'static str> {
        (!self.lines).then_some(NO_LINES_NOTE)
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.names.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.names.insert(s.to_string(), a.clone());
        a
    }

    /// Symbolizes the return address `pc` (cached).
    pub fn lookup(&mut self, pc: usize) -> Arc<PcInfo> {
        if let Some(i) = self.cache.get(&pc) {
            return i.clone();
        }
        let info = Arc::new(self.resolve(pc));
        self.cache.insert(pc, info.clone());
        info
    }

    fn mapping_of(&self, pc: usize) -> Option<usize> {
        self.mappings.iter().position(|m| (m.start..m.end).contains(&pc))
    }

    fn resolve(&mut self, pc: usize) -> PcInfo {
        let mapping = self.mapping_of(pc);
        let main = mapping.is_some_and(|i| self.mappings[i].main);
        let probe = pc.wrapping_sub(1);
        if !main {
            return self.resolve_dladdr(probe, mapping);
        }
        let svma = probe.wrapping_sub(self.bias) as u64;
        let sym = match self.syms.partition_point(|s| s.0 <= svma) {
            0 => None,
            i => Some(self.syms[i - 1]).filter(|s| s.1 == 0 || svma < s.0 + s.1),
        };
        let func_start = sym.map(|s| s.0 as usize + self.bias).unwrap_or(0);
        let mut raw = Vec::new(); // (raw name, file, line)
        if let Some(ctx) = &self.ctx {
            if let Ok(mut it) = ctx.find_frames(svma).skip_all_loads() {
                while let Ok(Some(f)) = it.next() {
                    let name = f.function.as_ref().and_then(|n| n.raw_name().ok()).map(|c| c.into_owned());
                    let (file, line) = match &f.location {
                        Some(l) => (l.file.unwrap_or("").to_string(), l.line.unwrap_or(0) as i64),
                        None => (String::new(), 0),
                    };
                    raw.push((name, file, line));
                }
            }
        }
        if raw.is_empty() {
            raw.push((None, String::new(), 0));
        }
        // The physical (last) frame: prefer the ELF symbol, which is always the full path.
        let last = raw.len() - 1;
        if let Some(s) = sym {
            let full = raw[last].0.as_deref().is_none_or(|n| !n.starts_with("_R") && !n.starts_with("_ZN"));
            if full {
                raw[last].0 = Some(s.2.to_string());
            }
        }
        // Learn which crate the physical function's file belongs to before qualifying the
        // inlined frames' names (see `qualify`).
        if let Some(sys) = &raw[last].0 {
            let pretty = demangle(sys);
            let krate = crate_of(&pretty);
            // (`__rustc::__rust_alloc` and friends are shims generated into the user's file.)
            if pretty.contains("::") && !krate.is_empty() && !krate.starts_with("__") {
                let (file, krate) = (raw[last].1.clone(), krate.to_string());
                self.learn(&file, &krate);
            }
        }
        let frames = raw
            .into_iter()
            .map(|(name, file, line)| {
                let sys = name.unwrap_or_else(|| format!("{probe:#x}"));
                let mut pretty = demangle(&sys);
                let base = if pretty.starts_with('<') { &pretty[..] } else { pretty.split('<').next().unwrap_or("") };
                if !base.contains("::") && !pretty.starts_with("0x") {
                    pretty = self.qualify(&pretty, &file);
                }
                Frame { name: self.intern(&pretty), system_name: self.intern(&sys), file: self.intern(&file), line }
            })
            .collect();
        PcInfo { frames, func_start, mapping }
    }

    fn resolve_dladdr(&mut self, probe: usize, mapping: Option<usize>) -> PcInfo {
        // SAFETY: dladdr only reads the loader's tables; info is a plain out-struct.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: as above; any address is acceptable input.
        let ok = unsafe { libc::dladdr(probe as *const libc::c_void, &mut info) } != 0;
        let (sys, start) = if ok && !info.dli_sname.is_null() {
            // SAFETY: dli_sname is a NUL-terminated string owned by the loader for the life of
            // the library (libraries are not unloaded while a profile is taken).
            let s = unsafe { CStr::from_ptr(info.dli_sname) }.to_string_lossy().into_owned();
            (s, info.dli_saddr as usize)
        } else {
            (format!("{probe:#x}"), 0)
        };
        let pretty = demangle(&sys);
        let frame =
            Frame { name: self.intern(&pretty), system_name: self.intern(&sys), file: self.intern(""), line: 0 };
        PcInfo { frames: vec![frame], func_start: start, mapping }
    }
}

impl Symbolizer {
    /// Records that `file` (and the source tree it sits in) belongs to crate `krate`.
    fn learn(&mut self, file: &str, krate: &str) {
        if file.is_empty() || self.file_crates.contains_key(file) {
            return;
        }
        self.file_crates.insert(file.to_string(), krate.to_string());
        if let Some(root) = source_root(file) {
            self.root_crates.entry(root.to_string()).or_insert_with(|| krate.to_string());
        }
    }

    /// Gives a bare DWARF name a path. A binary built with `debug = "line-tables-only"` names
    /// inlined functions without their path (`recv`, `{closure#0}<T>`): only physical functions
    /// have full (ELF symbol) names. The crate comes from the file (a file, or the source tree
    /// it sits in, seen with a physical function of a known crate; `/rustc/*/library/<crate>`
    /// and `.cargo/registry/.../<crate>-<version>` by convention), the module from the file's
    /// path under `src/`; generic arguments are dropped and `{closure#N}` becomes
    /// `{{closure}}`, as the demangler writes them. A closure's enclosing function is not in
    /// that debug info: build with `debug = "limited"` or more for exact inlined names.
    fn qualify(&self, bare: &str, file: &str) -> String {
        let mut name = match bare.find('<') {
            Some(i) if i > 0 => bare[..i].to_string(),
            _ => bare.to_string(),
        };
        if name.starts_with("{closure#") {
            name = "{{closure}}".to_string();
        }
        let krate = self
            .file_crates
            .get(file)
            .cloned()
            .or_else(|| source_root(file).and_then(|r| self.root_crates.get(r).cloned()))
            .or_else(|| crate_by_convention(file));
        let Some(krate) = krate else { return name };
        let module = module_path(file);
        if module.is_empty() {
            format!("{krate}::{name}")
        } else {
            format!("{krate}::{module}::{name}")
        }
    }
}

/// `/a/b/runtime/src/chan/mod.rs` -> `/a/b/runtime/src/`; a file outside `src/` (an
/// integration test, an example) is its own root.
fn source_root(file: &str) -> Option<&str> {
    match file.rfind("/src/") {
        Some(i) => Some(&file[..i + 5]),
        None => (!file.is_empty()).then_some(file),
    }
}

/// Crates whose paths say their name: the standard library, registry crates, and integration
/// tests, examples and benches (a crate named after the file).
fn crate_by_convention(file: &str) -> Option<String> {
    if !file.contains("/src/") && ["/tests/", "/examples/", "/benches/"].iter().any(|d| file.contains(d)) {
        let stem = file.rsplit('/').next()?.trim_end_matches(".rs");
        return Some(stem.replace('-', "_"));
    }
    if let Some(i) = file.find("/library/") {
        let rest = &file[i + 9..];
        return rest.split('/').next().map(str::to_string);
    }
    if file.contains("/registry/src/") {
        let dir = file[..file.rfind("/src/")?].rsplit('/').next()?;
        let name = match dir.rfind('-') {
            Some(i) if dir[i + 1..].starts_with(|c: char| c.is_ascii_digit()) => &dir[..i],
            _ => dir,
        };
        return Some(name.replace('-', "_"));
    }
    None
}

/// The module path of a file under `src/`: `chan/mod.rs` -> `chan`, `chan/select.rs` ->
/// `chan::select`, `lib.rs` -> ``.
fn module_path(file: &str) -> String {
    let Some(i) = file.rfind("/src/") else { return String::new() };
    let rel = file[i + 5..].trim_end_matches(".rs");
    let mut parts: Vec<&str> = rel.split('/').collect();
    if matches!(parts.last(), Some(&"mod") | Some(&"lib") | Some(&"main")) {
        parts.pop();
    }
    parts.join("::")
}

impl Default for Symbolizer {
    fn default() -> Self {
        Symbolizer::new()
    }
}

/// `rustc-demangle` without the hash; non-Rust names unchanged.
pub fn demangle(sym: &str) -> String {
    match rustc_demangle::try_demangle(sym) {
        Ok(d) => format!("{d:#}"),
        Err(_) => sym.to_string(),
    }
}

/// The main program's load bias (`dlpi_addr` of the first `dl_iterate_phdr` entry).
fn main_load_bias() -> usize {
    /// `dl_iterate_phdr` callback storing the first entry's load bias.
    ///
    /// # Safety
    ///
    /// `info` must be valid for the call and `data` must point to a writable `usize`.
    unsafe extern "C" fn cb(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid info for the duration of the call, and data is
        // the &mut usize we passed.
        unsafe { *(data as *mut usize) = (*info).dlpi_addr as usize };
        1 // the first entry is the main program: stop
    }
    let mut bias = 0usize;
    // SAFETY: cb matches the expected signature and only writes through the pointer we give.
    unsafe { libc::dl_iterate_phdr(Some(cb), &mut bias as *mut usize as *mut libc::c_void) };
    bias
}

/// Executable, file-backed mappings from `/proc/self/maps` (and the vdso), the main binary's
/// first.
fn read_maps(exe: &str, build_id: &str) -> Vec<MapEntry> {
    let text = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut v: Vec<MapEntry> = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(range), Some(perms), Some(off), Some(_dev), Some(_inode)) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            continue;
        };
        let path = it.collect::<Vec<_>>().join(" ");
        if !perms.contains('x') || (path.is_empty() || (path.starts_with('[') && path != "[vdso]")) {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end), Ok(offset)) =
            (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16), usize::from_str_radix(off, 16))
        else {
            continue;
        };
        let main = path == exe || path.trim_end_matches(" (deleted)") == exe;
        v.push(MapEntry {
            start,
            end,
            offset,
            build_id: if main { build_id.to_string() } else { String::new() },
            path,
            main,
        });
    }
    v.sort_by_key(|m| !m.main);
    v
}

/// The crate a demangled name belongs to: `gort_runtime::chan::Receiver<T>::recv` ->
/// `gort_runtime`, `<alloc::vec::Vec<T> as Clone>::clone` -> `alloc` (the self type's crate),
/// `<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem` -> `alloc` (a type without a
/// path: the trait's crate).
pub fn crate_of(name: &str) -> &str {
    let mut s = name;
    loop {
        let t = s.trim_start_matches(['<', '&', '(', '*']).trim_start_matches("mut ").trim_start_matches("dyn ");
        let t = t.trim_start_matches("const ");
        if t.len() == s.len() {
            break;
        }
        s = t;
    }
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    if s[end..].starts_with("::") {
        return &s[..end];
    }
    match s.find(" as ") {
        Some(i) => crate_of(&s[i + 4..]),
        None => &s[..end],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn here() -> usize {
        let mut buf = [0usize; 4];
        let w = crate::walk::walk_current(&mut buf);
        assert!(w.len >= 2);
        buf[1] // buf[0] returns into here(), buf[1] into the test
    }

    #[test]
    fn symbolizes_own_frame() {
        let pc = here();
        let mut s = Symbolizer::new();
        assert!(s.mappings[0].main, "{:?}", s.mappings);
        assert!(!s.mappings[0].build_id.is_empty());
        let info = s.lookup(pc);
        let names: Vec<_> = info.frames.iter().map(|f| f.name.to_string()).collect();
        assert!(names.iter().any(|n| n.contains("symbolizes_own_frame")), "{names:?}");
        assert!(info.frames.last().unwrap().file.ends_with("symbol.rs"), "{:?}", info.frames);
    }

    #[test]
    fn bare_names_get_paths() {
        let mut s = Symbolizer::new();
        s.learn("/w/runtime/src/proc.rs", "gort_runtime");
        assert_eq!(s.qualify("recv", "/w/runtime/src/chan/mod.rs"), "gort_runtime::chan::recv");
        assert_eq!(s.qualify("{closure#0}<u8>", "/w/runtime/src/lib.rs"), "gort_runtime::{{closure}}");
        assert_eq!(
            s.qualify("call_once<F>", "/rustc/abc/library/core/src/ops/function.rs"),
            "core::ops::function::call_once"
        );
        assert_eq!(
            s.qualify("coroutine_func", "/r/.cargo/registry/src/index/corosensei-0.3.4/src/coroutine.rs"),
            "corosensei::coroutine::coroutine_func"
        );
        assert_eq!(s.qualify("mystery", "/elsewhere/x.rs"), "mystery");
        assert_eq!(s.qualify("{closure#1}", "/w/tests/prof_leak.rs"), "prof_leak::{{closure}}");
    }

    #[test]
    fn crates() {
        assert_eq!(crate_of("<alloc::vec::Vec<T> as core::clone::Clone>::clone"), "alloc");
        assert_eq!(crate_of("gort_runtime::chan::Receiver<T>::recv"), "gort_runtime");
        assert_eq!(crate_of("<&mut W as std::io::Write>::write"), "std");
        assert_eq!(crate_of("<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem"), "alloc");
        assert_eq!(crate_of("<my::T as core::clone::Clone>::clone"), "my");
        assert_eq!(crate_of("main"), "main");
    }
}
