//! Spawning and joining: `spawn`, `go!`, `Builder`, ids, goroutine enumeration, plain threads.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{go, run, Watchdog};

/// One million goroutines spawned and joined; every result arrives exactly once.
#[test]
fn spawn_join_one_million() {
    const N: u64 = 1_000_000;
    let _w = Watchdog::new("spawn_join_one_million", Duration::from_secs(240));
    let sum = run(|| {
        let hs: Vec<_> = (0..N).map(|i| go!(move || i * 3)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(sum, 3 * N * (N - 1) / 2);
}

/// Goroutines spawning goroutines: a chain 10,000 deep, each joining its child.
#[test]
fn chained_spawn() {
    fn link(n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        go!(move || link(n - 1)).join().unwrap() + 1
    }
    assert_eq!(run(|| link(10_000)), 10_000);
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// Every form of gort's own `go!` (not the tests' wrapper); `go!(f(args))` evaluates its
/// arguments at the `go!`, as Go does.
#[test]
fn go_macro_forms() {
    run(|| {
        let x = 5u64;
        // SAFETY: the goroutine computes with an integer and never blocks.
        assert_eq!(unsafe { gort::go!(move || x * 2) }.join().unwrap(), 10);
        let counter = Arc::new(AtomicUsize::new(0));
        let c = counter.clone();
        // SAFETY: the goroutine holds an `Arc` of an atomic (Send) and never blocks.
        unsafe { gort::go!(move || c.fetch_add(1, Ordering::SeqCst)) }.join().unwrap();
        assert_eq!(counter.load(Ordering::SeqCst), 1);
        // SAFETY: the goroutine returns a constant.
        assert_eq!(unsafe { gort::go!(|| 7) }.join().unwrap(), 7);

        let mut arg = 40;
        // SAFETY: `add` adds two integers and never blocks.
        let h = unsafe { gort::go!(add(arg, 2)) };
        arg += 100; // too late: the argument was evaluated at the `go!`
        assert_eq!(h.join().unwrap(), 42);
        assert_eq!(arg, 140);

        let f = move || x + 1;
        // SAFETY: `f` computes with an integer and never blocks.
        assert_eq!(unsafe { gort::go!(f) }.join().unwrap(), 6);

        // The tests' wrapper has the same forms.
        assert_eq!(go!(move || x * 3).join().unwrap(), 15);
        assert_eq!(go!(|| 8).join().unwrap(), 8);
        let h = go!(add(arg, 2));
        arg += 1;
        assert_eq!((h.join().unwrap(), arg), (142, 141));
        assert_eq!(go!(f).join().unwrap(), 6);
    });
}

/// `Builder` names the goroutine (visible while it runs) and sizes its stack.
#[test]
fn builder_name_and_stack_size() {
    run(|| {
        let h = common::spawn_with(gort::Builder::new().name("big-stack").stack_size(2 << 20), || {
            let (lo, hi) = gort::runtime::current_stack_bounds();
            let me = gort::runtime::current_id().unwrap();
            let info = gort::runtime::goroutines().into_iter().find(|g| g.id == me).unwrap();
            // A frame far bigger than the default stack fits in the requested one.
            let big = [7u8; 1 << 20];
            let s: u64 = std::hint::black_box(&big).iter().map(|&b| b as u64).sum();
            (hi - lo, info.name.map(|n| n.to_string()), s)
        })
        .unwrap();
        let (size, name, s) = h.join().unwrap();
        assert!(size >= 2 << 20, "stack is {size} bytes");
        assert_eq!(name.as_deref(), Some("big-stack"));
        assert_eq!(s, 7 << 20);
    });
}

/// Ids: monotonic, `current_id` is `None` off goroutines; the enumeration records the parent and
/// the `spawn` call site.
#[test]
fn ids_parents_and_call_sites() {
    assert_eq!(gort::runtime::current_id(), None);
    run(|| {
        let me = gort::runtime::current_id().unwrap();
        let a = go!(|| gort::runtime::current_id().unwrap());
        let b = go!(|| gort::runtime::current_id().unwrap());
        let (ida, idb) = (a.id(), b.id());
        assert!(me < ida && ida < idb, "{me} {ida} {idb}");
        assert_eq!(a.join().unwrap(), ida);
        assert_eq!(b.join().unwrap(), idb);

        let (tx, rx) = gort::chan::chan::<()>(0);
        let line = line!() + 1;
        let h = go!(move || rx.recv());
        // Wait until it blocks, then look at it from outside.
        let info = loop {
            if let Some(i) = gort::runtime::goroutines().into_iter().find(|g| g.id == h.id() && g.wait_reason.is_some())
            {
                break i;
            }
            gort::runtime::yield_now();
        };
        assert_eq!(info.parent_id, me);
        assert_eq!(info.state, "chan receive");
        let site = info.created_at.unwrap();
        assert!(site.file().ends_with("rt_spawn.rs"), "{}", site.file());
        assert_eq!(site.line(), line);
        tx.send(()).unwrap();
        assert_eq!(h.join().unwrap(), Some(()));
    });
}

/// The runtime works without `run`: a plain thread spawns, and `join` blocks the thread.
#[test]
fn spawn_and_join_from_plain_threads() {
    let ths: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let hs: Vec<_> = (0..1000u64).map(|i| go!(move || t * 1000 + i)).collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
            })
        })
        .collect();
    let total: u64 = ths.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, (0..4000u64).sum::<u64>());
}

/// `is_finished`, detaching by dropping the handle, and `num_goroutine` seeing live goroutines.
#[test]
fn detach_and_count() {
    run(|| {
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = gort::chan::chan::<()>(0);
        let before = gort::runtime::num_goroutine();
        for _ in 0..100 {
            let d = done.clone();
            let rx = rx.clone();
            drop(go!(move || {
                rx.recv();
                d.fetch_add(1, Ordering::SeqCst);
            }));
        }
        assert!(gort::runtime::num_goroutine() >= before + 100);
        let h = go!(|| ());
        drop(tx); // close: every detached goroutine wakes and finishes
        while done.load(Ordering::SeqCst) < 100 {
            gort::runtime::yield_now();
        }
        while !h.is_finished() {
            gort::runtime::yield_now();
        }
    });
}

/// `yield_now` lets the other goroutines of a single P run (run with one P in a child).
#[test]
fn yield_interleaves_on_one_p() {
    if common::in_child() {
        let order = run(|| {
            assert_eq!(gort::runtime::gomaxprocs(), 1);
            let log = Arc::new(std::sync::Mutex::new(Vec::new()));
            let hs: Vec<_> = (0..2)
                .map(|id| {
                    let log = log.clone();
                    go!(move || {
                        for _ in 0..3 {
                            log.lock().unwrap().push(id);
                            gort::runtime::yield_now();
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            let v = log.lock().unwrap().clone();
            v
        });
        // Strict alternation: each yield hands the only P to the other goroutine.
        assert!(order.windows(2).all(|w| w[0] != w[1]), "{order:?}");
        return;
    }
    common::run_child_ok("yield_interleaves_on_one_p", &[("GOMAXPROCS", "1")]);
}

/// Skynet with join handles, repeated: every goroutine joins ten children that finish on other
/// Ms at the same moment, the pattern that exposes a join whose park commit touches the parked
/// goroutine's memory after publishing it (a crash found by the benchmarks).
#[test]
fn skynet_join_storm() {
    fn skynet(num: u64, size: u64) -> u64 {
        if size == 1 {
            return num;
        }
        let sub = size / 10;
        let hs: Vec<_> = (0..10).map(|i| go!(move || skynet(num + i * sub, sub))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    }
    let _w = Watchdog::new("skynet_join_storm", Duration::from_secs(240) * common::stress() as u32);
    for _ in 0..5 * common::stress() {
        assert_eq!(run(|| skynet(0, 100_000)), 4_999_950_000);
    }
}

/// Go's bounded local run queue (`runqputslow`): when one goroutine spawns far more than a P's
/// queue holds without yielding, the older ones go to the global queue and the newest run first,
/// so fan-out trees stay narrow. At GOMAXPROCS=1 (a child process) the first goroutines to run
/// after the spawner parks are the newest ones, apart from the one global pick every 61 ticks;
/// with an unbounded FIFO they would be the oldest (0, 1, 2, ...).
#[test]
fn overflowing_spawns_run_newest_first() {
    const N: usize = 20_000;
    if !common::in_child() {
        common::run_child_ok("overflowing_spawns_run_newest_first", &[("GOMAXPROCS", "1")]);
        return;
    }
    let order = Arc::new(std::sync::Mutex::new(Vec::with_capacity(N)));
    run({
        let order = order.clone();
        move || {
            let hs: Vec<_> = (0..N)
                .map(|i| {
                    let order = order.clone();
                    go!(move || order.lock().unwrap().push(i))
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        }
    });
    let order = order.lock().unwrap();
    assert_eq!(order.len(), N);
    let first: Vec<usize> = order[..200].to_vec();
    let old = first.iter().filter(|&&i| i < N / 2).count();
    // One global pick per 61 schedules brings in an old one (~4 in 200); a FIFO would make all
    // 200 old.
    assert!(old <= 20, "{old} of the first 200 to run were from the older half: {first:?}");
}

/// Counts its drops, carries `pad` bytes (to size a task) and checks its bytes are intact.
struct Tracked<const PAD: usize> {
    drops: Arc<AtomicUsize>,
    pad: [u8; PAD],
}

impl<const PAD: usize> Tracked<PAD> {
    fn new(drops: &Arc<AtomicUsize>, fill: u8) -> Self {
        Tracked { drops: drops.clone(), pad: [fill; PAD] }
    }

    fn check(&self, fill: u8) {
        assert!(self.pad.iter().all(|&b| b == fill), "a task's bytes were overwritten while it lived");
    }
}

impl<const PAD: usize> Drop for Tracked<PAD> {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// A value aligned beyond what recycled task memory offers, so its task is allocated apart.
#[repr(align(64))]
struct Aligned(Tracked<8>);

/// Spawns `n` goroutines whose closures capture one `Tracked<PAD>` and return another, joined,
/// detached before or after they finish, or with their result never taken; from a goroutine
/// or a plain thread. Each value must be dropped exactly once, and none overwritten while it
/// lives (a task's memory is recycled as soon as its last reference goes).
fn drops_once<const PAD: usize>(n: usize) {
    let captured = Arc::new(AtomicUsize::new(0));
    let returned = Arc::new(AtomicUsize::new(0));
    let body = {
        let (captured, returned) = (captured.clone(), returned.clone());
        move || {
            let mut joined = Vec::new();
            for i in 0..n {
                let fill = i as u8;
                let c = Tracked::<PAD>::new(&captured, fill);
                let r = returned.clone();
                let h = go!(move || {
                    c.check(fill);
                    if i % 7 == 0 {
                        gort::runtime::yield_now();
                    }
                    Tracked::<PAD>::new(&r, fill.wrapping_add(1))
                });
                match i % 4 {
                    0 => drop(h),
                    1 => joined.push((h, fill)),
                    2 => {
                        while !h.is_finished() {
                            gort::runtime::yield_now();
                        }
                        drop(h); // finished, result never taken
                    }
                    _ => h.join().unwrap().check(fill.wrapping_add(1)),
                }
            }
            for (h, fill) in joined {
                h.join().unwrap().check(fill.wrapping_add(1));
            }
        }
    };
    run(body);
    // Detached goroutines may still be finishing.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while (captured.load(Ordering::SeqCst) < n || returned.load(Ordering::SeqCst) < n)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(captured.load(Ordering::SeqCst), n, "closures dropped (PAD {PAD})");
    assert_eq!(returned.load(Ordering::SeqCst), n, "results dropped (PAD {PAD})");
}

/// Task memory across its sizes: the smallest class, a middle one, the largest, and past it.
#[test]
fn task_values_drop_once_in_every_size() {
    let _w = Watchdog::new("task_values_drop_once_in_every_size", Duration::from_secs(120));
    drops_once::<1>(4000);
    drops_once::<60>(4000);
    drops_once::<400>(2000);
    drops_once::<2000>(500);
}

/// A task aligned past recycled memory's alignment, spawned and joined from goroutines and
/// from plain threads (which take task memory from the allocator, not a cache).
#[test]
fn over_aligned_tasks_and_plain_threads() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let sum = run(move || {
        let hs: Vec<_> = (0..1000u64)
            .map(|i| {
                let a = Aligned(Tracked::new(&d, i as u8));
                go!(move || {
                    assert_eq!(&a as *const Aligned as usize % 64, 0);
                    a.0.check(i as u8);
                    i % 256
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(sum, (0..1000u64).map(|i| i % 256).sum::<u64>());
    assert_eq!(drops.load(Ordering::SeqCst), 1000);
    // Plain threads spawn and join; the tasks are freed on the goroutines' threads or theirs.
    let ths: Vec<_> = (0..4)
        .map(|_| {
            let d = drops.clone();
            std::thread::spawn(move || {
                let hs: Vec<_> = (0..500usize)
                    .map(|i| {
                        let c = Tracked::<40>::new(&d, i as u8);
                        go!(move || {
                            c.check(i as u8);
                            c
                        })
                    })
                    .collect();
                for (i, h) in hs.into_iter().enumerate() {
                    h.join().unwrap().check(i as u8);
                }
            })
        })
        .collect();
    for t in ths {
        t.join().unwrap();
    }
    assert_eq!(drops.load(Ordering::SeqCst), 1000 + 2000);
}
