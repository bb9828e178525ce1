//! The CPU profile (Go's `pprof.StartCPUProfile`/`StopCPUProfile`): the runtime samples stacks
//! from SIGPROF (`gort_runtime::cpuprof`); a collector thread drains its buffer every 20 ms into
//! a table; stopping builds the pprof profile and writes it to the writer given at start.
//!
//! Sample types are Go's: `samples/count` and `cpu/nanoseconds`, period `cpu/nanoseconds` of
//! `1e9 / rate`. A sample that landed between two stacks (a goroutine switch in progress) or
//! that the full buffer could not take is charged to the pseudo-frame `gort::lost_samples`, as
//! Go charges `runtime._LostExternalCode`. A sample carries the running goroutine's labels
//! ([`with_labels`](crate::with_labels), Go's `pprof.Do`), so `go tool pprof -tagfocus` filters
//! by them.
//!
//! The sampler is shared with the wall-clock profile ([`crate::wall`]), which spreads running
//! time over the same samples: a CPU profile requested while a wall profile runs joins its
//! sampler (at its rate) and the reverse; only two CPU profiles at once are refused, with Go's
//! `cpu profiling already in use`.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gort_runtime::cpuprof;

use crate::builder::{Builder, Trim};
use crate::labels::LabelSet;
use crate::NoSample;

/// Samples per second of CPU time (Go's default, 100 Hz).
pub const DEFAULT_RATE: u32 = 100;

/// The rate the next profile samples at (`set_cpu_profile_rate`).
static NEXT_RATE: AtomicU32 = AtomicU32::new(DEFAULT_RATE);

/// The name of the pseudo-frame lost samples are charged to.
pub const LOST_FRAME: &str = "gort::lost_samples";

struct Running {
    out: Box<dyn Write + Send>,
    sink: Sink,
    hz: u32,
    started: Instant,
    started_wall: i64,
}

static RUNNING: Mutex<Option<Running>> = Mutex::new(None);

/// (Stack, the goroutine's labels) -> sample periods.
pub(crate) type Table = HashMap<(Vec<usize>, Option<Arc<LabelSet>>), u64>;

/// A consumer of the sampler's samples: the CPU profile, the wall-clock profile. Each gets every
/// sample taken while it is subscribed.
pub(crate) type Sink = Arc<Mutex<Table>>;

/// The sampler the CPU and wall-clock profiles share: the runtime's SIGPROF sampling and a
/// collector thread that drains it into every subscribed sink. It runs while anyone subscribes,
/// at the rate the first subscriber asked for.
struct Sampler {
    collector: JoinHandle<()>,
    stop: Arc<AtomicBool>,
    hz: u32,
    sinks: Vec<Sink>,
}

static SAMPLER: Mutex<Option<Sampler>> = Mutex::new(None);
/// The sinks the collector feeds (a copy of `Sampler::sinks`, so draining never waits for the
/// sampler's lock, which `unsubscribe` holds while it joins the collector).
static SINKS: Mutex<Vec<Sink>> = Mutex::new(Vec::new());

/// Subscribes `sink` to the sampler, starting it at `hz` if it is not running. Returns the rate
/// it samples at.
pub(crate) fn subscribe(sink: &Sink, hz: u32) -> io::Result<u32> {
    let mut s = SAMPLER.lock().unwrap_or_else(|e| e.into_inner());
    if s.is_none() {
        cpuprof::start(hz).map_err(io::Error::other)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let collector = std::thread::Builder::new()
            .name("gort-cpuprof".into())
            .spawn(move || collect(&stop2))
            .inspect_err(|_| cpuprof::stop())?;
        *s = Some(Sampler { collector, stop, hz, sinks: Vec::new() });
    }
    let smp = s.as_mut().expect("sampler");
    // The samples before this instant belong to the other sinks only.
    drain_into_sinks();
    smp.sinks.push(sink.clone());
    SINKS.lock().unwrap_or_else(|e| e.into_inner()).push(sink.clone());
    Ok(smp.hz)
}

/// Unsubscribes `sink` after a last drain; the last one out stops the sampler.
pub(crate) fn unsubscribe(sink: &Sink) {
    let mut s = SAMPLER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(smp) = s.as_mut() else { return };
    smp.sinks.retain(|k| !Arc::ptr_eq(k, sink));
    if smp.sinks.is_empty() {
        let smp = s.take().expect("sampler");
        cpuprof::stop();
        smp.stop.store(true, Ordering::Relaxed);
        let _ = smp.collector.join();
    } else {
        drain_into_sinks();
    }
    SINKS.lock().unwrap_or_else(|e| e.into_inner()).retain(|k| !Arc::ptr_eq(k, sink));
}

/// Moves every sample in the runtime's buffer into every subscribed sink.
fn drain_into_sinks() {
    let sinks = SINKS.lock().unwrap_or_else(|e| e.into_inner());
    cpuprof::drain(|stack, w, labels| {
        let labels = crate::labels::from_slot(labels);
        for k in sinks.iter() {
            *k.lock().unwrap_or_else(|e| e.into_inner()).entry((stack.to_vec(), labels.clone())).or_default() +=
                w as u64;
        }
    });
}

/// Sets the sampling rate of the next CPU profile (Go's `runtime.SetCPUProfileRate`); `0`
/// restores the default. A profile running now keeps its rate.
pub fn set_cpu_profile_rate(hz: u32) {
    NEXT_RATE.store(if hz == 0 { DEFAULT_RATE } else { hz.min(10_000) }, Ordering::Relaxed);
}

/// Starts a CPU profile that [`stop_cpu_profile`] writes to `w` (gzipped pprof). Fails with
/// Go's `cpu profiling already in use` if one is running, or if another SIGPROF handler is
/// installed (another profiler: gort refuses rather than replace it).
pub fn start_cpu_profile<W: Write + Send + 'static>(w: W) -> io::Result<()> {
    let mut r = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    if r.is_some() {
        return Err(io::Error::other(cpuprof::CpuProfileError::InUse));
    }
    let sink = Sink::default();
    let hz = subscribe(&sink, NEXT_RATE.load(Ordering::Relaxed))?;
    *r = Some(Running { out: Box::new(w), sink, hz, started: Instant::now(), started_wall: crate::now_nanos() });
    Ok(())
}

/// Stops the CPU profile and writes it. Does nothing if none runs (as Go's).
pub fn stop_cpu_profile() -> io::Result<()> {
    let Some(mut run) = RUNNING.lock().unwrap_or_else(|e| e.into_inner()).take() else { return Ok(()) };
    unsubscribe(&run.sink);
    let table = std::mem::take(&mut *run.sink.lock().unwrap_or_else(|e| e.into_inner()));
    let lost = cpuprof::lost();
    let p = {
        let _g = NoSample::enter();
        let mut p = crate::with_symbolizer(|sym| proto(sym, &table, lost, run.hz));
        p.time_nanos = run.started_wall;
        p.duration_nanos = run.started.elapsed().as_nanos() as i64;
        p
    };
    run.out.write_all(&p.encode_gz())?;
    run.out.flush()
}

/// Whether a CPU profile is running.
pub fn cpu_profile_running() -> bool {
    RUNNING.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}

/// Profiles the next `d` and returns the gzipped pprof (the HTTP handler's `?seconds=N`).
/// `sleep` waits out the window (a goroutine's `gort::time::sleep`, or a thread's).
pub fn profile_for(d: Duration, sleep: impl FnOnce(Duration)) -> io::Result<Vec<u8>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    start_cpu_profile(SharedBuf(buf.clone()))?;
    sleep(d);
    stop_cpu_profile()?;
    let out = std::mem::take(&mut *buf.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(out)
}

struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The collector: drains the runtime's buffer into the sinks until told to stop, then once more.
fn collect(stop: &AtomicBool) {
    let _g = NoSample::enter();
    loop {
        let last = stop.load(Ordering::Relaxed);
        drain_into_sinks();
        if last {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn proto(sym: &mut crate::symbol::Symbolizer, table: &Table, lost: u64, hz: u32) -> crate::proto::Profile {
    let period = 1_000_000_000 / hz.max(1) as i64;
    let mut b = Builder::new(sym, &[("samples", "count"), ("cpu", "nanoseconds")], ("cpu", "nanoseconds"), period);
    let mut lost = lost;
    for ((stack, labels), &n) in table {
        if stack.is_empty() {
            lost += n;
            continue;
        }
        // The leaf is the interrupted pc itself, not a return address: symbolization looks up
        // `pc - 1` for return addresses, so give it `pc + 1` (as Go's CPU profiles do).
        let mut pcs = stack.clone();
        pcs[0] += 1;
        let locs = b.locations(&pcs, Trim::None);
        let labels = labels.iter().flat_map(|l| l.0.iter()).map(|(k, v)| b.str_label(k, v)).collect();
        b.sample(locs, vec![n as i64, n as i64 * period], labels);
    }
    if lost > 0 {
        let l = b.pseudo_location(LOST_FRAME);
        b.sample(vec![l], vec![lost as i64, lost as i64 * period], Vec::new());
    }
    b.finish()
}
