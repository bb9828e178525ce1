//! The `threadcreate` profile: the OS threads gort created to run goroutines (its Ms).
//!
//! Go records the stack that created each M. gort's runtime records only which goroutine
//! caused an M (`M::created_by`, crate-private), and no public API lists Ms yet (see the
//! runtime hook request in `/tmp/gort/core-bugs.md`). Until then the profile counts the Ms from
//! `/proc/self/task/*/comm` (the runtime names them `gort-m<N>`; Ms never exit, so the live
//! ones are all the ones created), with one pseudo-frame `gort_runtime::sched::newm` standing
//! for the unrecorded creation stack.

/// Number of Ms (threads named `gort-m*`).
pub fn count() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return 0 };
    dir.filter_map(Result::ok)
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.starts_with("gort-m")))
        .count()
}

/// The pprof profile.
pub fn proto(sym: &mut crate::symbol::Symbolizer) -> crate::proto::Profile {
    let n = count() as i64;
    let mut b = crate::builder::Builder::new(sym, &[("threadcreate", "count")], ("threadcreate", "count"), 1);
    if n > 0 {
        let loc = b.pseudo_location("gort_runtime::sched::newm");
        b.sample(vec![loc], vec![n], Vec::new());
    }
    b.finish()
}

/// Go's debug=1 text (`threadcreate profile: total N`).
pub fn text1() -> String {
    let n = count();
    let mut s = format!("threadcreate profile: total {n}\n");
    if n > 0 {
        s.push_str(&format!("{n} @\n#\t0x0\tgort_runtime::sched::newm+0x0\t?:0\n\n"));
    }
    s
}
