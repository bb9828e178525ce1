//! The layering of `src/`: every module imports only modules listed before it in the layer list
//! of the crate docs (`src/lib.rs`, "Layers"), and no import cycle exists.
//!
//! Imports are read as the crate's own checker reads them: `use` lines and inline paths that
//! start with `crate::` or `super::` (one level of `crate::{a::b, c}` groups expanded), resolved
//! to the longest module path that is a file; `self::` re-exports of a directory's own children
//! are not imports. Test code (from the first `#[cfg(test)]`) and comments are ignored. A new
//! file must be placed in the list; an import that points up the list fails with its location.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, as (module path, file).
fn modules(dir: &Path) -> BTreeMap<Module, PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<Module, PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(root).unwrap().with_extension("");
                let mut m: Module = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
                if matches!(m.last().map(String::as_str), Some("mod" | "lib")) {
                    m.pop();
                }
                out.insert(m, p);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The code of a file without comments and without its tests.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines().map(|l| l.find("//").map_or(l, |i| &l[..i])).collect::<Vec<_>>().join("\n")
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The `::`-separated identifiers starting at `s`.
fn path_at(s: &str) -> Vec<String> {
    let mut segs = Vec::new();
    let mut rest = s;
    while let Some(r) = rest.strip_prefix("::") {
        let n = r.find(|c: char| !ident_char(c)).unwrap_or(r.len());
        if n == 0 || r.starts_with(|c: char| c.is_ascii_digit()) {
            break;
        }
        segs.push(r[..n].to_string());
        rest = &r[n..];
    }
    segs
}

/// The modules `m` (in `file`) imports.
fn imports(m: &Module, file: &Path, files: &BTreeMap<Module, PathBuf>) -> BTreeSet<Module> {
    let resolve = |segs: &[String]| -> Option<Module> {
        (1..=segs.len()).rev().map(|k| segs[..k].to_vec()).find(|p| files.contains_key(p))
    };
    let text = code(file);
    let mut out = BTreeSet::new();
    let mut add = |t: Option<Module>| {
        if let Some(t) = t {
            if &t != m {
                out.insert(t);
            }
        }
    };
    for (i, _) in text.match_indices("crate::{") {
        let body = &text[i + "crate::{".len()..];
        let body = &body[..body.find('}').unwrap_or(body.len())];
        for item in body.split(',') {
            let segs: Vec<String> = item
                .split("::")
                .map(str::trim)
                .take_while(|s| !s.is_empty() && s.chars().all(ident_char))
                .map(String::from)
                .collect();
            add(resolve(&segs));
        }
    }
    for key in ["crate", "super"] {
        for (i, _) in text.match_indices(key) {
            if text[..i].ends_with(ident_char) {
                continue;
            }
            let segs = path_at(&text[i + key.len()..]);
            if segs.is_empty() {
                continue;
            }
            let full = if key == "super" {
                // `super` of `a/b.rs` and of `a/b/mod.rs` (both module a::b) is `a`.
                let mut base = m[..m.len().saturating_sub(1)].to_vec();
                base.extend(segs);
                base
            } else {
                segs
            };
            add(resolve(&full));
        }
    }
    out
}

/// The layer list of the crate docs: (module pattern, position), bottom first. `dir/*` stands for
/// every file under `dir/`, `dir/{a,b}` for `dir/a` and `dir/b`, `dir/mod` for `dir/mod.rs`.
fn layer_list() -> Vec<(String, usize)> {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).unwrap();
    let start = lib.find("//! # Layers").expect("lib.rs has a Layers section");
    let block = &lib[start..];
    let open = block.find("```text").expect("the layer list is a text block") + "```text".len();
    let close = open + block[open..].find("```").unwrap();
    let mut out = Vec::new();
    for line in block[open..close].lines() {
        let line = line.trim_start_matches("//!").trim();
        // `N. name   module module ...` or a continuation line of modules.
        let words: Vec<&str> = line.split_whitespace().collect();
        let words = match words.first() {
            Some(w) if w.ends_with('.') && w[..w.len() - 1].chars().all(|c| c.is_ascii_digit()) => &words[2..],
            Some(_) => &words[..],
            None => continue,
        };
        for w in words {
            if let (Some(i), true) = (w.find('{'), w.ends_with('}')) {
                for part in w[i + 1..w.len() - 1].split(',') {
                    out.push((format!("{}{part}", &w[..i]), out.len()));
                }
            } else {
                out.push((w.to_string(), out.len()));
            }
        }
    }
    out
}

fn position(m: &Module, list: &[(String, usize)]) -> Option<(usize, bool)> {
    let name = m.join("/");
    for (pat, pos) in list {
        if let Some(dir) = pat.strip_suffix("/*") {
            if name == dir || name.starts_with(&format!("{dir}/")) {
                return Some((*pos, true));
            }
        } else if let Some(dir) = pat.strip_suffix("/mod") {
            if name == dir {
                return Some((*pos, false));
            }
        } else if *pat == name {
            return Some((*pos, false));
        }
    }
    None
}

#[test]
fn imports_point_down_the_layer_list() {
    let files = modules(&src_dir());
    let list = layer_list();
    assert!(list.len() > 20, "layer list not found or too short: {list:?}");
    let mut errors = Vec::new();
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (m, file) in &files {
        if m.is_empty() || m.last().is_some_and(|s| s == "tests") {
            continue; // lib.rs re-exports the layers; a `tests.rs` is test code
        }
        let Some((pos, group)) = position(m, &list) else {
            errors.push(format!("{}: not in the layer list of lib.rs", file.display()));
            continue;
        };
        let deps = imports(m, file, &files);
        for d in &deps {
            if d.is_empty() {
                continue;
            }
            let Some((dpos, _)) = position(d, &list) else { continue };
            let same_group = group && dpos == pos;
            if dpos >= pos && !same_group {
                errors.push(format!("{}: imports {} (listed at or above it)", file.display(), d.join("/")));
            }
        }
        graph.insert(m.clone(), deps);
    }
    assert!(errors.is_empty(), "layering violations:\n{}", errors.join("\n"));
    // Inside a `dir/*` group order is free, but a cycle is not.
    let mut state: BTreeMap<&Module, u8> = BTreeMap::new();
    fn visit<'a>(
        m: &'a Module,
        g: &'a BTreeMap<Module, BTreeSet<Module>>,
        state: &mut BTreeMap<&'a Module, u8>,
        path: &mut Vec<String>,
    ) {
        match state.get(m) {
            Some(2) => return,
            Some(1) => panic!("import cycle: {} -> {}", path.join(" -> "), m.join("/")),
            _ => {}
        }
        state.insert(m, 1);
        path.push(m.join("/"));
        for d in g.get(m).into_iter().flatten() {
            visit(d, g, state, path);
        }
        path.pop();
        state.insert(m, 2);
    }
    for m in graph.keys() {
        visit(m, &graph, &mut state, &mut Vec::new());
    }
}

/// The checker itself sees what it must: an inline path, a grouped `use`, a `super::` path.
#[test]
fn import_reader_finds_inline_grouped_and_super_paths() {
    let dir = std::env::temp_dir().join(format!("gort-layers-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("d")).unwrap();
    std::fs::write(dir.join("a.rs"), "").unwrap();
    std::fs::write(dir.join("b.rs"), "").unwrap();
    std::fs::write(dir.join("d/mod.rs"), "").unwrap();
    std::fs::write(dir.join("d/e.rs"), "").unwrap();
    std::fs::write(
        dir.join("c.rs"),
        "use crate::{a::X, b};\nfn f() { crate::d::e::g(); } // crate::zzz\n#[cfg(test)]\nmod t { use crate::c; }",
    )
    .unwrap();
    std::fs::write(dir.join("d/f.rs"), "fn f() { super::e::g(); }").unwrap();
    let files = modules(&dir);
    let m = |s: &str| -> Module { s.split('/').map(String::from).collect() };
    let got = imports(&m("c"), &dir.join("c.rs"), &files);
    assert_eq!(got, [m("a"), m("b"), m("d/e")].into_iter().collect());
    let got = imports(&m("d/f"), &dir.join("d/f.rs"), &files);
    assert_eq!(got, [m("d/e")].into_iter().collect());
    std::fs::remove_dir_all(&dir).unwrap();
}
