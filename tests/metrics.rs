//! Scheduler metrics: the snapshot API (`gort::runtime::metrics`) and its OpenMetrics form at
//! `/debug/metrics`, checked against goroutines of known behaviour.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use gort::chan::chan;
use gort::profiler::http::{handle, Request};
use gort::runtime::WaitReason;

static TURN: Mutex<()> = Mutex::new(());

fn waiting(m: &gort::runtime::Metrics, r: WaitReason) -> u64 {
    m.goroutines_waiting.iter().find(|w| w.0 == r).map_or(0, |w| w.1)
}

#[test]
fn snapshot_counts_goroutines_by_state_and_times_every_transition() {
    let _t = common::take_turn(&TURN);
    gort::start().unwrap();
    gort::runtime::set_sched_timing(true);
    let before = gort::runtime::metrics();
    assert!(before.sched_timing);
    assert!(before.procs >= 1, "{before:?}");

    // 25 goroutines parked in a channel receive, 3 asleep.
    let (tx, rx) = chan::<()>(0);
    let mut hs = Vec::new();
    for _ in 0..25 {
        let rx = rx.clone();
        hs.push(common::spawn_with(gort::Builder::new(), move || {
            let _ = rx.recv();
        }));
    }
    for _ in 0..3 {
        hs.push(common::spawn_with(gort::Builder::new(), move || gort::time::sleep(Duration::from_secs(2))));
    }
    common::wait_count("chan receive", 25);
    common::wait_count("sleep", 3);
    // 2000 round trips: every one parks and readies each side once.
    let (ping_tx, ping_rx) = chan::<u32>(0);
    let (pong_tx, pong_rx) = chan::<u32>(0);
    let echo = common::spawn_with(gort::Builder::new(), move || {
        for v in ping_rx.iter() {
            pong_tx.send(v).unwrap();
        }
    })
    .unwrap();
    let pinger = common::spawn_with(gort::Builder::new(), move || {
        for i in 0..2000 {
            ping_tx.send(i).unwrap();
            assert_eq!(pong_rx.recv().unwrap(), i);
        }
    })
    .unwrap();
    pinger.join().unwrap();
    echo.join().unwrap();

    let m = gort::runtime::metrics();
    assert!(waiting(&m, WaitReason::ChanReceive) >= 25, "{:?}", m.goroutines_waiting);
    assert!(waiting(&m, WaitReason::Sleep) >= 3, "{:?}", m.goroutines_waiting);
    assert!(
        m.goroutines_created >= before.goroutines_created + 30,
        "{} -> {}",
        before.goroutines_created,
        m.goroutines_created
    );
    assert!(m.timers_pending >= 3, "{} timers", m.timers_pending);
    assert!(m.stacks_in_use >= 28 && m.stack_bytes_in_use >= 28 * 16 * 1024, "{m:?}");
    let lat = m.sched_latency.count() - before.sched_latency.count();
    assert!(lat >= 4000, "{lat} latency observations for 2000 round trips");
    assert!(m.sched_latency.sum_ns > before.sched_latency.sum_ns);
    let parks = |m: &gort::runtime::Metrics| {
        m.park_durations
            .iter()
            .filter(|p| matches!(p.0, WaitReason::ChanReceive | WaitReason::ChanSend))
            .map(|p| p.1.count())
            .sum::<u64>()
    };
    assert!(parks(&m) - parks(&before) >= 2000, "{} channel parks", parks(&m) - parks(&before));

    drop(tx);
    for h in hs {
        h.unwrap().join().unwrap();
    }
}

/// The metric lines of an OpenMetrics text: `name{labels}` -> value.
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l:?}"));
            (k.to_string(), v.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {l:?}")))
        })
        .collect()
}

#[test]
fn debug_metrics_serves_openmetrics() {
    let _t = common::take_turn(&TURN);
    gort::start().unwrap();
    gort::runtime::set_sched_timing(true);
    let (tx, rx) = chan::<()>(0);
    let mut hs = Vec::new();
    for _ in 0..7 {
        let rx = rx.clone();
        hs.push(
            common::spawn_with(gort::Builder::new(), move || {
                let _ = rx.recv();
            })
            .unwrap(),
        );
    }
    // One more completes a park.
    let (one_tx, one_rx) = chan::<()>(0);
    let one = common::spawn_with(gort::Builder::new(), move || one_rx.recv().unwrap()).unwrap();
    common::wait_count("chan receive", 8);
    one_tx.send(()).unwrap();
    one.join().unwrap();
    let r = handle(&Request::get("/debug/metrics"));
    assert_eq!(r.status, 200);
    assert!(r.header("Content-Type").unwrap().starts_with("application/openmetrics-text"));
    let text = String::from_utf8(r.body.clone()).unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE gort_sched_latency_seconds histogram"), "{text}");
    assert!(text.contains("# UNIT gort_sched_latency_seconds seconds"), "{text}");
    let m = parse(&text);
    assert!(m["gort_goroutines{state=\"chan receive\"}"] >= 7.0, "{text}");
    assert!(m["gort_goroutines_created_total"] >= 7.0, "{text}");
    assert_eq!(m["gort_sched_timing_enabled"], 1.0);
    // Present from the start (0 until an idle M's timed sleep has ended), in seconds.
    assert!((0.0..=50e-6).contains(&m["gort_timer_oversleep_seconds"]), "{text}");
    assert!(m.contains_key("gort_timer_spins_total"), "{text}");
    assert!(m.contains_key("gort_netpoll_spins_total{result=\"found\"}"), "{text}");
    assert!(m.contains_key("gort_netpoll_spins_total{result=\"ran_out\"}"), "{text}");
    // Buckets are cumulative, end at +Inf with the count.
    let count = m["gort_sched_latency_seconds_count"];
    assert!(count > 0.0, "{text}");
    let mut buckets: Vec<(f64, f64)> = m
        .iter()
        .filter_map(|(k, &v)| {
            let le = k.strip_prefix("gort_sched_latency_seconds_bucket{le=\"")?.strip_suffix("\"}")?;
            Some((if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() }, v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    assert_eq!(buckets.len(), gort::runtime::schedstats::BUCKETS);
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert_eq!(buckets.last().unwrap().1, count);
    assert!(text.contains("gort_park_duration_seconds_count{reason=\"chan receive\"}"), "{text}");
    drop(tx);
    for h in hs {
        h.join().unwrap();
    }
}
