//! Channel-shaped timers: [`after`] and [`tick`] (Go's `time.After` and `time.Tick`).
//!
//! Each returns the receiving end of a one-slot channel fed by a runtime [`RawTimer`] whose
//! callback does a non-blocking send of the current [`Instant`] (Go's `sendTime`): a slow reader
//! of a ticker misses ticks instead of queueing them. The channels are never closed, as in Go.
//!
//! # Ownership
//!
//! The channel owns its timer (`Chan::timer`), and the callback holds only a `Weak` reference to
//! the channel, so dropping the last receiver frees the channel and stops the timer: unlike Go's
//! `time.Tick`, an abandoned ticker does not leak. Tickers use the runtime's periodic timer
//! (`RawTimer::with_period`), which skips ticks missed during a long pause, as Go's does.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::time::{nanotime, RawTimer};

use super::{Chan, Receiver};

/// A receiver that gets the current time once, `d` from now (`time.After(d)`).
pub fn after(d: Duration) -> Receiver<Instant> {
    timer_chan(d, None)
}

/// A receiver that gets the current time every `d` (`time.Tick(d)`); ticks a slow reader misses
/// are dropped. The ticker stops when the last receiver is dropped.
///
/// # Panics
/// If `d` is zero (Go's `NewTicker` panics on a non-positive interval).
pub fn tick(d: Duration) -> Receiver<Instant> {
    assert!(!d.is_zero(), "gort: non-positive interval for tick");
    timer_chan(d, Some(d))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn timer_chan(d: Duration, period: Option<Duration>) -> Receiver<Instant> {
    // No Sender exists: the sender count stays 1 forever, so the channel never closes.
    let c: Arc<Chan<Instant>> = Arc::new(Chan::new(1, false));
    let weak: Weak<Chan<Instant>> = Arc::downgrade(&c);
    let first = nanotime().saturating_add(nanos(d));
    let f: Box<dyn Fn() + Send + Sync> = Box::new(move || {
        if let Some(c) = weak.upgrade() {
            send_time(&c);
            // Should this be the last reference (the receiver went away meanwhile), the channel
            // drops here and stops its own timer from inside the callback, which RawTimer allows.
        }
    });
    let timer = match period {
        None => RawTimer::new(first, f),
        Some(p) => RawTimer::with_period(first, nanos(p).max(1), f),
    };
    if c.timer.set(timer).is_err() {
        unreachable!("gort: timer channel armed twice");
    }
    Receiver { c }
}

/// Non-blocking send of `Instant::now()` (drops the value if the slot is full).
fn send_time(c: &Chan<Instant>) {
    c.core.lock.lock();
    // SAFETY: lock held; the channel is never closed.
    let r = unsafe { c.send_locked(Instant::now()) };
    // SAFETY: taken above.
    unsafe { c.core.lock.unlock() };
    if let Ok(Some(g)) = r {
        // SAFETY: `send_locked` claimed this receiver from the recvq: queue invariant 3 makes us
        // its one claimer, and invariant 4 says it committed its park: this is the one wake-up
        // for that wait.
        unsafe { g.wake() };
    }
}

impl<T> Drop for Chan<T> {
    fn drop(&mut self) {
        if let Some(t) = self.timer.take() {
            t.stop();
        }
    }
}
