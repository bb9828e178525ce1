//! The goroutine leak profile: the groups the runtime's leak census suspects
//! ([`gort_runtime::census`]), served at `/debug/pprof/goroutineleak` (Go 1.27's name).
//!
//! Go 1.27 finds leaks with its GC (goroutines blocked on something no runnable goroutine can
//! reach); gort has no GC, so its profile lists instead the groups of parked goroutines (same
//! wait reason, same park site) that grew over the census window without ever shrinking. The
//! formats are the goroutine profile's:
//!
//! - `debug=0` (default): a gzipped pprof proto with one sample per suspected group (sample type
//!   `goroutine/count`, value the group's current count), labelled `wait reason` (string),
//!   `growth` (goroutines over the window) and `oldest wait` (nanoseconds); the census settings
//!   are in the profile's comments (`go tool pprof -comments`).
//! - `debug=1`: `goroutineleak profile: total N`, then per group `COUNT @ 0xpc ...`, comment lines
//!   with the wait reason, the growth, its rate, the window's counts, the oldest member's wait
//!   and a few goroutine ids, then the symbolized frames (`#\t0xpc\tfunc+0xoff\tfile:line`).
//!
//! With the census off the endpoint answers `503 Service Unavailable` with [`OFF_MESSAGE`], which
//! `go tool pprof` prints.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::Duration;

use gort_runtime::census::{Leak, Report};

use crate::builder::{goroutine_frames, Builder};
use crate::goroutine::hash_lines;
use crate::heap::NoSample;
use crate::http::{Request, Response};
use crate::proto::{Label, Profile};
use crate::symbol::Symbolizer;

/// What the endpoint and [`write_to`] say when the census is off.
pub const OFF_MESSAGE: &str = "the goroutine leak census is off: start the program with GORT_LEAKCHECK=10s (an \
                               interval, optionally ,window=K,threshold=N) or call \
                               gort::runtime::census::start(interval)";

/// The suspected leaks as a pprof profile (what `debug=0` writes, before gzip).
pub fn proto(sym: &mut Symbolizer, r: &Report) -> Profile {
    let mut b = Builder::new(sym, &[("goroutine", "count")], ("goroutine", "count"), 1);
    let comment = b.string(&settings(r));
    for l in &r.leaks {
        let locs = b.goroutine_locations(&l.stack, l.entry_name);
        let labels = vec![
            b.str_label("wait reason", l.wait_reason.as_str()),
            b.num_label("growth", l.growth as i64),
            Label {
                key: b.string("oldest wait"),
                str: 0,
                num: l.oldest_wait.as_nanos().min(i64::MAX as u128) as i64,
                num_unit: b.string("nanoseconds"),
            },
        ];
        b.sample(locs, vec![l.count as i64], labels);
    }
    let mut p = b.finish();
    p.comment.push(comment);
    p
}

/// The `debug=1` text (module docs).
pub fn text1(sym: &mut Symbolizer, r: &Report) -> String {
    let total: u64 = r.leaks.iter().map(|l| l.count).sum();
    let mut out = format!("goroutineleak profile: total {total}\n# {}\n", settings(r));
    if let Some(c) = &r.last {
        let _ = writeln!(
            out,
            "# last census: {} parked goroutines in {} groups ({} not grouped), took {}",
            c.parked,
            c.groups,
            c.overflow,
            dur(c.took)
        );
    }
    if r.leaks.is_empty() {
        let w = r.config.window;
        out.push_str(&if (r.points as usize) < w {
            format!("# no verdict yet: {} of the window's {w} census points taken\n", r.points)
        } else {
            "# no group grew over the window\n".to_string()
        });
    }
    for l in &r.leaks {
        out.push('\n');
        out.push_str(&l.count.to_string());
        out.push_str(" @");
        for pc in l.stack.iter() {
            let _ = write!(out, " {pc:#x}");
        }
        out.push('\n');
        write_leak(&mut out, l);
        hash_lines(&mut out, &goroutine_frames(sym, &l.stack, l.entry_name));
    }
    out
}

fn write_leak(out: &mut String, l: &Leak) {
    let _ = writeln!(out, "# wait reason: {}", l.wait_reason.as_str());
    let counts: Vec<String> = l.counts.iter().map(u64::to_string).collect();
    let _ = writeln!(
        out,
        "# growth: +{} in {} ({:.1}/min), counts {}",
        l.growth,
        dur(l.window),
        l.per_minute,
        counts.join(" ")
    );
    let _ = writeln!(out, "# oldest waiting: {}", dur(l.oldest_wait));
    let ids: Vec<String> = l.ids.iter().map(u64::to_string).collect();
    let more = if (l.ids.len() as u64) < l.count { " ..." } else { "" };
    let _ = writeln!(out, "# goroutines: {}{more}", ids.join(" "));
}

/// The census settings in one line.
fn settings(r: &Report) -> String {
    let c = &r.config;
    format!(
        "goroutine leak census every {}, window {} points, threshold {}: {} points taken",
        dur(c.interval),
        c.window,
        c.threshold,
        r.points
    )
}

/// `350ms`, `12.5s`, `3m20s`.
fn dur(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 1.0 {
        format!("{ms:.2}ms")
    } else if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else if ms < 120_000.0 {
        format!("{:.1}s", ms / 1e3)
    } else {
        let s = d.as_secs();
        format!("{}m{}s", s / 60, s % 60)
    }
}

/// Writes the leak profile (`debug == 0` the gzipped proto, otherwise the text); fails with
/// [`OFF_MESSAGE`] if the census is off.
pub fn write_to<W: Write + ?Sized>(w: &mut W, debug: u8) -> io::Result<()> {
    let out = render(debug).ok_or_else(|| io::Error::other(OFF_MESSAGE))?;
    w.write_all(&out)
}

fn render(debug: u8) -> Option<Vec<u8>> {
    let _g = NoSample::enter();
    let r = gort_runtime::census::report()?;
    Some(crate::with_symbolizer(|sym| {
        if debug == 0 {
            proto(sym, &r).encode_gz()
        } else {
            let text = text1(sym, &r);
            crate::with_no_lines_note(sym, text).into_bytes()
        }
    }))
}

/// `/debug/pprof/goroutineleak`.
pub(crate) fn serve(req: &Request) -> Response {
    let debug_s = req.form_value("debug");
    let debug = match debug_s.parse::<i64>() {
        _ if debug_s.is_empty() => 0,
        Ok(d) if d >= 0 => d,
        _ => return Response::error(400, "invalid value for \"debug\" - must be a non-negative integer"),
    };
    if !req.form_value("seconds").is_empty() {
        return Response::error(400, "\"seconds\" parameter is not supported for this profile type");
    }
    match render(debug.min(1) as u8) {
        None => Response::error(503, OFF_MESSAGE),
        Some(body) if debug > 0 => Response::new(200, "text/plain; charset=utf-8", body),
        Some(body) => Response::attachment("goroutineleak", body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(dur(Duration::from_micros(250)), "0.25ms");
        assert_eq!(dur(Duration::from_millis(412)), "412ms");
        assert_eq!(dur(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(dur(Duration::from_secs(200)), "3m20s");
    }
}
