//! Flame graphs of any profile, rendered in-process as SVG with `inferno`: what `go tool pprof
//! -http` shows under View > Flame Graph, without a Go toolchain.
//!
//! [`folded`] turns a pprof message into folded stacks (`root;caller;leaf value`, one line per
//! distinct stack, inlined frames expanded), [`write_flamegraph`] renders them; the inferno SVG
//! carries its own script (click to zoom, Ctrl-F to search). `/debug/pprof/flamegraph`
//! fetches the profile through the server's own `/debug/pprof/NAME` route, so a profile's
//! parameters, `?seconds=N` deltas and error replies are exactly that route's.

use std::collections::HashMap;
use std::io::{self, Write};

use crate::http::{self, Request, Response};
use crate::proto;

/// The sample type Go's pprof shows by default: the profile's `default_sample_type` if it names
/// one of its types, else the last type (`inuse_space` for `heap`).
pub fn default_sample_index(p: &proto::Profile) -> usize {
    let want = p.str(p.default_sample_type);
    let named = (!want.is_empty()).then(|| p.sample_type.iter().position(|t| p.str(t.r#type) == want)).flatten();
    named.unwrap_or(p.sample_type.len().saturating_sub(1))
}

/// The index of the sample type `sel` names: its type name (`inuse_space`) or its index, as
/// pprof's `-sample_index` takes; `None` picks [`default_sample_index`].
pub fn sample_index(p: &proto::Profile, sel: Option<&str>) -> Result<usize, String> {
    let Some(sel) = sel.filter(|s| !s.is_empty()) else { return Ok(default_sample_index(p)) };
    let by_name = p.sample_type.iter().position(|t| p.str(t.r#type) == sel);
    let by_index = sel.parse::<usize>().ok().filter(|&i| i < p.sample_type.len());
    by_name.or(by_index).ok_or_else(|| {
        let names: Vec<&str> = p.sample_type.iter().map(|t| p.str(t.r#type)).collect();
        format!("sample_index {sel:?} must be one of: {}", names.join(", "))
    })
}

/// The folded stacks of `p` for sample type `index`: `root;...;leaf value` per distinct stack,
/// sorted. Each location's lines are expanded outermost first, so inlined callees are frames of
/// their own. Samples with no positive value (a delta's disappeared stacks) are left out.
pub fn folded(p: &proto::Profile, index: usize) -> Vec<String> {
    let mut lines: Vec<String> = fold(p, index).into_iter().map(|(stack, v)| format!("{stack} {v}")).collect();
    lines.sort_unstable();
    lines
}

/// The value of each distinct folded stack of `p` for sample type `index`.
fn fold(p: &proto::Profile, index: usize) -> HashMap<String, i64> {
    let funcs: HashMap<u64, &str> = p.function.iter().map(|f| (f.id, p.str(f.name))).collect();
    let locs: HashMap<u64, &proto::Location> = p.location.iter().map(|l| (l.id, l)).collect();
    let mut stacks: HashMap<String, i64> = HashMap::new();
    let mut frames: Vec<String> = Vec::new();
    for s in &p.sample {
        let v = s.value.get(index).copied().unwrap_or(0);
        if v <= 0 {
            continue;
        }
        frames.clear();
        for id in s.location_id.iter().rev() {
            match locs.get(id) {
                Some(l) if !l.line.is_empty() => {
                    for ln in l.line.iter().rev() {
                        frames.push(frame_name(funcs.get(&ln.function_id).copied().unwrap_or("?")));
                    }
                }
                Some(l) => frames.push(format!("{:#x}", l.address)),
                None => frames.push(format!("location {id}")),
            }
        }
        if frames.is_empty() {
            // A goroutine caught running on another M has no stack (see the crate docs).
            frames.push("(no stack)".into());
        }
        *stacks.entry(frames.join(";")).or_default() += v;
    }
    stacks
}

/// Differential folded stacks: `stack before after` for every stack of either profile.
fn folded_diff(base: &proto::Profile, p: &proto::Profile, index: usize) -> Vec<String> {
    let (before, mut after) = (fold(base, index), fold(p, index));
    let mut lines: Vec<String> = before
        .into_iter()
        .map(|(stack, v0)| {
            let v1 = after.remove(&stack).unwrap_or(0);
            format!("{stack} {v0} {v1}")
        })
        .collect();
    lines.extend(after.into_iter().map(|(stack, v1)| format!("{stack} 0 {v1}")));
    lines.sort_unstable();
    lines
}

/// A function name as one folded frame: `;` separates frames and inferno reads the count after
/// the last space, so a Rust array type's `;` (`[u8; 4]`) becomes a look-alike.
fn frame_name(name: &str) -> String {
    let name = if name.is_empty() { "?" } else { name };
    name.replace(';', "\u{ff1b}").replace(['\n', '\r'], " ")
}

/// Writes `p` as an SVG flame graph titled with `name` and the sample type: `sample_type`
/// chooses it as [`sample_index`] does. An unknown sample type is an `InvalidInput` error whose
/// message lists the profile's types.
pub fn write_flamegraph<W: Write>(p: &proto::Profile, name: &str, sample_type: Option<&str>, w: W) -> io::Result<()> {
    render(None, p, name, sample_type, w)
}

/// Writes a differential flame graph: frames as wide as in `p`, colored by their change since
/// `base` (red grew, blue shrank), as inferno's two-count input does. A stack gone since `base`
/// has no width in `p` and does not show. `sample_type` as for [`write_flamegraph`].
pub fn write_flamegraph_diff<W: Write>(
    base: &proto::Profile,
    p: &proto::Profile,
    name: &str,
    sample_type: Option<&str>,
    w: W,
) -> io::Result<()> {
    render(Some(base), p, name, sample_type, w)
}

fn render<W: Write>(
    base: Option<&proto::Profile>,
    p: &proto::Profile,
    name: &str,
    sample_type: Option<&str>,
    mut w: W,
) -> io::Result<()> {
    let index = sample_index(p, sample_type).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let (ty, unit) = p.sample_type.get(index).map_or(("", ""), |t| (p.str(t.r#type), p.str(t.unit)));
    let mut title = format!("{name}: {ty} ({unit})");
    let lines = match base {
        None => folded(p, index),
        Some(b) => {
            title.push_str(", change since the base profile");
            folded_diff(b, p, index)
        }
    };
    if lines.is_empty() {
        // inferno's empty graph says "ERROR: No valid input", which an idle profile is not.
        return write!(
            w,
            "<?xml version=\"1.0\" standalone=\"no\"?>\n<svg version=\"1.1\" width=\"1200\" height=\"60\" \
             xmlns=\"http://www.w3.org/2000/svg\"><text x=\"600\" y=\"36\" text-anchor=\"middle\" \
             font-family=\"Verdana\" font-size=\"17\">{}: no samples</text></svg>\n",
            xml_escape(&title)
        );
    }
    let mut opt = inferno::flamegraph::Options::default();
    opt.title = title;
    let types: Vec<&str> = p.sample_type.iter().map(|t| p.str(t.r#type)).collect();
    let mut sub = Vec::new();
    if types.len() > 1 {
        sub.push(format!("sample_index: {}", types.join(", ")));
    }
    match base {
        Some(b) => sub.push(format!("base {:.1} s earlier", p.time_nanos.saturating_sub(b.time_nanos) as f64 / 1e9)),
        None if p.duration_nanos > 0 => sub.push(format!("over {:.1} s", p.duration_nanos as f64 / 1e9)),
        None => {}
    }
    opt.subtitle = (!sub.is_empty()).then(|| sub.join("; "));
    opt.count_name = if unit.is_empty() { "samples".into() } else { unit.into() };
    opt.colors = inferno::flamegraph::Palette::Multi(inferno::flamegraph::color::MultiPalette::Rust);
    // Colors from the function name, not a random draw: the same frame looks the same on reload.
    opt.hash = true;
    inferno::flamegraph::from_lines(&mut opt, lines.iter().map(String::as_str), w)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// `/debug/pprof/flamegraph?profile=NAME&seconds=N&sample_index=TYPE`: the profile as an SVG
/// flame graph. `profile` defaults to the CPU profile (`profile`, of `seconds`, 30 by default).
/// `diff_base=N` (instead of `seconds`) renders the change over the next N seconds.
pub(crate) fn serve(req: &Request) -> Response {
    let req = req.clone();
    // The connection goroutine only waits for this one in `join`.
    // SAFETY: as a connection goroutine (`http::accept_loop`): only Send values across its one
    // blocking call (a `seconds=` delta's `sleep`); the profiler's thread-bound state is taken
    // and released within single calls that never park.
    let spawned = unsafe { gort_runtime::Builder::new().stack_size(STACK).spawn(move || reply(&req)) };
    match spawned.map(|h| h.join()) {
        Ok(Ok(r)) => r,
        Err(e) => Response::error(500, &format!("Could not render flame graph: {e}")),
        Ok(Err(_)) => Response::error(500, "Could not render flame graph: the renderer panicked"),
    }
}

/// Stack of the goroutine that builds and renders a flame graph: an unoptimized build needs
/// more than the default 256 KiB for that. A dedicated stack is mapped lazily: the headroom
/// costs only address space.
const STACK: usize = 4 << 20;

fn reply(req: &Request) -> Response {
    let mut name = req.form_value("profile");
    if name.is_empty() {
        name = "profile".to_string();
    }
    // Only a plain name may reach the inner route: no path, no query of its own.
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Response::error(404, "Unknown profile");
    }
    let mut target = format!("/debug/pprof/{name}");
    let secs = req.form_value("seconds");
    if !secs.is_empty() {
        target.push_str("?seconds=");
        target.push_str(&query_escape(&secs));
    }
    let diff_base = req.form_value("diff_base");
    let base = if diff_base.is_empty() {
        None
    } else {
        if !secs.is_empty() {
            return Response::error(400, "seconds and diff_base params are incompatible");
        }
        let wait = match diff_base.parse::<i64>() {
            Ok(s) if s > 0 => s as u64,
            _ => return Response::error(400, "invalid value for \"diff_base\" - must be a positive integer"),
        };
        if wait > http::MAX_SECONDS {
            return Response::error(400, "profile duration exceeds server's WriteTimeout");
        }
        let base = match fetch(&target) {
            Ok(p) => p,
            Err(r) => return r,
        };
        gort_runtime::time::sleep(std::time::Duration::from_secs(wait));
        Some(base)
    };
    let p = match fetch(&target) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut svg = Vec::new();
    match render(base.as_ref(), &p, &name, Some(&req.form_value("sample_index")), &mut svg) {
        Ok(()) => Response::new(200, "image/svg+xml", svg),
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Response::error(400, &e.to_string()),
        Err(e) => Response::error(500, &format!("Could not render flame graph: {e}")),
    }
}

/// The profile the server's own route `target` serves, or the reply to send instead.
fn fetch(target: &str) -> Result<proto::Profile, Response> {
    let inner = http::handle(&Request::get(target));
    if inner.status != 200 {
        return Err(inner);
    }
    // A 200 that is not a profile (`cmdline`) is not a profile name either.
    if inner.header("Content-Type") != Some("application/octet-stream") {
        return Err(Response::error(404, "Unknown profile"));
    }
    proto::Profile::decode_any(&inner.body).map_err(|_| Response::error(404, "Unknown profile"))
}

/// Percent-encodes everything but unreserved characters, for a value put back into a query.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A profile of two sample types with one inlined frame and a `;` in a name.
    fn sample_profile() -> proto::Profile {
        let strings = ["", "alloc_space", "bytes", "inuse_space", "main", "outer", "inlined", "f<[u8; 4]>"];
        let f = |id: u64, name: i64| proto::Function { id, name, ..Default::default() };
        let ln = |function_id: u64| proto::Line { function_id, ..Default::default() };
        let vt = |r#type, unit| proto::ValueType { r#type, unit };
        proto::Profile {
            sample_type: vec![vt(1, 2), vt(3, 2)],
            sample: vec![
                proto::Sample { location_id: vec![2, 1], value: vec![10, 3], label: vec![] },
                proto::Sample { location_id: vec![3, 1], value: vec![5, 0], label: vec![] },
                proto::Sample { location_id: vec![2, 1], value: vec![1, 1], label: vec![] },
            ],
            location: vec![
                proto::Location { id: 1, line: vec![ln(1)], ..Default::default() },
                proto::Location { id: 2, line: vec![ln(3), ln(2)], ..Default::default() },
                proto::Location { id: 3, line: vec![ln(4)], ..Default::default() },
            ],
            function: vec![f(1, 4), f(2, 5), f(3, 6), f(4, 7)],
            string_table: strings.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn folds_inlined_frames_and_sums_stacks() {
        let p = sample_profile();
        assert_eq!(default_sample_index(&p), 1);
        assert_eq!(folded(&p, 1), ["main;outer;inlined 4"]);
        assert_eq!(folded(&p, 0), ["main;f<[u8\u{ff1b} 4]> 5", "main;outer;inlined 11"]);
        assert_eq!(sample_index(&p, Some("alloc_space")), Ok(0));
        assert_eq!(sample_index(&p, Some("1")), Ok(1));
        assert!(sample_index(&p, Some("nope")).unwrap_err().contains("alloc_space, inuse_space"));
    }

    #[test]
    fn renders_svg() {
        let p = sample_profile();
        let mut svg = Vec::new();
        write_flamegraph(&p, "heap", Some("alloc_space"), &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.contains("<svg") && svg.contains("inlined") && svg.contains("heap: alloc_space (bytes)"), "{svg}");
        let e = write_flamegraph(&p, "heap", Some("x"), io::sink()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let mut later = p.clone();
        later.sample[1].value[0] = 9;
        let mut svg = Vec::new();
        write_flamegraph_diff(&p, &later, "heap", Some("alloc_space"), &mut svg).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.contains("change since the base profile") && svg.contains("+20.00%"), "{svg}");
        assert_eq!(folded_diff(&p, &later, 0), ["main;f<[u8\u{ff1b} 4]> 5 9", "main;outer;inlined 11 11"]);
        let empty = proto::Profile { sample: vec![], ..p };
        let mut svg = Vec::new();
        write_flamegraph(&empty, "heap", None, &mut svg).unwrap();
        assert!(String::from_utf8(svg).unwrap().contains("heap: inuse_space (bytes): no samples"));
    }

    #[test]
    fn route_errors() {
        let r = http::handle(&Request::get("/debug/pprof/flamegraph?profile=nosuch"));
        assert_eq!((r.status, &r.body[..]), (404, &b"Unknown profile\n"[..]));
        let r = http::handle(&Request::get("/debug/pprof/flamegraph?profile=cmdline"));
        assert_eq!(r.status, 404);
        let r = http::handle(&Request::get("/debug/pprof/flamegraph?profile=goroutine%3Fdebug%3D1"));
        assert_eq!(r.status, 404);
        let r = http::handle(&Request::get("/debug/pprof/flamegraph?profile=heap&seconds=x"));
        assert_eq!(r.body, b"invalid value for \"seconds\" - must be a positive integer\n");
        let r = http::handle(&Request::get("/debug/pprof/flamegraph?profile=heap&sample_index=nope"));
        assert_eq!(r.status, 400);
        assert!(String::from_utf8_lossy(&r.body).contains("inuse_space"));
    }
}
