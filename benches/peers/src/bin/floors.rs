//! The physical floors under gort's benchmark workloads, measured on this machine without any
//! runtime: a bare coroutine switch, futex waits and wakes, atomics with and without contention,
//! syscalls, clocks, a page's first touch, thread context switches, and the kernel's sleep
//! overshoot. benches/README.md ("Floors") lists which workload each bounds and what it assumes.
//!
//! ```text
//! cd benches/peers && cargo run --release --bin floors            # every floor
//! cargo run --release --bin floors -- coro_switch futex_wake      # some
//! ```
//!
//! Each floor is measured `ROUNDS` times in this process; the line printed is the median round,
//! as `<floor> <unit>=<value>` (benches/compare.sh's format), the minimum on a `#` line after it.
//! Two-thread floors pin their threads with `sched_setaffinity` where the name says so
//! (`_same_cpu`: both on CPU 0, every handoff a context switch; `_cross_cpu`: CPU 0 and 1).

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corosensei::{Coroutine, CoroutineResult};

const ROUNDS: usize = 5;

type Floor = (&'static str, &'static str, fn() -> f64);

const FLOORS: &[Floor] = &[
    ("coro_switch", "ns per resume+yield pair (2 stack switches)", coro_switch),
    ("cas_uncontended", "ns per lock cmpxchg, one thread", cas_uncontended),
    ("cas_contended", "ns per successful CAS increment, 2 threads on one word (cross CPU)", cas_contended),
    ("cas_handoff", "ns per handoff of one word between 2 spinning threads (one line transfer + CAS)", cas_handoff),
    ("rdtsc", "ns per rdtsc", rdtsc),
    ("clock_monotonic", "ns per clock_gettime(CLOCK_MONOTONIC) (vDSO)", clock_monotonic),
    ("syscall_getppid", "ns per getppid (a bare syscall round trip)", syscall_getppid),
    ("eventfd_write", "ns per 8-byte write to an eventfd nobody waits on", eventfd_write),
    ("epoll_wait_0", "ns per epoll_wait(timeout 0) on an empty epoll set", epoll_wait_0),
    ("futex_wake_nowaiter", "ns per FUTEX_WAKE with no waiter", futex_wake_nowaiter),
    ("futex_wake_waiter", "ns per FUTEX_WAKE that wakes a sleeping thread (the waker's cost)", futex_wake_waiter),
    ("futex_wake_latency", "ns from FUTEX_WAKE to the sleeping thread running (other CPU)", futex_wake_latency),
    ("page_first_touch", "ns per first write to a fresh 4 KiB anonymous page (fault + zeroing)", page_first_touch),
    ("page_first_touch_bytes", "RSS bytes per touched page", page_first_touch_bytes),
    ("pipe_pingpong_same_cpu", "ns per one-way handoff (= one thread context switch), pipe, same CPU", pipe_same),
    ("pipe_pingpong_cross_cpu", "ns per one-way handoff, pipe, threads on 2 CPUs", pipe_cross),
    ("futex_pingpong_same_cpu", "ns per one-way handoff, futex, same CPU", futex_same),
    ("futex_pingpong_cross_cpu", "ns per one-way handoff, futex, threads on 2 CPUs", futex_cross),
    (
        "unix_rtt_syscalls",
        "ns per 64-byte write+read each way on a socketpair, one thread, never blocks",
        unix_syscalls,
    ),
    ("nanosleep_100us_late_p50", "ns a thread's 100 us sleep overshoots, median", sleep_late_p50),
    ("nanosleep_100us_late_p99", "ns a thread's 100 us sleep overshoots, p99", sleep_late_p99),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    for a in &args {
        if !FLOORS.iter().any(|f| f.0 == a) {
            let names: Vec<_> = FLOORS.iter().map(|f| f.0).collect();
            eprintln!("usage: floors [FLOOR...]\nfloors: {}", names.join(" "));
            std::process::exit(2);
        }
    }
    for &(name, what, f) in FLOORS {
        if !args.is_empty() && !args.iter().any(|a| a == name) {
            continue;
        }
        let mut v: Vec<f64> = (0..ROUNDS).map(|_| f()).collect();
        v.sort_by(f64::total_cmp);
        let unit = if name.ends_with("_bytes") { "bytes" } else { "ns" };
        println!("{name} {unit}={:.1}", v[ROUNDS / 2]);
        println!("#   {what}; min {:.1}", v[0]);
    }
}

fn per(d: Duration, n: u64) -> f64 {
    d.as_nanos() as f64 / n as f64
}

/// Pins the calling thread to `cpu`, or returns false if the machine does not have it.
fn pin(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it (cpu is below
    // CPU_SETSIZE, checked), and sched_setaffinity reads `size_of` bytes of it.
    unsafe {
        if cpu >= libc::CPU_SETSIZE as usize {
            return false;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// CPUs online (not `available_parallelism`, which reads the caller's affinity mask: after a
/// `pin` it says 1).
fn cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize
}

fn two_cpus() -> bool {
    cpus() >= 2
}

fn coro_switch() -> f64 {
    const N: u64 = 1_000_000;
    let mut co: Coroutine<bool, (), ()> = Coroutine::new(|y, mut stop: bool| {
        while !stop {
            stop = y.suspend(());
        }
    });
    co.resume(false);
    let t = Instant::now();
    for _ in 0..N {
        assert!(matches!(co.resume(black_box(false)), CoroutineResult::Yield(())));
    }
    let d = t.elapsed();
    assert!(matches!(co.resume(true), CoroutineResult::Return(())));
    per(d, N)
}

fn cas_uncontended() -> f64 {
    const N: u64 = 10_000_000;
    let a = black_box(AtomicU64::new(0));
    let t = Instant::now();
    for i in 0..N {
        let _ = a.compare_exchange(i, i + 1, Ordering::AcqRel, Ordering::Relaxed);
    }
    let d = t.elapsed();
    assert_eq!(a.load(Ordering::Relaxed), N);
    per(d, N)
}

fn cas_contended() -> f64 {
    const PER: u64 = 1_000_000;
    let a = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let hs: Vec<_> = (0..2)
        .map(|cpu| {
            let a = a.clone();
            std::thread::spawn(move || {
                pin(cpu);
                for _ in 0..PER {
                    let mut v = a.load(Ordering::Relaxed);
                    while let Err(now) = a.compare_exchange_weak(v, v + 1, Ordering::AcqRel, Ordering::Relaxed) {
                        v = now;
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let d = t.elapsed();
    assert_eq!(a.load(Ordering::Relaxed), 2 * PER);
    per(d, 2 * PER)
}

/// Spins until `cond`, yielding the CPU now and then (on a shared box the other vCPU may be
/// taken away; without the yield a handoff could wait a whole time slice for nothing).
fn spin_until(mut cond: impl FnMut() -> bool) {
    let mut i = 0u32;
    while !cond() {
        i += 1;
        if i.is_multiple_of(4096) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

fn cas_handoff() -> f64 {
    const N: u64 = 200_000; // handoffs
    let a = Arc::new(AtomicU64::new(0));
    let b = {
        let a = a.clone();
        std::thread::spawn(move || {
            pin(1);
            for k in 0..N / 2 {
                let odd = 2 * k + 1;
                spin_until(|| a.compare_exchange(odd, odd + 1, Ordering::AcqRel, Ordering::Relaxed).is_ok());
            }
        })
    };
    pin(0);
    let t = Instant::now();
    for k in 0..N / 2 {
        let even = 2 * k;
        spin_until(|| a.compare_exchange(even, even + 1, Ordering::AcqRel, Ordering::Relaxed).is_ok());
    }
    spin_until(|| a.load(Ordering::Acquire) == N);
    let d = t.elapsed();
    b.join().unwrap();
    unpin();
    per(d, N)
}

fn unpin() {
    // SAFETY: as in `pin`: a zeroed set, CPU_SET within it, sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..cpus().min(libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn rdtsc() -> f64 {
    const N: u64 = 10_000_000;
    let t = Instant::now();
    let mut x = 0u64;
    for _ in 0..N {
        // SAFETY: rdtsc has no preconditions on x86_64 (user mode may read the TSC on Linux).
        x = x.wrapping_add(unsafe { core::arch::x86_64::_rdtsc() });
    }
    black_box(x);
    per(t.elapsed(), N)
}

fn clock_monotonic() -> f64 {
    const N: u64 = 5_000_000;
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let t = Instant::now();
    for _ in 0..N {
        // SAFETY: `ts` is a valid timespec to write.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        black_box(&ts);
    }
    per(t.elapsed(), N)
}

fn syscall_getppid() -> f64 {
    const N: u64 = 1_000_000;
    let t = Instant::now();
    for _ in 0..N {
        // SAFETY: getppid takes no arguments and cannot fail.
        black_box(unsafe { libc::syscall(libc::SYS_getppid) });
    }
    per(t.elapsed(), N)
}

fn eventfd_write() -> f64 {
    const N: u64 = 1_000_000;
    // SAFETY: eventfd with valid flags; the fd is closed below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    assert!(fd >= 0);
    let one = 1u64;
    let t = Instant::now();
    for _ in 0..N {
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        let r = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
        debug_assert_eq!(r, 8);
    }
    let d = t.elapsed();
    // SAFETY: our own fd, closed once.
    unsafe { libc::close(fd) };
    per(d, N)
}

fn epoll_wait_0() -> f64 {
    const N: u64 = 1_000_000;
    // SAFETY: epoll_create1 with a valid flag; closed below.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0);
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 16];
    let t = Instant::now();
    for _ in 0..N {
        // SAFETY: `evs` has room for the 16 events we allow.
        black_box(unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), 16, 0) });
    }
    let d = t.elapsed();
    // SAFETY: our own fd, closed once.
    unsafe { libc::close(ep) };
    per(d, N)
}

fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT_PRIVATE reads the live, aligned u32 behind `word`; no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        )
    };
}

fn futex_wake(word: &AtomicU32) -> i64 {
    // SAFETY: FUTEX_WAKE_PRIVATE on the address of a live u32; wakes at most one waiter.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1) }
}

fn futex_wake_nowaiter() -> f64 {
    const N: u64 = 1_000_000;
    let w = AtomicU32::new(0);
    let t = Instant::now();
    for _ in 0..N {
        black_box(futex_wake(&w));
    }
    per(t.elapsed(), N)
}

/// A thread sleeps in FUTEX_WAIT; the main thread, after giving it 200 us to get there, stamps
/// the time, sets the word and wakes it. Returns the median waker cost and the median latency
/// from the stamp to the woken thread's first clock read.
fn futex_wake_pair() -> (f64, f64) {
    const K: usize = 1000;
    let base = Instant::now();
    let word = Arc::new(AtomicU32::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let ack = Arc::new(AtomicU32::new(0));
    let sleeper = {
        let (word, sent, ack) = (word.clone(), sent.clone(), ack.clone());
        std::thread::spawn(move || {
            pin(1);
            let mut lat = Vec::with_capacity(K);
            for _ in 0..K {
                while word.load(Ordering::Acquire) == 0 {
                    futex_wait(&word, 0);
                }
                let now = base.elapsed().as_nanos() as u64;
                lat.push((now - sent.load(Ordering::Relaxed)) as f64);
                word.store(0, Ordering::Relaxed);
                ack.store(1, Ordering::Release);
            }
            lat
        })
    };
    pin(0);
    let mut cost = Vec::with_capacity(K);
    for _ in 0..K {
        std::thread::sleep(Duration::from_micros(200));
        sent.store(base.elapsed().as_nanos() as u64, Ordering::Relaxed);
        word.store(1, Ordering::Release);
        let t = Instant::now();
        futex_wake(&word);
        cost.push(t.elapsed().as_nanos() as f64);
        spin_until(|| ack.load(Ordering::Acquire) == 1);
        ack.store(0, Ordering::Relaxed);
    }
    unpin();
    let mut lat = sleeper.join().unwrap();
    (median(&mut cost), median(&mut lat))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn futex_wake_waiter() -> f64 {
    futex_wake_pair().0
}

fn futex_wake_latency() -> f64 {
    futex_wake_pair().1
}

/// Touches one byte in each of `PAGES` fresh anonymous 4 KiB pages (huge pages refused with
/// MADV_NOHUGEPAGE). Returns (ns per page, RSS bytes added per page).
fn first_touch() -> (f64, f64) {
    const PAGES: usize = 16_384; // 64 MiB
    let len = PAGES * 4096;
    // SAFETY: a fresh private anonymous mapping of `len` bytes, written only inside it, unmapped
    // once at the end.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        libc::madvise(p, len, libc::MADV_NOHUGEPAGE);
        let before = rss_bytes();
        let base = p.cast::<u8>();
        let t = Instant::now();
        for i in 0..PAGES {
            base.add(i * 4096).write_volatile(1);
        }
        let d = t.elapsed();
        let after = rss_bytes();
        libc::munmap(p, len);
        (per(d, PAGES as u64), (after - before) / PAGES as f64)
    }
}

fn rss_bytes() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("statm rss");
    pages * 4096.0
}

fn page_first_touch() -> f64 {
    first_touch().0
}

fn page_first_touch_bytes() -> f64 {
    first_touch().1
}

/// Two threads bounce a byte through two pipes (`cpus`: where each is pinned). Returns ns per
/// one-way handoff (half a round trip).
fn pipe_pingpong(cpus: (usize, usize)) -> f64 {
    const N: u64 = 20_000; // round trips
    let mut ab = [0i32; 2];
    let mut ba = [0i32; 2];
    // SAFETY: pipe writes two fds into each array.
    unsafe {
        assert_eq!(libc::pipe(ab.as_mut_ptr()), 0);
        assert_eq!(libc::pipe(ba.as_mut_ptr()), 0);
    }
    let (ab_r, ba_w) = (ab[0], ba[1]);
    let echo = std::thread::spawn(move || {
        pin(cpus.1);
        let mut b = 0u8;
        for _ in 0..N {
            // SAFETY: one-byte reads and writes through our own pipe fds into a live byte.
            unsafe {
                assert_eq!(libc::read(ab_r, (&mut b as *mut u8).cast(), 1), 1);
                assert_eq!(libc::write(ba_w, (&b as *const u8).cast(), 1), 1);
            }
        }
    });
    pin(cpus.0);
    let mut b = 0u8;
    let t = Instant::now();
    for _ in 0..N {
        // SAFETY: as above.
        unsafe {
            assert_eq!(libc::write(ab[1], (&b as *const u8).cast(), 1), 1);
            assert_eq!(libc::read(ba[0], (&mut b as *mut u8).cast(), 1), 1);
        }
    }
    let d = t.elapsed();
    echo.join().unwrap();
    unpin();
    for fd in ab.into_iter().chain(ba) {
        // SAFETY: our own fds, each closed once.
        unsafe { libc::close(fd) };
    }
    per(d, 2 * N)
}

fn pipe_same() -> f64 {
    pipe_pingpong((0, 0))
}

fn pipe_cross() -> f64 {
    if two_cpus() {
        pipe_pingpong((0, 1))
    } else {
        f64::NAN
    }
}

/// Two threads hand a turn back and forth through one futex word (0: main's turn, 1: the
/// other's); each sleeps in FUTEX_WAIT until its turn. Returns ns per one-way handoff.
fn futex_pingpong(cpus: (usize, usize)) -> f64 {
    const N: u64 = 20_000; // round trips
    let word = Arc::new(AtomicU32::new(0));
    let wait_for = |word: &AtomicU32, mine: u32| loop {
        let v = word.load(Ordering::Acquire);
        if v == mine {
            return;
        }
        futex_wait(word, v);
    };
    let other = {
        let word = word.clone();
        std::thread::spawn(move || {
            pin(cpus.1);
            for _ in 0..N {
                wait_for(&word, 1);
                word.store(0, Ordering::Release);
                futex_wake(&word);
            }
        })
    };
    pin(cpus.0);
    let t = Instant::now();
    for _ in 0..N {
        word.store(1, Ordering::Release);
        futex_wake(&word);
        wait_for(&word, 0);
    }
    let d = t.elapsed();
    other.join().unwrap();
    unpin();
    per(d, 2 * N)
}

fn futex_same() -> f64 {
    futex_pingpong((0, 0))
}

fn futex_cross() -> f64 {
    if two_cpus() {
        futex_pingpong((0, 1))
    } else {
        f64::NAN
    }
}

fn unix_syscalls() -> f64 {
    const N: u64 = 200_000;
    let mut fds = [0i32; 2];
    // SAFETY: socketpair writes two fds into `fds`.
    assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) }, 0);
    let mut buf = [0u8; 64];
    let t = Instant::now();
    for _ in 0..N {
        // SAFETY: 64-byte writes and reads between our own connected sockets and a live buffer;
        // each write is read back before the next, so nothing blocks.
        unsafe {
            assert_eq!(libc::write(fds[0], buf.as_ptr().cast(), 64), 64);
            assert_eq!(libc::read(fds[1], buf.as_mut_ptr().cast(), 64), 64);
            assert_eq!(libc::write(fds[1], buf.as_ptr().cast(), 64), 64);
            assert_eq!(libc::read(fds[0], buf.as_mut_ptr().cast(), 64), 64);
        }
    }
    let d = t.elapsed();
    for fd in fds {
        // SAFETY: our own fds, each closed once.
        unsafe { libc::close(fd) };
    }
    per(d, N)
}

fn sleep_late() -> (f64, f64) {
    const K: usize = 500;
    let mut late: Vec<f64> = (0..K)
        .map(|_| {
            let t = Instant::now();
            std::thread::sleep(Duration::from_micros(100));
            (t.elapsed().as_nanos() as f64) - 100_000.0
        })
        .collect();
    late.sort_by(f64::total_cmp);
    (late[K / 2], late[K * 99 / 100])
}

fn sleep_late_p50() -> f64 {
    sleep_late().0
}

fn sleep_late_p99() -> f64 {
    sleep_late().1
}
