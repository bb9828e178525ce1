//! Deadlines: the runtime's timers drive them through `set_deadline` and `expire`.

mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::*;
use gort_netpoll::{Deadline, Mode, PollError, Poller};

fn timed_out(r: std::io::Result<()>) -> bool {
    matches!(r, Err(e) if PollError::of(&e) == Some(PollError::TimedOut) && e.kind() == std::io::ErrorKind::TimedOut)
}

#[test]
fn past_deadline_fails_waits_of_that_mode_only() {
    let poller = Poller::new().unwrap();
    let (a, _b) = pair();
    let reg = poller.register(a.as_raw_fd()).unwrap();
    let (_, tok) = reg.set_deadline(Mode::Read, Deadline::Past);
    assert!(tok.is_none(), "nobody was parked");
    assert!(timed_out(reg.prepare(Mode::Read)));
    assert!(timed_out(reg.wait(Mode::Read, |_| panic!("parked past the deadline"))));
    reg.prepare(Mode::Write).unwrap();
    // Clearing or moving the deadline into the future makes reads wait again.
    for d in [Deadline::Unset, Deadline::Future] {
        reg.set_deadline(Mode::Read, Deadline::Past);
        reg.set_deadline(Mode::Read, d);
        reg.prepare(Mode::Read).unwrap();
    }
}

#[test]
fn expiry_wakes_the_parked_waiter_with_timed_out() {
    let poller = Poller::new().unwrap();
    let (a, _b) = pair();
    let reg = poller.register(a.as_raw_fd()).unwrap();
    thread::scope(|s| {
        let (key, _) = reg.set_deadline(Mode::Read, Deadline::Future);
        assert_eq!(key.mode(), Mode::Read);
        let reader = s.spawn(|| read_blocking(&reg, &a, &mut [0u8; 4], &Parker::current()));
        wait_until("reader parked", || poller.waiters() == 1);
        let tok = poller.expire(key).expect("the parked reader");
        assert_eq!(poller.waiters(), 0);
        ready(tok);
        assert!(timed_out(reader.join().unwrap().map(|_| ())));
        assert!(poller.expire(key).is_none(), "nobody left to wake");

        // A past deadline set while a reader is parked hands it back too.
        reg.set_deadline(Mode::Read, Deadline::Unset);
        let reader = s.spawn(|| read_blocking(&reg, &a, &mut [0u8; 4], &Parker::current()));
        wait_until("reader parked", || poller.waiters() == 1);
        let (_, tok) = reg.set_deadline(Mode::Read, Deadline::Past);
        ready(tok.expect("the parked reader"));
        assert!(timed_out(reader.join().unwrap().map(|_| ())));
    });
}

#[test]
fn stale_keys_are_ignored() {
    let poller = Poller::new().unwrap();
    let (a, _b) = pair();
    let (c, _d) = pair();
    let reg = poller.register(a.as_raw_fd()).unwrap();
    let (k1, _) = reg.set_deadline(Mode::Read, Deadline::Future);
    let (k2, _) = reg.set_deadline(Mode::Read, Deadline::Future);
    assert_ne!(k1, k2);
    assert!(poller.expire(k1).is_none());
    reg.prepare(Mode::Read).unwrap();
    assert!(poller.expire(k2).is_none());
    assert!(timed_out(reg.prepare(Mode::Read)));
    reg.set_deadline(Mode::Read, Deadline::Unset);
    poller.expire(k2);
    reg.prepare(Mode::Read).unwrap();

    // A write key does not touch reads.
    let (kw, _) = reg.set_deadline(Mode::Write, Deadline::Future);
    poller.expire(kw);
    reg.prepare(Mode::Read).unwrap();
    assert!(timed_out(reg.prepare(Mode::Write)));

    // Keys die with close, and with the registration even when its descriptor is reused.
    let (k3, _) = reg.set_deadline(Mode::Read, Deadline::Future);
    drop(reg);
    let reg2 = poller.register(c.as_raw_fd()).unwrap();
    assert!(poller.expire(k3).is_none());
    reg2.prepare(Mode::Read).unwrap();
    let (k4, _) = reg2.set_deadline(Mode::Read, Deadline::Future);
    reg2.close();
    assert!(poller.expire(k4).is_none());
    let e = reg2.check(Mode::Read).unwrap_err();
    assert_eq!(PollError::of(&e), Some(PollError::Closed), "closed wins over timed out");
}

/// Go's "timeout has fired and unblocked us, but before we ran it was reset: retry".
#[test]
fn a_deadline_reset_after_expiry_makes_the_waiter_wait_again() {
    let poller = Poller::new().unwrap();
    let (a, mut b) = pair();
    let reg = poller.register(a.as_raw_fd()).unwrap();
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let (key, _) = reg.set_deadline(Mode::Read, Deadline::Future);
        let reader = s.spawn(|| {
            let me = Parker::current();
            let n = read_blocking(&reg, &a, &mut [0u8; 4], &me);
            (n.unwrap(), me.commits.load(Ordering::Relaxed))
        });
        wait_until("reader parked", || poller.waiters() == 1);
        let tok = poller.expire(key).unwrap();
        reg.set_deadline(Mode::Read, Deadline::Unset);
        ready(tok);
        wait_until("reader parked again", || poller.waiters() == 1);
        s.spawn(|| drive(&poller, &stop));
        b.write_all(b"ok").unwrap();
        assert_eq!(reader.join().unwrap(), (2, 2));
        stop.store(true, Ordering::Relaxed);
    });
}

#[test]
fn deadline_of_a_blocked_writer() {
    let poller = Poller::new().unwrap();
    let (a, _b) = pair();
    let reg = poller.register(a.as_raw_fd()).unwrap();
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| drive(&poller, &stop));
        let (key, _) = reg.set_deadline(Mode::Write, Deadline::Future);
        let writer = s.spawn(|| {
            let me = Parker::current();
            let chunk = vec![1u8; 64 * 1024];
            loop {
                write_blocking(&reg, &a, &chunk, &me)?;
            }
        });
        wait_until("writer parked on a full buffer", || poller.waiters() == 1);
        thread::sleep(Duration::from_millis(5));
        // The runtime's timer fires on some thread.
        if let Some(t) = poller.expire(key) {
            ready(t);
        }
        assert!(timed_out(writer.join().unwrap()));
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(poller.waiters(), 0);
}
