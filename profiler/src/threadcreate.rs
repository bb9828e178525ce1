//! The `threadcreate` profile: the OS threads gort created to run goroutines (its Ms), each
//! with the stack that created it (Go's `mp.createstack`), from `gort_runtime::threads()`.
//! Ms never exit, so every M ever created is counted, as in Go.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::builder::{frames, Trim};
use crate::symbol::Symbolizer;

/// Number of Ms.
pub fn count() -> usize {
    gort_runtime::threads().len()
}

/// Ms grouped by creation stack: (stack, count).
fn grouped() -> Vec<(Vec<usize>, i64)> {
    let mut m: BTreeMap<Vec<usize>, i64> = BTreeMap::new();
    for t in gort_runtime::threads() {
        *m.entry(t.create_stack).or_default() += 1;
    }
    m.into_iter().collect()
}

/// The pprof profile.
pub fn proto(sym: &mut Symbolizer) -> crate::proto::Profile {
    let mut b = crate::builder::Builder::new(sym, &[("threadcreate", "count")], ("threadcreate", "count"), 1);
    for (stack, n) in grouped() {
        let locs = if stack.is_empty() {
            vec![b.pseudo_location("gort_runtime::sched::idle::newm")]
        } else {
            b.locations(&stack, Trim::None)
        };
        b.sample(locs, vec![n], Vec::new());
    }
    b.finish()
}

/// Go's debug=1 text (`threadcreate profile: total N`, then `N @ 0x..` and `#` frame lines).
pub fn text1(sym: &mut Symbolizer) -> String {
    let g = grouped();
    let total: i64 = g.iter().map(|(_, n)| n).sum();
    let mut s = format!("threadcreate profile: total {total}\n");
    for (stack, n) in &g {
        let _ = write!(s, "{n} @");
        for pc in stack {
            let _ = write!(s, " {pc:#x}");
        }
        s.push('\n');
        crate::goroutine::hash_lines(&mut s, &frames(sym, stack, Trim::None));
        s.push('\n');
    }
    s
}
