//! `/debug/metrics`: the runtime's numbers ([`gort_runtime::metrics`]) in the OpenMetrics text
//! format, which Prometheus scrapes. Encoded by `prometheus-client`; names follow the OpenMetrics
//! conventions (`gort_` prefix, base units in the name: `_seconds`, `_bytes`; counters end in
//! `_total`).
//!
//! | metric | type | what |
//! |---|---|---|
//! | `gort_goroutines{state}` | gauge | goroutines by state: `running`, `runnable`, `syscall`, or a wait reason (`chan receive`, `IO wait`, ...) |
//! | `gort_goroutines_created_total` | counter | goroutines created since start |
//! | `gort_threads` | gauge | Ms (threads that run goroutines) |
//! | `gort_procs{state}` | gauge | Ps: `idle`, `spinning` (an M holds it looking for work), `running` (the rest) |
//! | `gort_netpoll_waiters` | gauge | goroutines parked on the network poller |
//! | `gort_timers_pending` | gauge | timers in the Ps' heaps |
//! | `gort_timer_oversleep_seconds` | gauge | how late an idle M is back from a timed sleep (moving average) |
//! | `gort_timer_spins_total` | counter | waits for a timer spun out rather than slept, being due sooner than that |
//! | `gort_blocking_handoffs_total` | counter | Ps handed off from a goroutine left in `blocking` |
//! | `gort_hog_handoffs_total` | counter | Ps taken from a goroutine that hogged one while work waited |
//! | `gort_hog_yields_total` | counter | goroutines asked to yield after running 10 ms while work waited, that did |
//! | `gort_hog_events_total` | counter | runs at or above the hog threshold (`/debug/pprof/hog`) |
//! | `gort_stranded_takes_total` | counter | goroutines taken from a P that stayed 300 µs on one goroutine while they waited |
//! | `gort_stranded_wakes_total` | counter | Ms sysmon woke for work standing behind a goroutine that did not schedule for a tick |
//! | `gort_futile_spins` | gauge | Ms woken to look for work that found none, less those that found some (0-8; from 4 hand-offs wake nobody) |
//! | `gort_netpoll_spins_total{result}` | counter | waits for the network an idle M spun out before sleeping: `found` a goroutine, or `ran_out` |
//! | `gort_stacks{state}` | gauge | goroutine stacks `in_use` and `cached` |
//! | `gort_stack_bytes{state}` | gauge | their reserved bytes |
//! | `gort_heap_inuse_sampled_bytes` | gauge | heap in use, as the sampling allocator estimates it |
//! | `gort_cpu_profile_samples_lost_total` | counter | CPU samples the buffer could not take |
//! | `gort_sched_timing_enabled` | gauge | 1 while the histograms below are recorded |
//! | `gort_sched_latency_seconds` | histogram | runnable to running, every transition |
//! | `gort_park_duration_seconds{reason}` | histogram | park to ready, every park, by wait reason |

use std::fmt::Write as _;

use gort_runtime::schedstats::{bucket_bound_ns, Histogram, BUCKETS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// The OpenMetrics content type `/debug/metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug)]
struct Runtime;

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, unit: Option<&Unit>, v: u64) -> std::fmt::Result {
    let g = ConstGauge::new(v as i64);
    g.encode(e.encode_descriptor(name, help, unit, g.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn counters(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, key: &str, vs: &[(&str, u64)]) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for &(label, v) in vs {
        let set = [(key, label)];
        ConstCounter::new(v).encode(m.encode_family(&set)?)?;
    }
    Ok(())
}

fn gauges(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    key: &str,
    vs: &[(&str, u64)],
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for &(label, v) in vs {
        let set = [(key, label)];
        ConstGauge::new(v as i64).encode(m.encode_family(&set)?)?;
    }
    Ok(())
}

/// A histogram's buckets as OpenMetrics wants them: (upper bound in seconds, count), the last
/// `+Inf` (`f64::MAX` to the encoder).
fn buckets(h: &Histogram) -> Vec<(f64, u64)> {
    (0..BUCKETS).map(|k| (bucket_bound_ns(k).map_or(f64::MAX, |ns| ns as f64 / 1e9), h.buckets[k])).collect()
}

impl Collector for Runtime {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let m = gort_runtime::metrics();
        let mut states: Vec<(&str, u64)> = vec![
            ("running", m.goroutines_running),
            ("runnable", m.goroutines_runnable),
            ("syscall", m.goroutines_syscall),
        ];
        states.extend(m.goroutines_waiting.iter().map(|&(r, n)| (r.as_str(), n)));
        gauges(
            &mut e,
            "gort_goroutines",
            "Goroutines by state (a wait reason for parked ones).",
            None,
            "state",
            &states,
        )?;
        counter(
            &mut e,
            "gort_goroutines_created",
            "Goroutines created since the runtime started.",
            m.goroutines_created,
        )?;
        gauge(&mut e, "gort_threads", "Threads that run goroutines (Ms).", None, m.threads)?;
        let running = m.procs.saturating_sub(m.procs_idle + m.procs_spinning);
        gauges(
            &mut e,
            "gort_procs",
            "Processors (GOMAXPROCS) by state.",
            None,
            "state",
            &[("idle", m.procs_idle), ("spinning", m.procs_spinning), ("running", running)],
        )?;
        gauge(&mut e, "gort_netpoll_waiters", "Goroutines parked on the network poller.", None, m.netpoll_waiters)?;
        gauge(&mut e, "gort_timers_pending", "Timers pending in the processors' heaps.", None, m.timers_pending)?;
        let oversleep = ConstGauge::new(m.timer_oversleep_ns as f64 / 1e9);
        oversleep.encode(e.encode_descriptor(
            "gort_timer_oversleep",
            "How late an idle thread is back from a timed sleep (moving average).",
            Some(&Unit::Seconds),
            oversleep.metric_type(),
        )?)?;
        counter(
            &mut e,
            "gort_timer_spins",
            "Waits for a timer spun out rather than slept, being due sooner than a sleep wakes.",
            m.timer_spins,
        )?;
        counter(
            &mut e,
            "gort_blocking_handoffs",
            "Processors handed off from a goroutine that stayed in blocking.",
            m.blocking_handoffs,
        )?;
        counter(
            &mut e,
            "gort_hog_handoffs",
            "Processors taken from a goroutine that ran too long without yielding while work waited.",
            m.hog_handoffs,
        )?;
        counter(
            &mut e,
            "gort_hog_yields",
            "Goroutines asked to yield after running too long while work waited, that yielded.",
            m.hog_yields,
        )?;
        counter(&mut e, "gort_hog_events", "Runs at or above the hog threshold.", m.hog_events)?;
        counter(
            &mut e,
            "gort_stranded_takes",
            "Goroutines taken from a processor that stayed on one goroutine while they waited.",
            m.stranded_takes,
        )?;
        counter(
            &mut e,
            "gort_stranded_wakes",
            "Threads woken for work standing behind a goroutine that did not schedule for a tick.",
            m.stranded_wakes,
        )?;
        gauge(
            &mut e,
            "gort_futile_spins",
            "Threads woken to look for work that found none, less those that found some (0-8; from 4 hand-offs wake nobody).",
            None,
            m.futile_spins,
        )?;
        counters(
            &mut e,
            "gort_netpoll_spins",
            "Waits for the network an idle thread spun out before sleeping, by result.",
            "result",
            &[("found", m.netpoll_spins_found), ("ran_out", m.netpoll_spins_ran_out)],
        )?;
        gauges(
            &mut e,
            "gort_stacks",
            "Goroutine stacks in use and cached for reuse.",
            None,
            "state",
            &[("in_use", m.stacks_in_use), ("cached", m.stacks_cached)],
        )?;
        gauges(
            &mut e,
            "gort_stack",
            "Reserved bytes of goroutine stacks in use and cached.",
            Some(&Unit::Bytes),
            "state",
            &[("in_use", m.stack_bytes_in_use), ("cached", m.stack_bytes_cached)],
        )?;
        gauge(
            &mut e,
            "gort_heap_inuse_sampled",
            "Heap in use as the sampling allocator estimates it (0 without it).",
            Some(&Unit::Bytes),
            m.heap_inuse_sampled,
        )?;
        counter(
            &mut e,
            "gort_cpu_profile_samples_lost",
            "CPU profile samples lost because the buffer was full.",
            m.cpu_samples_lost,
        )?;
        gauge(
            &mut e,
            "gort_sched_timing_enabled",
            "1 while scheduling latency and park durations are recorded (GORT_SCHEDTIMING=1).",
            None,
            u64::from(m.sched_timing),
        )?;
        let mut h = e.encode_descriptor(
            "gort_sched_latency",
            "Time goroutines spent runnable before running.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        let l = &m.sched_latency;
        h.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            l.sum_ns as f64 / 1e9,
            l.count(),
            &buckets(l),
            None,
        )?;
        let mut h = e.encode_descriptor(
            "gort_park_duration",
            "Time goroutines spent parked, by wait reason.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (r, p) in &m.park_durations {
            let set = [("reason", r.as_str())];
            h.encode_family(&set)?.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                p.sum_ns as f64 / 1e9,
                p.count(),
                &buckets(p),
                None,
            )?;
        }
        Ok(())
    }
}

/// The runtime's metrics in the OpenMetrics text format.
pub fn encode() -> String {
    let mut reg = Registry::default();
    reg.register_collector(Box::new(Runtime));
    let mut s = String::new();
    if prometheus_client::encoding::text::encode(&mut s, &reg).is_err() {
        s.clear();
        let _ = writeln!(s, "# encoding failed\n# EOF");
    }
    s
}
