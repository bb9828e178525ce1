//! The wall-clock profile (`/debug/pprof/wall?seconds=N`): where every goroutine's time went
//! during a window, by state, off the CPU as well as on it. Go has no such profile (fgprof
//! approximates one by sampling every goroutine's stack, stopping the world each time).
//!
//! The runtime measures it exactly from its own transitions (`gort_runtime::wall`): waiting time
//! (by wait reason) and runnable time charged to the park-site stack, walked while the goroutine
//! is still parked, and running time, which the profile spreads over the stacks of the CPU
//! samples taken meanwhile with the same labels ([`crate::cpu`]'s sampler, shared). Running
//! time with no CPU sample to spread over (short runs between parks) is charged to the
//! pseudo-frame [`UNSAMPLED_FRAME`]; time of goroutines that had not started to the pseudo-frame
//! [`NOT_STARTED_FRAME`].
//!
//! Output: one sample type, `wall/nanoseconds`; every sample has a `state` label (`running`,
//! `runnable`, `syscall`, or the wait reason as goroutine dumps print it: `chan receive`,
//! `IO wait`, `sleep`, `sync.Mutex.Lock`...) and the goroutine's labels, so
//! `go tool pprof -tagfocus 'state=IO wait'` shows where the time spent waiting for the network
//! went. A goroutine that stays parked through the whole window counts the whole window.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gort_runtime::wall::{self, WallProfile, WallState};

use crate::builder::{Builder, Trim};
use crate::cpu::{subscribe, unsubscribe, Sink, DEFAULT_RATE};
use crate::labels::{from_slot, LabelSet};
use crate::NoSample;

/// Pseudo-frame for running time no CPU sample landed in.
pub const UNSAMPLED_FRAME: &str = "gort::running_unsampled";
/// Pseudo-frame for goroutines that had not started running yet.
pub const NOT_STARTED_FRAME: &str = "gort::not_started";

/// Profiles the next `d` and returns the gzipped pprof. `sleep` waits out the window.
pub fn profile_for(d: Duration, sleep: impl FnOnce(Duration)) -> io::Result<Vec<u8>> {
    let started = Instant::now();
    let started_wall = crate::now_nanos();
    wall::start().map_err(io::Error::other)?;
    let sink = Sink::default();
    match subscribe(&sink, DEFAULT_RATE) {
        Ok(_) => {}
        Err(e) => {
            let _ = wall::stop(&[]);
            return Err(e);
        }
    }
    sleep(d);
    let running = gort_runtime::running_stacks();
    let prof = wall::stop(&running);
    unsubscribe(&sink);
    let samples = std::mem::take(&mut *sink.lock().unwrap_or_else(|e| e.into_inner()));
    let _g = NoSample::enter();
    let mut p = crate::with_symbolizer(|sym| proto(sym, &prof, &samples));
    p.time_nanos = started_wall;
    // The window itself, not the time it took to build the profile.
    p.duration_nanos = if prof.window_ns > 0 { prof.window_ns as i64 } else { started.elapsed().as_nanos() as i64 };
    Ok(p.encode_gz())
}

type Labels = Option<Arc<LabelSet>>;

fn proto(
    sym: &mut crate::symbol::Symbolizer,
    prof: &WallProfile,
    samples: &crate::cpu::Table,
) -> crate::proto::Profile {
    let mut b = Builder::new(sym, &[("wall", "nanoseconds")], ("wall", "nanoseconds"), 1);
    let mut running: HashMap<Labels, u64> = HashMap::new();
    for r in &prof.records {
        let labels = from_slot(r.labels.clone());
        if r.state == WallState::Running {
            *running.entry(labels).or_default() += r.ns;
            continue;
        }
        let locs = if r.stack.is_empty() {
            vec![b.pseudo_location(NOT_STARTED_FRAME)]
        } else {
            b.goroutine_locations(&r.stack, None)
        };
        let lab = sample_labels(&mut b, r.state, &labels);
        b.sample(locs, vec![r.ns as i64], lab);
    }
    // Running time of each label set, spread over its CPU samples.
    let mut by_labels: HashMap<&Labels, Vec<(&Vec<usize>, u64)>> = HashMap::new();
    for ((stack, labels), &n) in samples {
        if !stack.is_empty() {
            by_labels.entry(labels).or_default().push((stack, n));
        }
    }
    for (labels, ns) in running {
        let lab = sample_labels(&mut b, WallState::Running, &labels);
        let Some(stacks) = by_labels.get(&labels) else {
            let l = b.pseudo_location(UNSAMPLED_FRAME);
            b.sample(vec![l], vec![ns as i64], lab);
            continue;
        };
        let total: u64 = stacks.iter().map(|s| s.1).sum();
        let mut given = 0u64;
        for (i, (stack, n)) in stacks.iter().enumerate() {
            // The last share takes the rounding remainder, so the shares sum to `ns` exactly.
            let share =
                if i + 1 == stacks.len() { ns - given } else { (ns as u128 * *n as u128 / total as u128) as u64 };
            given += share;
            // The leaf is the interrupted pc, not a return address (as in the CPU profile).
            let mut pcs = (*stack).clone();
            pcs[0] += 1;
            let locs = b.locations(&pcs, Trim::None);
            b.sample(locs, vec![share as i64], lab.clone());
        }
    }
    b.finish()
}

fn sample_labels(b: &mut Builder<'_>, state: WallState, labels: &Labels) -> Vec<crate::proto::Label> {
    let mut v = vec![b.str_label("state", state.as_str())];
    v.extend(labels.iter().flat_map(|l| l.0.iter()).map(|(k, v)| b.str_label(k, v)));
    v
}
