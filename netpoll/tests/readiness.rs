//! Readiness: events ready the right waiter once, READY short-circuits, wake, close, errors.

mod common;

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;
use gort_netpoll::{Mode, PollError, Poller};

#[test]
fn event_readies_the_registered_waiter_exactly_once() {
    let poller = Poller::new().unwrap();
    let (a, mut b) = pair();
    let (c, _d) = pair();
    let reg = poller.register(a.as_raw_fd()).unwrap();
    let other = poller.register(c.as_raw_fd()).unwrap();
    thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        let (reg, a) = (&reg, &a);
        let reader = s.spawn(move || {
            let me = Parker::current();
            tx.send(me.token()).unwrap();
            let mut buf = [0u8; 8];
            let n = read_blocking(reg, a, &mut buf, &me).unwrap();
            (buf[..n].to_vec(), me.commits.load(Ordering::Relaxed))
        });
        let other_reader = s.spawn(|| {
            let me = Parker::current();
            read_blocking(&other, &c, &mut [0u8; 8], &me)
        });
        let token = rx.recv().unwrap();
        wait_until("both readers parked", || poller.waiters() == 2);

        // The registration events (writable) wake nobody.
        let mut toks = Vec::new();
        poller.poll(Some(Duration::ZERO), &mut toks).unwrap();
        assert!(toks.is_empty());

        b.write_all(b"hi").unwrap();
        wait_until("the read event", || {
            poller.poll(Some(Duration::from_millis(100)), &mut toks).unwrap();
            !toks.is_empty()
        });
        assert_eq!(toks, vec![token], "only the reader of the written socket");
        ready(toks.pop().unwrap());
        let (got, commits) = reader.join().unwrap();
        assert_eq!(got, b"hi");
        assert_eq!(commits, 1);

        // No second wakeup for the same event, nor for the other reader.
        poller.poll(Some(Duration::from_millis(20)), &mut toks).unwrap();
        assert!(toks.is_empty());
        assert_eq!(poller.waiters(), 1);

        ready_all(other.close());
        let e = other_reader.join().unwrap().unwrap_err();
        assert_eq!(PollError::of(&e), Some(PollError::Closed));
    });
    assert_eq!(poller.waiters(), 0);
}

#[test]
fn readiness_before_wait_short_circuits() {
    let poller = Poller::new().unwrap();
    let (a, mut b) = pair();
    let reg = poller.register(a.as_raw_fd()).unwrap();
    b.write_all(b"x").unwrap();
    // The event arrives with nobody waiting: it leaves READY in both slots.
    let mut toks = Vec::new();
    poller.poll(Some(Duration::from_secs(5)), &mut toks).unwrap();
    assert!(toks.is_empty());
    reg.wait(Mode::Read, |_| panic!("parked although READY")).unwrap();
    reg.wait(Mode::Write, |_| panic!("parked although READY")).unwrap();
    // The notification was consumed: the next wait announces a park (refused here by
    // dropping the commit, which must leave the slot usable).
    let mut parks = 0;
    let mut b2 = [0u8; 1];
    assert_eq!((&a).read(&mut b2).unwrap(), 1);
    reg.prepare(Mode::Read).unwrap();
    // A notification that arrives between the announcement (WAIT) and the commit makes the
    // commit fail, and the wait succeed without sleeping.
    b.write_all(b"y").unwrap();
    reg.wait(Mode::Read, |c| {
        parks += 1;
        poller.poll(Some(Duration::from_secs(5)), &mut toks).unwrap();
        assert!(!c.commit(gort_netpoll::Token::new(0x1000)), "commit accepted after READY");
    })
    .unwrap();
    assert_eq!(poller.waiters(), 0);
    assert_eq!(parks, 1);
    assert!(toks.is_empty());
}

#[test]
fn wake_interrupts_a_blocked_poll() {
    let poller = Poller::new().unwrap();
    thread::scope(|s| {
        for round in 0..50 {
            let (tx, rx) = mpsc::channel();
            let poller = &poller;
            s.spawn(move || {
                let mut toks = Vec::new();
                let n = poller.poll(None, &mut toks).unwrap();
                tx.send(n).unwrap();
            });
            if round % 2 == 0 {
                thread::sleep(Duration::from_millis(2)); // most likely blocked by now
            }
            poller.wake().unwrap();
            assert_eq!(rx.recv_timeout(PATIENCE).expect("wake did not interrupt poll(None)"), 0);
        }
    });
}

#[test]
fn concurrent_wakes_coalesce_and_never_stick() {
    let poller = Poller::new().unwrap();
    for _ in 0..20 {
        thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| (0..100).for_each(|_| poller.wake().unwrap()));
            }
        });
        // All of them are pending as (at most) one eventfd count; a non-blocking poll leaves
        // it pending, a blocking poll consumes it.
        let mut toks = Vec::new();
        poller.poll(Some(Duration::ZERO), &mut toks).unwrap();
        poller.poll(None, &mut toks).unwrap();
        assert!(toks.is_empty());
    }
    // After consumption the flag is clear: a new wake still interrupts a blocked poll.
    thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        let poller = &poller;
        s.spawn(move || tx.send(poller.poll(None, &mut Vec::new()).unwrap()).unwrap());
        thread::sleep(Duration::from_millis(5));
        poller.wake().unwrap();
        rx.recv_timeout(PATIENCE).expect("wake stuck after coalescing");
    });
}

#[test]
fn close_wakes_both_waiters_with_closed() {
    let poller = Poller::new().unwrap();
    let (a, _b) = pair();
    let reg = poller.register(a.as_raw_fd()).unwrap();
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| drive(&poller, &stop));
        let reader = s.spawn(|| read_blocking(&reg, &a, &mut [0u8; 8], &Parker::current()));
        // Fill the socket buffer so the writer parks.
        let writer = s.spawn(|| {
            let me = Parker::current();
            let chunk = vec![7u8; 64 * 1024];
            loop {
                write_blocking(&reg, &a, &chunk, &me)?;
            }
        });
        wait_until("reader and writer parked", || poller.waiters() == 2);
        let w = reg.close();
        assert!(w.read.is_some() && w.write.is_some());
        ready_all(w);
        for r in [reader.join().unwrap().map(|_| ()), writer.join().unwrap()] {
            let e = r.unwrap_err();
            assert_eq!(PollError::of(&e), Some(PollError::Closed), "{e}");
            assert_eq!(e.kind(), io::ErrorKind::Other);
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(reg.close().is_empty(), "close is idempotent");
    assert_eq!(PollError::of(&reg.prepare(Mode::Read).unwrap_err()), Some(PollError::Closed));
    assert_eq!(PollError::of(&reg.check(Mode::Write).unwrap_err()), Some(PollError::Closed));
    assert_eq!(poller.waiters(), 0);
}

#[test]
fn hangup_wakes_the_reader_to_see_eof() {
    let poller = Poller::new().unwrap();
    let (a, b) = pair();
    let reg = poller.register(a.as_raw_fd()).unwrap();
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| drive(&poller, &stop));
        let reader = s.spawn(|| read_blocking(&reg, &a, &mut [0u8; 8], &Parker::current()));
        wait_until("reader parked", || poller.waiters() == 1);
        drop(b);
        assert_eq!(reader.join().unwrap().unwrap(), 0);
        stop.store(true, Ordering::Relaxed);
    });
}

#[test]
fn tcp_loopback_accept_and_echo() {
    let poller = Poller::new().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let lreg = poller.register(listener.as_raw_fd()).unwrap();
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| drive(&poller, &stop));
        let server = s.spawn(|| {
            let me = Parker::current();
            lreg.prepare(Mode::Read).unwrap();
            let (conn, _) = loop {
                match listener.accept() {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => lreg.wait(Mode::Read, |c| me.park(c)).unwrap(),
                    r => break r.unwrap(),
                }
            };
            conn.set_nonblocking(true).unwrap();
            let reg = poller.register(conn.as_raw_fd()).unwrap();
            let mut buf = [0u8; 64];
            let mut got = Vec::new();
            while got.len() < 10 {
                let n = read_blocking(&reg, &conn, &mut buf, &me).unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            write_blocking(&reg, &conn, &got, &me).unwrap();
            me.commits.load(Ordering::Relaxed)
        });
        wait_until("accept parked", || poller.waiters() == 1);
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(b"hello").unwrap();
        thread::sleep(Duration::from_millis(10));
        client.write_all(b"world").unwrap();
        let mut back = [0u8; 10];
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"helloworld");
        assert!(server.join().unwrap() >= 1, "the server parked at least once (on accept)");
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(poller.waiters(), 0);
}

#[test]
fn registration_failures_are_io_errors_and_leave_the_pool_sound() {
    let poller = Poller::new().unwrap();
    for _ in 0..1000 {
        let e = poller.register(-1).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    }
    let file = std::fs::File::open("/proc/self/status").unwrap();
    assert_eq!(poller.register(file.as_raw_fd()).unwrap_err().raw_os_error(), Some(libc::EPERM));
    let (a, mut b) = pair();
    let reg = poller.register(a.as_raw_fd()).unwrap();
    assert_eq!(poller.register(a.as_raw_fd()).unwrap_err().raw_os_error(), Some(libc::EEXIST));
    assert!(!poller.is_poll_descriptor(-1) && !poller.is_poll_descriptor(a.as_raw_fd()));
    // The surviving registration still works.
    b.write_all(b"z").unwrap();
    let mut toks = Vec::new();
    poller.poll(Some(Duration::from_secs(5)), &mut toks).unwrap();
    reg.wait(Mode::Read, |_| panic!("parked although readable")).unwrap();
    // Many registrations and drops reuse descriptors.
    for _ in 0..3 {
        let pairs: Vec<_> = (0..300).map(|_| pair()).collect();
        let regs: Vec<_> = pairs.iter().map(|(x, _)| poller.register(x.as_raw_fd()).unwrap()).collect();
        drop(regs);
    }
}

/// The scheduler's pattern: publish work, then `wake`; the blocked poller must see the work.
/// A coalesced wake that was dropped while the poller drained would leave it asleep (then this
/// test fails after `PATIENCE`).
#[test]
fn work_published_before_wake_is_seen_by_the_poller() {
    const ROUNDS: usize = 2000;
    let poller = Poller::new().unwrap();
    let work = std::sync::atomic::AtomicUsize::new(0);
    let seen = std::sync::atomic::AtomicUsize::new(0);
    thread::scope(|s| {
        s.spawn(|| {
            let mut toks = Vec::new();
            loop {
                let start = std::time::Instant::now();
                poller.poll(Some(PATIENCE), &mut toks).unwrap();
                // Relaxed: the value itself is the message; `wake`/`poll` order it (the point
                // of the test).
                let w = work.load(Ordering::Relaxed);
                assert!(w > seen.load(Ordering::Relaxed) || start.elapsed() < PATIENCE, "lost wake");
                seen.store(w, Ordering::Relaxed);
                if w == ROUNDS {
                    break;
                }
            }
        });
        for i in 1..=ROUNDS {
            work.store(i, Ordering::Relaxed);
            poller.wake().unwrap();
            // Sometimes race the next wake with the poller's drain, sometimes wait for it.
            if i % 3 != 0 {
                wait_until("the poller to see the work", || seen.load(Ordering::Relaxed) >= i);
            }
        }
    });
}
