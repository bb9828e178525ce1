//! Concurrent stress: many threads arming, firing, expiring and closing at once. Loops are
//! bounded by the constants below and stop by themselves; a lost wakeup panics in the
//! harness after `PATIENCE`, a double wakeup panics at once.

mod common;

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use common::*;
use gort_netpoll::{Deadline, Mode, PollError, Poller};

/// Reader threads (each with its own socket pair).
const READERS: usize = 8;
/// Bytes each reader must receive, written one at a time.
const BYTES: usize = 3000;
/// Close/deadline race rounds.
const ROUNDS: usize = 300;

/// Writers send single bytes to all readers while two threads poll concurrently; every read
/// wait ends, every committed token is readied exactly once, no byte is lost.
#[test]
fn stress_events_ready_each_waiter_exactly_once() {
    let poller = Poller::new().unwrap();
    let pairs: Vec<_> = (0..READERS).map(|_| pair()).collect();
    let regs: Vec<_> = pairs.iter().map(|(a, _)| poller.register(a.as_raw_fd()).unwrap()).collect();
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let (commits, readies) = (AtomicUsize::new(0), AtomicUsize::new(0));
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| drive(&poller, &stop));
        }
        for (i, reg) in regs.iter().enumerate() {
            let (a, _) = &pairs[i];
            let (done, commits, readies) = (&done, &commits, &readies);
            s.spawn(move || {
                let me = Parker::current();
                let mut buf = [0u8; 64];
                let mut got = 0;
                while got < BYTES {
                    let n = read_blocking(reg, a, &mut buf, &me).unwrap();
                    assert!(n > 0, "unexpected EOF");
                    assert!(buf[..n].iter().all(|&b| b == i as u8));
                    got += n;
                }
                assert_eq!(got, BYTES);
                commits.fetch_add(me.commits.load(Ordering::Relaxed), Ordering::Relaxed);
                readies.fetch_add(me.readies.load(Ordering::Relaxed), Ordering::Relaxed);
                done.fetch_add(1, Ordering::Relaxed);
            });
        }
        for w in 0..2 {
            let pairs = &pairs;
            s.spawn(move || {
                for k in 0..BYTES {
                    for (i, (_, b)) in pairs.iter().enumerate().filter(|(i, _)| i % 2 == w) {
                        let mut b = b;
                        loop {
                            match b.write(&[i as u8]) {
                                Ok(1) => break,
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::yield_now(),
                                r => panic!("write: {r:?}"),
                            }
                        }
                    }
                    if k % 64 == 0 {
                        thread::yield_now(); // let readers drain and park
                    }
                }
            });
        }
        wait_until("all readers", || done.load(Ordering::Relaxed) == READERS);
        stop.store(true, Ordering::Relaxed);
    });
    eprintln!("parks: {}", commits.load(Ordering::Relaxed));
    assert_eq!(commits.load(Ordering::Relaxed), readies.load(Ordering::Relaxed));
    assert!(commits.load(Ordering::Relaxed) > 0, "nobody ever parked: the test tested nothing");
    assert_eq!(poller.waiters(), 0);
}

/// Each round: a reader and a writer wait on one socket while events, a deadline timer and a
/// close race each other. Both waits must end (ready, timed out or closed), every token once.
#[test]
fn stress_close_and_deadlines_race_events() {
    let poller = Poller::new().unwrap();
    let stop = AtomicBool::new(false);
    let mut outcomes = [0usize; 3]; // data, timed out, closed
    thread::scope(|s| {
        s.spawn(|| drive(&poller, &stop));
        for round in 0..ROUNDS {
            let (a, mut b) = pair();
            let reg = poller.register(a.as_raw_fd()).unwrap();
            let (rkey, _) = reg.set_deadline(Mode::Read, Deadline::Future);
            let (wkey, _) = reg.set_deadline(Mode::Write, Deadline::Future);
            let res = thread::scope(|s2| {
                let (reg, a) = (&reg, &a);
                let reader = s2.spawn(move || {
                    let me = Parker::current();
                    let mut total = 0;
                    loop {
                        match read_blocking(reg, a, &mut [0u8; 256], &me) {
                            Ok(0) => return (Ok(total), me),
                            Ok(n) => total += n,
                            Err(e) => return (Err(e), me),
                        }
                    }
                });
                let writer = s2.spawn(move || {
                    let me = Parker::current();
                    let chunk = vec![0u8; 32 * 1024];
                    loop {
                        if let Err(e) = write_blocking(reg, a, &chunk, &me) {
                            return (e, me);
                        }
                    }
                });
                // The peer trickles data back; a "timer" expires; the socket is closed.
                let kind = round % 4;
                for _ in 0..(round % 7) {
                    let _ = b.write(b"data");
                    thread::yield_now();
                }
                if kind == 0 || kind == 1 {
                    ready_all(poller.expire(rkey));
                }
                if kind == 1 || kind == 2 {
                    ready_all(poller.expire(wkey));
                }
                if round % 3 == 0 {
                    thread::yield_now();
                }
                ready_all(reg.close());
                let mut buf = vec![0u8; 64 * 1024];
                let _ = (&b).read(&mut buf); // make room: a racing writer event
                (reader.join().unwrap(), writer.join().unwrap())
            });
            let ((r, rme), (w, wme)) = res;
            for me in [&rme, &wme] {
                assert_eq!(me.commits.load(Ordering::Relaxed), me.readies.load(Ordering::Relaxed));
            }
            match r {
                Ok(_) => unreachable!("the peer never hangs up"),
                Err(e) => match PollError::of(&e) {
                    Some(PollError::TimedOut) => outcomes[1] += 1,
                    Some(PollError::Closed) => outcomes[2] += 1,
                    None => panic!("reader: {e}"),
                },
            }
            assert!(PollError::of(&w).is_some(), "writer: {w}");
            drop(reg);
            outcomes[0] += 1;
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(outcomes[0], ROUNDS);
    assert!(outcomes[1] > 0 && outcomes[2] > 0, "both endings seen: {outcomes:?}");
    assert_eq!(poller.waiters(), 0);
}

/// Registrations come and go on many threads while events for the dropped ones are still in
/// flight: stale events must never wake a waiter of the reused descriptor twice or corrupt a
/// slot (the harness and the slot asserts would panic).
#[test]
fn stress_register_drop_reuse_with_events_in_flight() {
    let poller = Arc::new(Poller::new().unwrap());
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| drive(&poller, &stop));
        s.spawn(|| drive(&poller, &stop));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let poller = &poller;
                s.spawn(move || {
                    let me = Parker::current();
                    for i in 0..ROUNDS {
                        let (a, mut b) = pair();
                        let reg = poller.register(a.as_raw_fd()).unwrap();
                        b.write_all(&[1; 3]).unwrap(); // an event per round, maybe handled late
                        let mut got = 0;
                        while got < 3 {
                            got += read_blocking(&reg, &a, &mut [0u8; 8], &me).unwrap();
                        }
                        if i % 2 == 0 {
                            b.write_all(&[1]).unwrap(); // left in flight for the next owner
                        }
                        drop(reg);
                    }
                    me.commits.load(Ordering::Relaxed) == me.readies.load(Ordering::Relaxed)
                })
            })
            .collect();
        for w in workers {
            assert!(w.join().unwrap());
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(poller.waiters(), 0);
}
