//! The `mutex` and `block` profiles: Go's attribution of lock contention to the holders (checked
//! against the waiting the test measures itself), the block profile's delays, the proto and
//! debug=1 formats, the HTTP routes, and `go tool pprof -top` naming the holder.
//!
//! The rates are process-wide and the profiles cumulative, so the tests take turns (one lock),
//! compare a profile taken before with one taken after (`proto::delta`) and turn the rates off
//! when done.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::prof::*;
use common::{go, run, take_turn};
use gort::chan;
use gort::profiler::proto::{self, Profile};
use gort::runtime::nanotime;
use gort::sync::Mutex;

static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Goroutines queued on the lock during each critical section.
const WAITERS: usize = 4;
/// Holder A's critical section, and holder B's.
const HOLD_A: Duration = Duration::from_millis(10);
const HOLD_B: Duration = Duration::from_millis(1);

/// Waits until `n` goroutines are parked with wait reason `state`, polling every 50 us so that
/// the wait adds little to short critical sections.
fn wait_parked(state: &str, n: usize) {
    common::wait_count_every(state, n, Duration::from_micros(50));
}

/// A goroutine that waits for the lock; returns when it started waiting (`nanotime`).
#[inline(never)]
fn waiter(m: &Mutex<u64>) -> u64 {
    let t0 = nanotime();
    let mut g = m.lock();
    *g += 1;
    t0
}

/// What one critical section cost the waiters: their total wait until the holder unlocked (ns),
/// and the hold time times the number of waiters (ns).
#[derive(Default, Debug, Clone, Copy)]
struct Cost {
    waited: u64,
    hold_x_waiters: u64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        self.waited += o.waited;
        self.hold_x_waiters += o.hold_x_waiters;
    }
}

/// Starts [`WAITERS`] goroutines queuing on `m` (held by the caller), waits until all are
/// parked, then holds for `hold`. Returns them and when the hold began.
fn queue_waiters(m: &Arc<Mutex<u64>>, hold: Duration) -> (Vec<gort::JoinHandle<u64>>, u64) {
    let ws = (0..WAITERS)
        .map(|_| {
            let m = m.clone();
            go!(move || waiter(&m))
        })
        .collect();
    wait_parked("sync.Mutex.Lock", WAITERS);
    gort::time::sleep(hold);
    (ws, nanotime())
}

fn cost(ws: Vec<gort::JoinHandle<u64>>, locked: u64, unlocked: u64) -> Cost {
    let waited = ws.into_iter().map(|w| unlocked.saturating_sub(w.join().unwrap())).sum();
    Cost { waited, hold_x_waiters: (unlocked - locked) * WAITERS as u64 }
}

/// Holder A: a 10 ms critical section; its unlock is the one the profile must charge.
#[inline(never)]
fn holder_a(m: &Arc<Mutex<u64>>) -> Cost {
    let g = m.lock();
    let locked = nanotime();
    let (ws, unlocked) = queue_waiters(m, HOLD_A);
    drop(g);
    cost(ws, locked, unlocked)
}

/// Holder B: the same with a 1 ms critical section.
#[inline(never)]
fn holder_b(m: &Arc<Mutex<u64>>) -> Cost {
    let g = m.lock();
    let locked = nanotime();
    let (ws, unlocked) = queue_waiters(m, HOLD_B);
    drop(g);
    cost(ws, locked, unlocked)
}

/// `rounds` critical sections of A then B, each under [`WAITERS`] waiters; the cost of each.
fn contend(rounds: usize) -> (Cost, Cost) {
    let m = Arc::new(Mutex::new(0u64));
    let (mut a, mut b) = (Cost::default(), Cost::default());
    for _ in 0..rounds {
        a += holder_a(&m);
        b += holder_b(&m);
    }
    (a, b)
}

fn mutex_proto() -> Profile {
    gort::profiler::lookup("mutex").unwrap().to_proto()
}

fn block_proto() -> Profile {
    gort::profiler::lookup("block").unwrap().to_proto()
}

/// Sum of `value[idx]` over all samples.
fn total(p: &Profile, idx: usize) -> i64 {
    p.sample.iter().map(|s| s.value[idx]).sum()
}

fn value_types(p: &Profile) -> Vec<(String, String)> {
    p.sample_type.iter().map(|v| (p.str(v.r#type).to_string(), p.str(v.unit).to_string())).collect()
}

/// How far `got` is from `want`, relative to `want`.
fn rel_err(got: f64, want: f64) -> f64 {
    (got - want).abs() / want
}

/// Go 1.22's attribution: holder A (10 ms sections) and holder B (1 ms) each keep
/// [`WAITERS`] goroutines waiting. Each unlock is charged the time the waiters waited since the
/// previous unlock, so A gets ~10/11 of the delay and the total is the hold time times the
/// waiters. (Charging each woken waiter's whole wait to the unlocker that woke it would charge
/// the waiters' own brief sections with A's hold; charging only the woken waiter's wait since
/// the previous unlock would give a quarter of the total.)
#[test]
fn mutex_delay_is_charged_to_holders_in_proportion() {
    const ROUNDS: usize = 8;
    let _t = take_turn(&TURN);
    run(|| {
        assert_eq!(gort::profiler::set_mutex_profile_fraction(-1), 0, "off until set");
        assert_eq!(gort::profiler::set_mutex_profile_fraction(1), 0);
        let p0 = mutex_proto();
        let (a, b) = contend(ROUNDS);
        let p1 = mutex_proto();
        gort::profiler::set_mutex_profile_fraction(0);
        let d = proto::delta(&p0, &p1).unwrap();
        assert_eq!(value_types(&d), [("contentions".into(), "count".into()), ("delay".into(), "nanoseconds".into())]);
        let (pa, pb, all) = (stack_sum(&d, "holder_a", 1), stack_sum(&d, "holder_b", 1), total(&d, 1));
        let share = pa as f64 / all as f64;
        let hold = (a.hold_x_waiters + b.hold_x_waiters) as f64;
        eprintln!(
            "mutex profile: A {:.1} ms (count {}), B {:.1} ms, total {:.1} ms; A's share {share:.3} \
             (holds: {:.3}, nominal 0.909); measured waiting A {:.1} ms, B {:.1} ms; hold x waiters {:.1} ms",
            pa as f64 / 1e6,
            stack_sum(&d, "holder_a", 0),
            pb as f64 / 1e6,
            all as f64 / 1e6,
            a.hold_x_waiters as f64 / hold,
            a.waited as f64 / 1e6,
            b.waited as f64 / 1e6,
            hold / 1e6,
        );
        assert_eq!(stack_sum(&d, "holder_a", 0), ROUNDS as i64, "one contended unlock per section");
        // A's share of the hold time: 10/11 nominally; a loaded machine oversleeps B's 1 ms more
        // (relatively) than A's 10 ms, so the share is checked against the holds as they were.
        let ideal = a.hold_x_waiters as f64 / hold;
        assert!(rel_err(share, ideal) <= 0.10, "A's share {share:.3}, want {ideal:.3} (10/11 nominal) within 10%");
        assert!(rel_err(all as f64, hold) <= 0.20, "total {all} ns, want hold x waiters {hold} within 20%");
        assert!(rel_err(pa as f64, a.waited as f64) <= 0.20, "A charged {pa} ns, its waiters waited {} ns", a.waited);
    });
}

/// A receiver that blocks on `rx`; returns how long it waited (ns).
#[inline(never)]
fn blocked_receiver(rx: &chan::Receiver<u32>) -> u64 {
    let t0 = nanotime();
    let v = rx.recv();
    std::hint::black_box(v);
    nanotime() - t0
}

/// The block profile at rate 1 records every channel wait on the blocked goroutine's stack with
/// its length: receivers kept waiting ~20 ms each add up to what they measured, within 20%.
#[test]
fn block_profile_sums_channel_waits() {
    const ROUNDS: usize = 3;
    const RECEIVERS: usize = 4;
    let _t = take_turn(&TURN);
    run(|| {
        gort::profiler::set_block_profile_rate(1);
        let p0 = block_proto();
        let mut measured = 0u64;
        for _ in 0..ROUNDS {
            let (tx, rx) = chan::chan::<u32>(0);
            let hs: Vec<_> = (0..RECEIVERS)
                .map(|_| {
                    let rx = rx.clone();
                    go!(move || blocked_receiver(&rx))
                })
                .collect();
            wait_parked("chan receive", RECEIVERS);
            gort::time::sleep(Duration::from_millis(20));
            for i in 0..RECEIVERS as u32 {
                tx.send(i).unwrap();
            }
            measured += hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>();
        }
        let p1 = block_proto();
        gort::profiler::set_block_profile_rate(0);
        let d = proto::delta(&p0, &p1).unwrap();
        assert_eq!(value_types(&d), [("contentions".into(), "count".into()), ("delay".into(), "nanoseconds".into())]);
        let (count, delay) = (stack_sum(&d, "blocked_receiver", 0), stack_sum(&d, "blocked_receiver", 1));
        eprintln!(
            "block profile: {count} waits, {:.1} ms; measured {:.1} ms",
            delay as f64 / 1e6,
            measured as f64 / 1e6
        );
        assert_eq!(count, (ROUNDS * RECEIVERS) as i64);
        assert!(rel_err(delay as f64, measured as f64) <= 0.20, "profile {delay} ns, measured {measured} ns");
        // The receive is the leaf (Go's runtime.chanrecv1), the user's function under it.
        let s = d
            .sample
            .iter()
            .find(|s| {
                s.location_id.iter().any(|&l| location_names(&d, l).iter().any(|n| n.contains("blocked_receiver")))
            })
            .unwrap();
        let leaf = leaf_name(&d, s).unwrap();
        assert!(leaf.contains("recv"), "leaf {leaf}");
    });
}

/// The proto's header and Go's debug=1 texts (`--- mutex:` with the sampling period,
/// `--- contention:`), records with `@` addresses and `#` frame lines.
#[test]
fn formats() {
    let _t = take_turn(&TURN);
    run(|| {
        gort::profiler::set_mutex_profile_fraction(1);
        gort::profiler::set_block_profile_rate(1);
        contend(1);
        gort::profiler::set_mutex_profile_fraction(0);
        gort::profiler::set_block_profile_rate(0);
    });
    for name in ["mutex", "block"] {
        let p = decode_valid(&write(name, 0));
        assert_eq!(p.str(p.period_type.as_ref().unwrap().r#type), "contentions");
        assert_eq!(p.str(p.period_type.as_ref().unwrap().unit), "count");
        assert_eq!(p.period, 1);
        assert!(!p.sample.is_empty(), "{name}: no samples");
        assert!(gort::profiler::lookup(name).unwrap().count() >= 1);
    }
    assert!(gort::profiler::profiles().iter().any(|p| p.name() == "mutex"));

    gort::profiler::set_mutex_profile_fraction(5);
    let text = String::from_utf8(write("mutex", 1)).unwrap();
    gort::profiler::set_mutex_profile_fraction(0);
    assert!(text.starts_with("--- mutex:\ncycles/second=1000000000\nsampling period=5\n"), "{text}");
    check_records(&text, "holder_a");
    let text = String::from_utf8(write("block", 1)).unwrap();
    assert!(text.starts_with("--- contention:\ncycles/second=1000000000\n"), "{text}");
    check_records(&text, "waiter");
}

/// Every record of a debug=1 text: `<cycles> <count> @ 0x..`, `#\t0x..\tname+0x..\tfile:line`
/// lines, a blank line; cycles in descending order; one record names `func`.
fn check_records(text: &str, func: &str) {
    let mut last = i64::MAX;
    let mut found = false;
    let mut lines = text.lines().skip_while(|l| !l.contains(" @ ")).peekable();
    while let Some(head) = lines.next() {
        let (nums, pcs) = head.split_once(" @ ").unwrap_or_else(|| panic!("record line {head:?}\n{text}"));
        let v: Vec<i64> = nums.split(' ').map(|x| x.parse().unwrap()).collect();
        assert_eq!(v.len(), 2, "{head}");
        assert!(v[0] <= last, "not sorted by cycles:\n{text}");
        last = v[0];
        assert!(pcs.split(' ').all(|p| p.starts_with("0x")), "{head}");
        let mut frames = 0;
        for l in lines.by_ref() {
            if l.is_empty() {
                break;
            }
            let f: Vec<&str> = l.split('\t').collect();
            assert!(f.len() == 4 && f[0] == "#" && f[1].starts_with("0x") && f[2].contains("+0x"), "{l:?}");
            found |= f[2].contains(func);
            frames += 1;
        }
        assert!(frames > 0, "{head}: no frames\n{text}");
    }
    assert!(found, "no record names {func}:\n{text}");
}

/// `/debug/pprof/mutex` and `/debug/pprof/block`: proto attachments, debug=1 text, `seconds=N`
/// deltas, Go's errors, and the index lists them with Go's descriptions; then `go tool pprof
/// -top` on the served mutex profile names the holder.
#[test]
fn http_and_go_tool_pprof() {
    let _t = take_turn(&TURN);
    let srv = gort::profiler::serve("127.0.0.1:0").unwrap();
    let addr = srv.local_addr();
    run(|| {
        gort::profiler::set_mutex_profile_fraction(1);
        gort::profiler::set_block_profile_rate(1);
        contend(2);
        gort::profiler::set_mutex_profile_fraction(0);
        gort::profiler::set_block_profile_rate(0);
    });
    let html = http_get(addr, "/debug/pprof/").text();
    for (name, desc) in [
        ("mutex", "Stack traces of holders of contended mutexes"),
        ("block", "Stack traces that led to blocking on synchronization primitives"),
    ] {
        assert!(html.contains(&format!("<a href='{name}?debug=1'>{name}</a>")), "{html}");
        assert!(html.contains(&format!("{name}: </div> {desc}</li>")), "{html}");
        let r = http_get(addr, &format!("/debug/pprof/{name}"));
        assert_eq!(r.header("Content-Disposition").unwrap(), format!("attachment; filename=\"{name}\""));
        let p = decode_valid(&r.ok_body());
        assert!(total(&p, 1) > 0, "{name}: no delay");
        let r = http_get(addr, &format!("/debug/pprof/{name}?debug=1"));
        assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
        let want = if name == "mutex" { "--- mutex:\n" } else { "--- contention:\n" };
        assert!(r.text().starts_with(want), "{}", r.text());
        let r = http_get(addr, &format!("/debug/pprof/{name}?seconds=x"));
        assert_eq!(
            (r.status, r.text().as_str()),
            (400, "invalid value for \"seconds\" - must be a positive integer\n")
        );
        let r = http_get(addr, &format!("/debug/pprof/{name}?seconds=1&debug=1"));
        assert_eq!((r.status, r.text().as_str()), (400, "seconds and debug params are incompatible\n"));
    }
    // A delta over one second with contention in it.
    let h = std::thread::spawn(move || http_get(addr, "/debug/pprof/mutex?seconds=1"));
    run(|| {
        gort::profiler::set_mutex_profile_fraction(1);
        gort::time::sleep(Duration::from_millis(100));
        contend(2);
        gort::profiler::set_mutex_profile_fraction(0);
    });
    let r = h.join().unwrap();
    assert_eq!(r.header("Content-Disposition"), Some("attachment; filename=\"mutex-delta\""));
    let d = decode_valid(&r.ok_body());
    assert_eq!(stack_sum(&d, "holder_a", 0), 2, "the delta holds the two sections of A");

    if have_go() {
        let out = pprof(&["-top", &format!("http://{addr}/debug/pprof/mutex")]);
        assert!(out.contains("Type: delay"), "{out}");
        // The rows are `flat flat% sum% cum cum% name`; the holder's row has most of the delay.
        let row = out.lines().find(|l| l.ends_with("holder_a")).unwrap_or_else(|| panic!("no holder_a row:\n{out}"));
        let cum_pct: f64 = row.split_whitespace().nth(4).unwrap().trim_end_matches('%').parse().unwrap();
        assert!(cum_pct > 50.0, "holder_a has {cum_pct}% of the delay:\n{out}");
    }
    srv.close();
}
