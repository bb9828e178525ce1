//! A snapshot of the scheduler's state and counters, in the spirit of Go's `runtime/metrics`:
//! [`metrics`] reads them without stopping anything (each number is read on its own, so the
//! snapshot is not one instant, as Go's is not either). The profiler serves them to Prometheus
//! at `/debug/metrics`.

use std::sync::atomic::Ordering;

use crate::g::{self, for_each_g, WaitReason};
use crate::sched::state::sched_if_started;
use crate::schedstats::{read_latency, read_park, sched_timing, Histogram};

/// The scheduler's numbers at one moment; see [`metrics`].
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Goroutines running on a thread now.
    pub goroutines_running: u64,
    /// Goroutines ready to run, waiting for a P.
    pub goroutines_runnable: u64,
    /// Goroutines inside `blocking`.
    pub goroutines_syscall: u64,
    /// Parked goroutines by wait reason (reasons with none are left out).
    pub goroutines_waiting: Vec<(WaitReason, u64)>,
    /// Goroutines created since the runtime started.
    pub goroutines_created: u64,
    /// Threads the scheduler started (Ms), sysmon not counted.
    pub threads: u64,
    /// Ps (GOMAXPROCS).
    pub procs: u64,
    /// Ps with nothing to run.
    pub procs_idle: u64,
    /// Ms spinning: holding a P, looking for work.
    pub procs_spinning: u64,
    /// Goroutines parked on the network poller.
    pub netpoll_waiters: u64,
    /// Timers pending in the Ps' heaps (sleeps, timeouts, `time::Timer`s).
    pub timers_pending: u64,
    /// How late an idle M is back with a P from a timed sleep, in ns: a moving average over the
    /// last sleeps or so (0 before the first). An M whose next timer is due sooner than this
    /// spins for it instead of sleeping; tens of µs on a VM, a few on bare metal.
    pub timer_oversleep_ns: u64,
    /// Waits for a timer that an M spun out instead of sleeping through (since start).
    pub timer_spins: u64,
    /// Ps handed off from a goroutine that stayed in `blocking` (since start).
    pub blocking_handoffs: u64,
    /// Ps taken from a goroutine that ran 10 ms without entering the scheduler while work
    /// waited (since start).
    pub hog_handoffs: u64,
    /// Goroutines that ran 10 ms while work waited, were asked to yield, and did, at the entry
    /// of a blocking operation, before their P had to be taken (since start).
    pub hog_yields: u64,
    /// Runs at or above the hog threshold (since start; see [`hog`](crate::hog)).
    pub hog_events: u64,
    /// Goroutines taken from a P that stayed 300 µs on one goroutine while they waited, by a P
    /// that was scheduling (since start): work that would have waited for the goroutine to
    /// yield, or for its descheduled thread to run again.
    pub stranded_takes: u64,
    /// Ms sysmon woke for a hand-off whose wake was skipped because waking kept finding nothing
    /// (`futile_spins`) and that stood in `runnext` behind a goroutine that had not scheduled
    /// for a whole tick, while a P idled and no M looked (since start).
    pub stranded_wakes: u64,
    /// Ms woken to look for readied work that found nothing, less those that found some, now
    /// (0 to 8, starting at 8). From 4 a goroutine that readies another into its own P's empty
    /// `runnext` wakes nobody.
    pub futile_spins: u64,
    /// Ms with nothing to run that, goroutines waiting on the network, kept their P and polled
    /// it for a while before sleeping, and found a goroutine to run there (since start).
    pub netpoll_spins_found: u64,
    /// Such spins that ran out finding nothing (since start). After 4 in a row Ms stop spinning
    /// for the network until a sleeping poller is woken by it soon after it slept.
    pub netpoll_spins_ran_out: u64,
    /// Goroutine stacks in use (goroutines that have started and not finished).
    pub stacks_in_use: u64,
    /// Their bytes (reserved sizes; resident memory is what they touched).
    pub stack_bytes_in_use: u64,
    /// Pooled stacks free for reuse.
    pub stacks_cached: u64,
    /// Their bytes (reserved sizes).
    pub stack_bytes_cached: u64,
    /// Heap in use as the sampling allocator estimates it (`gort::profiler::Allocator`; 0
    /// without it), in bytes.
    pub heap_inuse_sampled: u64,
    /// CPU profile samples lost (buffer full) in the current or last CPU profile.
    pub cpu_samples_lost: u64,
    /// Whether the latency and park histograms below are being recorded
    /// ([`set_sched_timing`](crate::schedstats::set_sched_timing)).
    pub sched_timing: bool,
    /// Scheduling latency: from runnable to running.
    pub sched_latency: Histogram,
    /// How long parks lasted, by wait reason (reasons with none are left out).
    pub park_durations: Vec<(WaitReason, Histogram)>,
}

/// The scheduler's state now. Costs a pass over every goroutine ever created (a relaxed load
/// or two each) and a lock per P's timer heap; all zeros before the runtime starts.
pub fn metrics() -> Metrics {
    let Some(s) = sched_if_started() else { return Metrics::default() };
    let mut m = Metrics::default();
    let mut waiting = [0u64; WaitReason::ALL.len()];
    let pool_size = s.stacks.stack_size();
    let mut pooled_in_use = 0u64;
    for_each_g(|g| {
        if !g.is_goroutine() {
            return;
        }
        match g.status() {
            g::RUNNING => m.goroutines_running += 1,
            g::RUNNABLE => m.goroutines_runnable += 1,
            g::SYSCALL => m.goroutines_syscall += 1,
            g::WAITING => waiting[g.0.wait_reason.load(Ordering::Relaxed) as usize % WaitReason::ALL.len()] += 1,
            _ => {}
        }
        let (lo, hi) = (g.0.stack_lo.load(Ordering::Relaxed), g.0.stack_hi.load(Ordering::Relaxed));
        if hi != 0 {
            m.stacks_in_use += 1;
            m.stack_bytes_in_use += (hi - lo) as u64;
            if hi - lo == pool_size {
                pooled_in_use += 1;
            }
        }
    });
    m.goroutines_waiting = WaitReason::ALL.iter().zip(waiting).filter(|&(_, n)| n > 0).map(|(&r, n)| (r, n)).collect();
    // Ids start at 2; 1 is kept for the first goroutine `run` starts.
    m.goroutines_created =
        s.next_goid.load(Ordering::Relaxed).saturating_sub(2) + u64::from(s.main_goid_taken.load(Ordering::Relaxed));
    m.threads = s.mcount.load(Ordering::Relaxed) as u64;
    m.procs = s.allp.len() as u64;
    m.procs_idle = s.npidle.load(Ordering::Relaxed) as u64;
    m.procs_spinning = s.nmspinning.load(Ordering::Relaxed) as u64;
    m.netpoll_waiters = crate::netpoll::poller().map_or(0, |p| p.waiters() as u64);
    m.timers_pending = s.allp.iter().map(|p| p.timers.lock().len() as u64).sum();
    m.timer_oversleep_ns = crate::sched::idle::oversleep_ns();
    m.timer_spins = crate::sched::timers::spins();
    m.blocking_handoffs = crate::sysmon::SYSCALL_RETAKES.load(Ordering::Relaxed);
    m.hog_handoffs = crate::hog::retakes();
    m.hog_yields = crate::hog::yields();
    m.hog_events = crate::hog::events();
    m.stranded_takes = crate::sched::find::stranded_takes();
    m.stranded_wakes = crate::sysmon::STRANDED_WAKES.load(Ordering::Relaxed);
    m.futile_spins = u64::from(crate::sched::idle::FUTILE_SPINS.load(Ordering::Relaxed));
    m.netpoll_spins_found = crate::sched::netspin::net_spins_found();
    m.netpoll_spins_ran_out = crate::sched::netspin::net_spins_ran_out();
    let st = s.stacks.stats();
    m.stacks_cached = (st.total_stacks as u64).saturating_sub(pooled_in_use);
    m.stack_bytes_cached = m.stacks_cached * pool_size as u64;
    m.cpu_samples_lost = crate::cpuprof::lost();
    m.heap_inuse_sampled = crate::mprof::heap_inuse_sampled();
    m.sched_timing = sched_timing();
    m.sched_latency = read_latency(s.allp.iter().map(|p| &p.stats));
    m.park_durations = WaitReason::ALL
        .iter()
        .map(|&r| (r, read_park(s.allp.iter().map(|p| &p.stats), r)))
        .filter(|(_, h)| h.count() > 0)
        .collect();
    m
}
