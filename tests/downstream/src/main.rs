//! The heap and goroutine-leak demos (examples/heap.rs, examples/leak.rs) as a user's crate
//! builds them, driven by tests/downstream.rs.
//!
//! ```text
//! gort-downstream --flags
//! gort-downstream [--addr 127.0.0.1:0] [--interval-ms 2000] [--exit-after-secs 60]
//! gort-downstream --cpu-profile PATH [--seconds 2]
//! ```
//!
//! `--flags` prints the rustflags this crate was built with and the unwinder gort chose. Otherwise
//! it serves pprof and prints, one per line: `addr IP:PORT`, `ready` once the heap demo's memory is
//! allocated and its goroutines are about to block (and one parks in `block_on`), then `leak N` after the N-th leaked goroutine.
//! It exits after `--exit-after-secs`, or as soon as stdin reaches end of file, so a test that
//! fails (and drops its end of the pipe) never leaves it running. `--cpu-profile PATH` is Go's
//! CPU demo instead: `busy_loop` on a goroutine, profiled for `--seconds` into PATH.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use gort::sync::WaitGroup;

#[global_allocator]
static A: gort::profiler::Allocator = gort::profiler::Allocator::system();

const MIB: usize = 1 << 20;

/// Counts down as each heap-demo goroutine is about to block.
static HEAP_READY: WaitGroup = WaitGroup::new();

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn num(name: &str, default: u64) -> u64 {
    arg(name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}: not a number: {v}")))
}

/// Prints `line` and flushes. Not inlined: the `StdoutLock` and whatever thread-local std reads
/// to take it stay in this frame, which never spans a blocking call (goroutines call it between
/// sleeps, and may change threads across them).
#[inline(never)]
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Go: `<-make(chan int)`; the sender is kept, so this never returns.
fn block_forever() {
    let (_tx, rx) = gort::chan::chan::<i32>(0);
    HEAP_READY.done();
    rx.recv();
}

#[inline(never)]
fn new_map_in_heap() {
    let mut m = HashMap::new();
    for i in 0..999_999 {
        m.insert(format!("KeyID{i}"), format!("value{i}"));
    }
    let m = std::hint::black_box(m);
    block_forever();
    println!("Size of gMap: {}", m.len());
}

#[inline(never)]
fn new_slice_in_heap1() {
    let s1 = std::hint::black_box(vec![0u8; 12 * MIB]);
    new_slice_in_heap2();
    println!("Size of gSlice1: {}", s1.len());
}

#[inline(never)]
fn new_slice_in_heap2() {
    let s2 = std::hint::black_box(vec![0u8; 24 * MIB]);
    block_forever();
    println!("Size of gSlice2: {}", s2.len());
}

/// A goroutine parked in `gort::block_on` on a future that stays pending (its waker is kept,
/// never woken), for the dump to show as `[future]` with this frame above `block_on`.
#[inline(never)]
fn wait_on_a_future() {
    static KEPT: std::sync::Mutex<Option<std::task::Waker>> = std::sync::Mutex::new(None);
    gort::block_on(std::future::poll_fn(|cx| {
        *KEPT.lock().unwrap() = Some(cx.waker().clone());
        std::task::Poll::<()>::Pending
    }));
}

/// Go's demo: `a := make(chan int)`; every interval `go func() { <-a }()`, forever.
#[inline(never)]
fn http_pprof_goroutine(interval: Duration) -> ! {
    let (_a_tx, a) = gort::chan::chan::<i32>(0);
    let mut leaked = 0u64;
    loop {
        gort::time::sleep(interval);
        let a = a.clone();
        // SAFETY: the leaked goroutine holds only its `Receiver` (Send) while it blocks.
        unsafe {
            gort::go!(move || {
                a.recv();
            })
        };
        leaked += 1;
        say(&format!("leak {leaked}"));
    }
}

/// Go's CPU demo: a loop the optimizer cannot delete, forever.
#[inline(never)]
fn busy_loop() {
    let mut i = 0u64;
    loop {
        i = std::hint::black_box(i.wrapping_add(1));
    }
}

fn cpu_demo(path: &str, secs: u64) {
    // SAFETY: the goroutine computes on a local and touches no thread-local.
    unsafe { gort::go!(busy_loop) };
    let f = std::fs::File::create(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    gort::profiler::start_cpu_profile(f).unwrap();
    std::thread::sleep(Duration::from_secs(secs));
    gort::profiler::stop_cpu_profile().unwrap();
    // The goroutine dump while busy_loop runs: its stack, walked by its own thread.
    let mut dump = Vec::new();
    gort::profiler::lookup("goroutine").unwrap().write_to(&mut dump, 2).unwrap();
    std::fs::write(format!("{path}.goroutines.txt"), dump).unwrap();
    // busy_loop never yields: the hog detector has seen it.
    let mut hog = Vec::new();
    gort::profiler::lookup("hog").unwrap().write_to(&mut hog, 1).unwrap();
    std::fs::write(format!("{path}.hog.txt"), hog).unwrap();
}

fn main() {
    if let Some(path) = arg("--cpu-profile") {
        return cpu_demo(&path, num("--seconds", 2));
    }
    if std::env::args().any(|a| a == "--flags") {
        println!("rustflags: {}", env!("DOWNSTREAM_RUSTFLAGS"));
        println!("unwinder: {}", gort::runtime::unwind::mode().as_str());
        return;
    }
    let addr = arg("--addr").unwrap_or_else(|| "127.0.0.1:0".into());
    let interval = Duration::from_millis(num("--interval-ms", 2000).max(1));
    let exit_after = Duration::from_secs(num("--exit-after-secs", 60));
    // Plain threads, so that they end the process even if the runtime is stuck.
    std::thread::spawn(move || {
        std::thread::sleep(exit_after);
        std::process::exit(0);
    });
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        std::process::exit(0);
    });
    let demo = move || {
        let srv = gort::profiler::serve(&addr).unwrap_or_else(|e| panic!("serve {addr}: {e}"));
        say(&format!("addr {}", srv.local_addr()));
        HEAP_READY.add(2);
        // SAFETY: the two goroutines hold a `HashMap` and `Vec`s (Send) while they block on a
        // channel receive, and reach no thread-local.
        unsafe {
            gort::go!(new_map_in_heap());
            // Its goroutine inherits the label, so the heap samples of the slices carry it.
            gort::profiler::with_labels(&[("demo", "slices")], || gort::go!(new_slice_in_heap1()));
        }
        HEAP_READY.wait();
        // SAFETY: the goroutine's one thread-bound value, the `std` guard of `KEPT`, is taken
        // and released inside a poll, with no blocking call in between.
        unsafe { gort::go!(wait_on_a_future) };
        // The async side, awaited on a goroutine: a channel receive and a goroutine's result.
        let (tx, rx) = gort::chan::chan::<u32>(0);
        // SAFETY: the goroutine holds only a channel handle (Send) and touches no thread-local.
        let h = unsafe { gort::go!(move || tx.send(7).map(|()| 35u32).unwrap()) };
        let got = gort::block_on(async { rx.recv_async().await.unwrap() + h.await.unwrap() });
        assert_eq!(got, 42, "recv_async and a JoinHandle awaited through block_on");
        say("ready");
        http_pprof_goroutine(interval);
    };
    // SAFETY: the main goroutine holds `Send` values (the server handle, a channel, `Duration`s)
    // across its waits and sleeps; its one thread-bound value, the `StdoutLock` in `say`, is taken
    // and released inside that non-inlined function, with no blocking call in between.
    unsafe { gort::run(demo) };
}
