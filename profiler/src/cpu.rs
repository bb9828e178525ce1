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
    collector: JoinHandle<Table>,
    stop: Arc<AtomicBool>,
    hz: u32,
    started: Instant,
    started_wall: i64,
}

static RUNNING: Mutex<Option<Running>> = Mutex::new(None);

/// (Stack, the goroutine's labels) -> sample periods.
type Table = HashMap<(Vec<usize>, Option<Arc<LabelSet>>), u64>;

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
    let hz = NEXT_RATE.load(Ordering::Relaxed);
    cpuprof::start(hz).map_err(io::Error::other)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let collector = std::thread::Builder::new()
        .name("gort-cpuprof".into())
        .spawn(move || collect(&stop2))
        .inspect_err(|_| cpuprof::stop())?;
    *r = Some(Running {
        out: Box::new(w),
        collector,
        stop,
        hz,
        started: Instant::now(),
        started_wall: crate::now_nanos(),
    });
    Ok(())
}

/// Stops the CPU profile and writes it. Does nothing if none runs (as Go's).
pub fn stop_cpu_profile() -> io::Result<()> {
    let Some(mut run) = RUNNING.lock().unwrap_or_else(|e| e.into_inner()).take() else { return Ok(()) };
    cpuprof::stop();
    run.stop.store(true, Ordering::Relaxed);
    let table = run.collector.join().unwrap_or_default();
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

/// The collector: drains the runtime's buffer until told to stop, then once more.
fn collect(stop: &AtomicBool) -> Table {
    let _g = NoSample::enter();
    let mut t = Table::new();
    loop {
        let last = stop.load(Ordering::Relaxed);
        cpuprof::drain(|stack, w, labels| {
            *t.entry((stack.to_vec(), crate::labels::from_slot(labels))).or_default() += w as u64
        });
        if last {
            return t;
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
