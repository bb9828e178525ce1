//! `gort::block_on`: futures polled on goroutines (and plain threads), woken from anywhere.
//! Runtime-agnostic futures only here; the Tokio bridge is in `block_on_tokio.rs`, and the
//! dropped-waker deadlock in `rt_deadlock.rs` (it needs no harness threads).

mod common;

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{go, run, wait_count, wait_state};

/// Serializes the tests that count goroutines in the `future` state.
static TURN: Mutex<()> = Mutex::new(());

/// A future that is ready once its flag is set, keeping every waker it was polled with.
#[derive(Default)]
struct Flag {
    set: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
    polls: AtomicUsize,
}

impl Flag {
    fn set(&self) {
        // Release: pairs with the poll's Acquire load.
        self.set.store(true, Ordering::Release);
        let ws = self.wakers.lock().unwrap().clone();
        for w in ws {
            w.wake();
        }
    }

    fn waker(&self) -> Waker {
        self.wakers.lock().unwrap().last().expect("polled at least once").clone()
    }
}

struct WaitFlag(Arc<Flag>);

impl Future for WaitFlag {
    type Output = usize;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        let polls = self.0.polls.fetch_add(1, Ordering::Relaxed) + 1;
        self.0.wakers.lock().unwrap().push(cx.waker().clone());
        // Acquire: pairs with `set`'s Release store.
        if self.0.set.load(Ordering::Acquire) {
            Poll::Ready(polls)
        } else {
            Poll::Pending
        }
    }
}

#[test]
fn oneshot_from_another_goroutine() {
    let got = run(|| {
        let (tx, rx) = futures_channel::oneshot::channel::<u64>();
        go!(move || {
            gort::time::sleep(Duration::from_millis(5));
            tx.send(42).unwrap();
        });
        gort::block_on(rx).unwrap()
    });
    assert_eq!(got, 42);
}

/// A bounded async-channel of capacity 1 between two goroutines: both sides park in
/// `block_on` over and over, and every value arrives in order.
#[test]
fn async_channel_between_goroutines() {
    let sum = run(|| {
        let (tx, rx) = async_channel::bounded::<u64>(1);
        let producer = go!(move || {
            for i in 0..10_000u64 {
                gort::block_on(tx.send(i)).unwrap();
            }
        });
        let mut sum = 0;
        let mut next = 0;
        while let Ok(v) = gort::block_on(rx.recv()) {
            assert_eq!(v, next);
            next += 1;
            sum += v;
        }
        producer.join().unwrap();
        sum
    });
    assert_eq!(sum, (0..10_000u64).sum::<u64>());
}

/// A timer future with a thread of its own (futures-timer) wakes a goroutine.
#[test]
fn timer_future() {
    run(|| {
        let t0 = std::time::Instant::now();
        gort::block_on(futures_timer::Delay::new(Duration::from_millis(20)));
        assert!(t0.elapsed() >= Duration::from_millis(20));
    });
}

/// A goroutine blocked in `block_on` is parked as `future`, its thread free; a wake from a
/// plain thread (twice, through a clone) readies it once, and it polls again.
#[test]
fn wait_shows_as_future_and_duplicate_wakes_are_one() {
    let _t = common::take_turn(&TURN);
    let flag = Arc::new(Flag::default());
    let f = flag.clone();
    let polls = run(move || {
        let h = go!(move || gort::block_on(WaitFlag(f)));
        wait_state(h.id(), "future");
        assert_eq!(flag.polls.load(Ordering::Relaxed), 1, "polled again without a wake");
        let w = flag.waker();
        // Release: as in `Flag::set` (done by hand here, to wake twice).
        flag.set.store(true, Ordering::Release);
        let w2 = w.clone();
        std::thread::spawn(move || {
            w2.wake_by_ref();
            w2.wake();
        })
        .join()
        .unwrap();
        w.wake();
        h.join().unwrap()
    });
    // At least one wake reached the parked goroutine; the duplicates left at most a token that
    // nobody reads (the poll that saw the flag returned).
    assert_eq!(polls, 2);
}

/// Wakers kept past the end: called after `block_on` returned, after its goroutine exited, and
/// after new goroutines (which may reuse its G) parked elsewhere. They touch nothing: the new
/// goroutines stay parked until their own wake, and each is polled exactly once before it.
#[test]
fn late_wakes_touch_nothing() {
    let _t = common::take_turn(&TURN);
    run(|| {
        let mut stale = Vec::new();
        for _ in 0..50 {
            let flag = Arc::new(Flag::default());
            let f = flag.clone();
            let h = go!(move || {
                let n = gort::block_on(WaitFlag(f.clone()));
                // After `block_on` returned, still on the goroutine: a wake now is late.
                f.waker().wake();
                n
            });
            wait_state(h.id(), "future");
            flag.set();
            assert_eq!(h.join().unwrap(), 2);
            stale.push(flag.waker());
        }
        // Now park fresh goroutines (reusing the exited ones' Gs) on fresh futures, and fire
        // every stale waker at them, from this goroutine and from a plain thread.
        let fresh: Vec<Arc<Flag>> = (0..50).map(|_| Arc::new(Flag::default())).collect();
        let hs: Vec<_> = fresh
            .iter()
            .map(|f| {
                let f = f.clone();
                go!(move || gort::block_on(WaitFlag(f)))
            })
            .collect();
        for h in &hs {
            wait_state(h.id(), "future");
        }
        for w in &stale {
            w.wake_by_ref();
        }
        let more = stale.clone();
        std::thread::spawn(move || more.into_iter().for_each(Waker::wake)).join().unwrap();
        gort::time::sleep(Duration::from_millis(20));
        for (f, h) in fresh.iter().zip(&hs) {
            assert_eq!(f.polls.load(Ordering::Relaxed), 1, "a stale waker woke goroutine {}", h.id());
            assert_eq!(gort::runtime::goroutines().iter().find(|g| g.id == h.id()).unwrap().state, "future");
        }
        for f in &fresh {
            f.set();
        }
        for h in hs {
            assert_eq!(h.join().unwrap(), 2);
        }
    });
}

/// Wakes inside the poll (the future wakes itself, then says pending) and from another thread
/// while the poll runs: each makes another poll, none is lost.
#[test]
fn wakes_during_a_poll_repoll() {
    let polls = run(|| {
        let mut n = 0;
        gort::block_on(std::future::poll_fn(|cx| {
            n += 1;
            match n {
                1 => cx.waker().wake_by_ref(),
                2 => {
                    let w = cx.waker().clone();
                    std::thread::spawn(move || w.wake()).join().unwrap();
                }
                _ => return Poll::Ready(()),
            }
            Poll::Pending
        }));
        n
    });
    assert_eq!(polls, 3);
}

/// Starts `f` on a new goroutine.
fn on_goroutine(f: Box<dyn FnOnce() + Send>) {
    go!(move || f());
}

/// Starts `f` on a new plain thread.
fn on_thread(f: Box<dyn FnOnce() + Send>) {
    std::thread::spawn(f);
}

/// `block_on` of a future that another context (started by `spawn`) readies once, after waking
/// `first` (if any) and yielding; returns how many times the future was polled. The first poll
/// is always `Pending` (the other context may fire before it could look), so an undisturbed
/// call is polled exactly twice.
fn polls_until_woken(first: Option<Waker>, spawn: fn(Box<dyn FnOnce() + Send>)) -> usize {
    let fired = Arc::new(AtomicBool::new(false));
    let mut polls = 0;
    let mut first = first;
    gort::block_on(std::future::poll_fn(|cx| {
        polls += 1;
        if polls == 1 {
            let (w, f, first) = (cx.waker().clone(), fired.clone(), first.take());
            spawn(Box::new(move || {
                first.into_iter().for_each(Waker::wake);
                gort::runtime::yield_now();
                f.store(true, Ordering::Release);
                w.wake();
            }));
            return Poll::Pending;
        }
        if fired.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }));
    assert!(fired.load(Ordering::Acquire), "returned before its wake");
    polls
}

/// A call whose future keeps a clone of its waker; returns the clone.
fn call_keeping_its_waker() -> Waker {
    let kept: Arc<Mutex<Option<Waker>>> = Arc::default();
    let k = kept.clone();
    gort::block_on(std::future::poll_fn(move |cx| {
        *k.lock().unwrap() = Some(cx.waker().clone());
        Poll::Ready(())
    }));
    let w = kept.lock().unwrap().take().unwrap();
    w
}

/// Calls one after another on one goroutine reuse its state word, and what a call leaves in
/// it does not reach the next: a wake during the last poll (which returned `Ready`) makes the
/// next call poll no more often. A waker a finished call leaves behind, woken while a later
/// call of the same goroutine waits, neither makes that call return early nor costs it more
/// than one extra poll (the goroutine reuses the word even while a clone lives on).
#[test]
fn back_to_back_calls_start_clean() {
    let polls = run(|| {
        // Each round: a call that wakes itself in its final poll, then a call pending until a
        // goroutine wakes it, which must be polled exactly twice.
        for _ in 0..200 {
            gort::block_on(std::future::poll_fn(|cx| {
                cx.waker().wake_by_ref();
                Poll::Ready(())
            }));
            assert_eq!(polls_until_woken(None, on_goroutine), 2, "a wake left by the previous call reached this one");
        }
        // A call that leaves a clone of its waker behind, then calls that wait while that stale
        // waker fires: each still returns only once its own event came.
        let stale = call_keeping_its_waker();
        (0..50).map(|_| polls_until_woken(Some(stale.clone()), on_goroutine)).collect::<Vec<_>>()
    });
    assert!(polls.iter().all(|&n| n == 2 || n == 3), "{polls:?}");
}

/// On a plain thread a word whose waker outlived its call is not reused: that stale waker,
/// woken while later calls wait, makes them poll no more often.
#[test]
fn a_plain_threads_shared_word_is_not_reused() {
    let stale = call_keeping_its_waker();
    for _ in 0..50 {
        assert_eq!(polls_until_woken(Some(stale.clone()), on_thread), 2, "a stale waker reached a later call");
    }
    assert!(!call_keeping_its_waker().will_wake(&stale), "a shared word was reused");
}

/// What `a_goroutines_calls_reuse_its_word`'s future waits for: the last round answered, and
/// the waker of its last poll (which `AtomicWaker` keeps until it wakes it).
#[derive(Default)]
struct Answer {
    round: AtomicUsize,
    waker: atomic_waker::AtomicWaker,
}

impl Answer {
    fn answer(&self, round: usize) {
        // Release: pairs with the poll's Acquire load.
        self.round.store(round, Ordering::Release);
        self.waker.wake();
    }
}

/// One goroutine's calls, each on a future that keeps its waker (`AtomicWaker`), answered in
/// turn by a goroutine and a plain thread while another plain thread keeps waking a stale
/// waker of the goroutine's first call: every call returns (no wake is lost to the reset of
/// the word between calls), with its own round's answer, and every call polls with the word
/// of the first (a goroutine keeps its word even while clones of its waker live on).
#[test]
fn a_goroutines_calls_reuse_its_word() {
    const ROUNDS: usize = 2_000;
    let _w = common::Watchdog::new("a_goroutines_calls_reuse_its_word", common::PATIENCE);
    let ans = Arc::new(Answer::default());
    let (to_thread, thread_rx) = std::sync::mpsc::channel::<usize>();
    let a = ans.clone();
    let answerer = std::thread::spawn(move || thread_rx.into_iter().for_each(|r| a.answer(r)));
    let shared = run(move || {
        let (to_goroutine, goroutine_rx) = gort::chan::chan::<usize>(1);
        let a = ans.clone();
        let answerer_g = go!(move || goroutine_rx.into_iter().for_each(|r| a.answer(r)));
        let mut first: Option<Waker> = None;
        let done = Arc::new(AtomicBool::new(false));
        let mut stray = None;
        let mut shared = 0;
        for round in 1..=ROUNDS {
            if round % 2 == 0 {
                to_goroutine.send(round).unwrap();
            } else {
                to_thread.send(round).unwrap();
            }
            let got = gort::block_on(std::future::poll_fn(|cx| {
                match &first {
                    None => first = Some(cx.waker().clone()),
                    Some(w) => shared += usize::from(cx.waker().will_wake(w)),
                }
                ans.waker.register(cx.waker());
                // Acquire: pairs with `answer`'s Release store.
                match ans.round.load(Ordering::Acquire) {
                    r if r >= round => Poll::Ready(r),
                    _ => Poll::Pending,
                }
            }));
            assert_eq!(got, round, "returned before its answer");
            if stray.is_none() {
                let (stale, done) = (first.clone().unwrap(), done.clone());
                stray = Some(std::thread::spawn(move || {
                    // Acquire: pairs with the Release store below (nothing to see; just stop).
                    while !done.load(Ordering::Acquire) {
                        stale.wake_by_ref();
                        std::thread::yield_now();
                    }
                }));
            }
        }
        // Release: see the stray thread.
        done.store(true, Ordering::Release);
        stray.unwrap().join().unwrap();
        drop(to_goroutine);
        answerer_g.join().unwrap();
        drop(to_thread);
        shared
    });
    answerer.join().unwrap();
    // Each call after the first polled at least once with the first call's word.
    assert!(shared >= ROUNDS - 1, "{shared} polls reused the word in {ROUNDS} calls");
}

/// A goroutine's spare word dies with it: a goroutine that reuses an exited goroutine's G gets
/// a word of its own, even while a waker of the exited one's word lives on (and so a late wake
/// of that waker cannot reach it). Many goroutines in turn, each keeping a waker of its call.
#[test]
fn a_new_goroutine_does_not_inherit_a_word() {
    run(|| {
        let mut kept: Vec<Waker> = Vec::new();
        for _ in 0..200 {
            let exited = Arc::new(kept.clone());
            let h = go!(move || {
                let w = call_keeping_its_waker();
                assert!(call_keeping_its_waker().will_wake(&w), "a goroutine's second call took a new word");
                let inherited = exited.iter().filter(|k| w.will_wake(k)).count();
                (w, inherited)
            });
            let (w, inherited) = h.join().unwrap();
            assert_eq!(inherited, 0, "a new goroutine polled with an exited goroutine's word");
            kept.push(w);
        }
    });
}

/// A panic in a poll is the goroutine's panic: `join` returns it, the runtime carries on, and
/// the waker the future left behind is harmless.
#[test]
fn a_panicking_future_panics_its_goroutine() {
    run(|| {
        let kept: Arc<Mutex<Option<Waker>>> = Arc::default();
        let k = kept.clone();
        let h = go!(move || {
            let mut polls = 0;
            gort::block_on(std::future::poll_fn(move |cx| {
                polls += 1;
                if polls == 1 {
                    *k.lock().unwrap() = Some(cx.waker().clone());
                    cx.waker().wake_by_ref();
                    return Poll::<()>::Pending;
                }
                panic!("the future gives up on poll {polls}");
            }))
        });
        let err: Box<dyn std::any::Any + Send> = h.join().unwrap_err();
        assert_eq!(err.downcast_ref::<String>().unwrap(), "the future gives up on poll 2");
        kept.lock().unwrap().take().unwrap().wake();
        assert_eq!(go!(|| gort::block_on(async { 5 })).join().unwrap(), 5);
    });
}

/// 10k goroutines parked in `block_on` at once, all woken from a plain thread: all finish.
#[test]
fn ten_thousand_parked_then_woken_from_a_thread() {
    let _t = common::take_turn(&TURN);
    const N: u64 = 10_000;
    let sum = run(|| {
        let mut txs = Vec::new();
        let hs: Vec<_> = (0..N)
            .map(|i| {
                let (tx, rx) = futures_channel::oneshot::channel::<u64>();
                txs.push(tx);
                go!(move || gort::block_on(rx).unwrap() + i)
            })
            .collect();
        wait_count("future", N as usize);
        std::thread::spawn(move || {
            for tx in txs {
                tx.send(1).unwrap();
            }
        })
        .join()
        .unwrap();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(sum, N + N * (N - 1) / 2);
}

/// On a plain thread `block_on` blocks the thread (no runtime needed for it), woken from
/// another thread.
#[test]
fn block_on_a_plain_thread() {
    let (tx, rx) = futures_channel::oneshot::channel::<&str>();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(10));
        tx.send("from a thread").unwrap();
    });
    assert_eq!(gort::block_on(rx), Ok("from a thread"));
    t.join().unwrap();
    // And a future that is ready at once returns at once.
    assert_eq!(gort::block_on(async { 3 }), 3);
}

/// The wait this parks on, named so the dump can be checked for the user's frame.
#[inline(never)]
fn user_waits_on_a_future(rx: futures_channel::oneshot::Receiver<u32>) -> u32 {
    let v = gort::block_on(rx).unwrap_or(0);
    black_box(v)
}

/// A goroutine parked in `block_on` shows in the goroutine debug=2 dump as `[future]` with the
/// `block_on` frame and the user's frames above it, and in the goroutine profile.
#[test]
fn dump_shows_block_on_and_the_callers_frames() {
    let _t = common::take_turn(&TURN);
    let (text, id, proto_has) = run(|| {
        let (tx, rx) = futures_channel::oneshot::channel::<u32>();
        let h = go!(move || user_waits_on_a_future(rx));
        wait_state(h.id(), "future");
        let text = String::from_utf8(common::prof::write("goroutine", 2)).unwrap();
        let p = common::prof::decode_valid(&common::prof::write("goroutine", 0));
        let proto_has = p.sample.iter().any(|s| {
            let names: Vec<&str> = s.location_id.iter().flat_map(|&id| common::prof::location_names(&p, id)).collect();
            names.iter().any(|n| n.contains("user_waits_on_a_future")) && names.iter().any(|n| n.contains("block_on"))
        });
        tx.send(1).unwrap();
        let id = h.id();
        assert_eq!(h.join().unwrap(), 1);
        (text, id, proto_has)
    });
    let block = text.split("\n\n").find(|b| b.starts_with(&format!("goroutine {id} "))).expect("the goroutine");
    assert!(block.lines().next().unwrap().ends_with(" [future]:"), "{block}");
    let block_on = block.find("block_on").unwrap_or_else(|| panic!("no block_on frame:\n{block}"));
    let user = block.find("user_waits_on_a_future").unwrap_or_else(|| panic!("no caller frame:\n{block}"));
    assert!(block_on < user, "block_on is below (printed before) its caller:\n{block}");
    assert!(proto_has, "the goroutine profile has no sample through block_on and its caller");
}

/// Spins for `iters` rounds of arithmetic the optimizer cannot remove.
#[inline(never)]
fn spin_in_a_poll(iters: u64) -> u64 {
    let mut x = 1u64;
    for i in 0..iters {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    x
}

/// CPU samples taken inside a poll carry the goroutine's labels: the poll runs on it.
#[test]
fn cpu_samples_in_polls_carry_labels() {
    let p = common::prof::cpu_profile(500, || {
        run(|| {
            gort::profiler::with_labels(&[("bridge", "poll")], || {
                gort::block_on(async {
                    // Park once between spins, so the second spin is in a later poll.
                    futures_timer::Delay::new(Duration::from_millis(1)).await;
                    spin_in_a_poll(60_000_000)
                })
            })
        });
    });
    let mut labelled = 0;
    for s in &p.sample {
        let names: Vec<&str> = s.location_id.iter().flat_map(|&id| common::prof::location_names(&p, id)).collect();
        if names.iter().any(|n| n.contains("spin_in_a_poll")) {
            let labels: Vec<String> = s.label.iter().map(|l| format!("{}={}", p.str(l.key), p.str(l.str))).collect();
            assert_eq!(labels, ["bridge=poll"], "{names:?}");
            labelled += s.value[0];
        }
    }
    assert!(labelled > 5, "too few samples in the poll: {labelled}");
}
