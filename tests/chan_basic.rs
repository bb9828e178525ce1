//! Basic channel behaviour: buffering, rendezvous, close, timeouts, iteration, plain threads.

mod common;

use std::time::{Duration, Instant};

use common::{go, run, PATIENCE};
use gort::chan::{self, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError};

#[test]
fn buffered_fifo() {
    run(|| {
        let (tx, rx) = chan::chan::<u32>(10);
        for i in 0..10 {
            tx.send(i).unwrap();
        }
        assert_eq!(tx.len(), 10);
        assert_eq!(rx.capacity(), 10);
        assert!(matches!(tx.try_send(99), Err(TrySendError::Full(99))));
        for i in 0..10 {
            assert_eq!(rx.recv(), Some(i));
        }
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert!(rx.is_empty());
    });
}

/// A full buffer with blocked senders stays FIFO: the receiver takes the buffer head and the
/// first blocked sender's value moves to the tail.
#[test]
fn full_buffer_with_blocked_senders_is_fifo() {
    run(|| {
        let (tx, rx) = chan::chan::<u32>(2);
        tx.send(0).unwrap();
        tx.send(1).unwrap();
        let mut hs = Vec::new();
        for v in 2..5 {
            let tx = tx.clone();
            let h = go!(move || tx.send(v).unwrap());
            // Queue the senders in order.
            common::wait_state(h.id(), "chan send");
            hs.push(h);
        }
        let got: Vec<u32> = (0..5).map(|_| rx.recv().unwrap()).collect();
        assert_eq!(got, [0, 1, 2, 3, 4]);
        for h in hs {
            h.join().unwrap();
        }
    });
}

/// Unbuffered: a send completes only when a receiver takes the value.
#[test]
fn unbuffered_is_a_rendezvous() {
    run(|| {
        let (tx, rx) = chan::chan::<u32>(0);
        assert!(matches!(tx.try_send(1), Err(TrySendError::Full(1))), "no receiver: try_send fails");
        let (done_tx, done) = chan::chan::<()>(1);
        let h = go!(move || {
            tx.send(7).unwrap();
            done_tx.send(()).unwrap();
        });
        gort::time::sleep(Duration::from_millis(20));
        assert_eq!(done.try_recv(), Err(TryRecvError::Empty), "send completed without a receiver");
        assert_eq!(rx.len(), 0);
        assert_eq!(rx.recv(), Some(7));
        assert_eq!(done.recv_timeout(PATIENCE), Ok(()));
        h.join().unwrap();
    });
}

#[test]
fn close_semantics() {
    run(|| {
        let (tx, rx) = chan::chan::<u32>(4);
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert!(!tx.is_closed());
        assert!(tx.close(), "first close");
        assert!(!tx.close(), "second close is harmless and reports false");
        assert!(rx.is_closed());
        assert_eq!(tx.send(3), Err(SendError(3)));
        assert!(matches!(tx.try_send(4), Err(TrySendError::Closed(4))));
        assert!(matches!(tx.send_timeout(5, Duration::from_millis(1)), Err(SendTimeoutError::Closed(5))));
        // Buffered values drain first.
        assert_eq!(rx.recv(), Some(1));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.recv(), None);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
        assert_eq!(rx.recv_timeout(Duration::from_millis(1)), Err(RecvTimeoutError::Closed));
    });
}

#[test]
fn drop_last_sender_closes() {
    run(|| {
        let (tx, rx) = chan::chan::<u32>(0);
        let tx2 = tx.clone();
        let h = go!(move || rx.iter().collect::<Vec<_>>());
        tx.send(1).unwrap();
        drop(tx);
        tx2.send(2).unwrap();
        drop(tx2);
        assert_eq!(h.join().unwrap(), [1, 2]);
    });
}

/// Receivers do not close: with every receiver gone, a buffered send still succeeds while
/// there is room (Go has no receiver-side close either).
#[test]
fn dropping_receivers_does_not_close() {
    run(|| {
        let (tx, rx) = chan::chan::<u32>(1);
        drop(rx);
        assert!(!tx.is_closed());
        assert_eq!(tx.try_send(1), Ok(()));
        assert!(matches!(tx.try_send(2), Err(TrySendError::Full(2))));
    });
}

#[test]
fn for_loop_is_range() {
    run(|| {
        let (tx, rx) = chan::chan::<u32>(3);
        go!(move || {
            for i in 0..100 {
                tx.send(i).unwrap();
            }
        });
        let mut n = 0;
        for v in rx {
            assert_eq!(v, n);
            n += 1;
        }
        assert_eq!(n, 100);
    });
}

#[test]
fn try_iter_takes_what_is_there() {
    run(|| {
        let (tx, rx) = chan::chan::<u32>(5);
        for i in 0..3 {
            tx.send(i).unwrap();
        }
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(rx.try_iter().count(), 0);
    });
}

#[test]
fn recv_timeout_times_out_and_succeeds() {
    run(|| {
        let (tx, rx) = chan::chan::<u32>(0);
        let t0 = Instant::now();
        assert_eq!(rx.recv_timeout(Duration::from_millis(30)), Err(RecvTimeoutError::Timeout));
        assert!(t0.elapsed() >= Duration::from_millis(30), "returned early: {:?}", t0.elapsed());
        go!(move || {
            gort::time::sleep(Duration::from_millis(10));
            tx.send(5).unwrap();
        });
        assert_eq!(rx.recv_timeout(PATIENCE), Ok(5));
    });
}

#[test]
fn send_timeout_times_out_and_succeeds() {
    run(|| {
        let (tx, rx) = chan::chan::<u32>(0);
        let t0 = Instant::now();
        assert!(matches!(tx.send_timeout(1, Duration::from_millis(30)), Err(SendTimeoutError::Timeout(1))));
        assert!(t0.elapsed() >= Duration::from_millis(30), "returned early: {:?}", t0.elapsed());
        let h = go!(move || {
            gort::time::sleep(Duration::from_millis(10));
            rx.recv()
        });
        tx.send_timeout(2, PATIENCE).unwrap();
        assert_eq!(h.join().unwrap(), Some(2));
    });
}

/// A timed-out receive leaves nothing behind: the next sender is not captured by it.
#[test]
fn timed_out_receiver_is_unlinked() {
    run(|| {
        let (tx, rx) = chan::chan::<u32>(0);
        for _ in 0..100 {
            assert_eq!(rx.recv_timeout(Duration::from_micros(100)), Err(RecvTimeoutError::Timeout));
        }
        assert!(matches!(tx.try_send(1), Err(TrySendError::Full(1))), "a timed-out receiver took a value");
    });
}

/// Close wakes timed waiters with `Closed`, not `Timeout`, and a timed sender gets its value
/// back.
#[test]
fn close_wakes_timed_waiters() {
    run(|| {
        let (tx, rx) = chan::chan::<u32>(0);
        let (tx2, _rx2) = chan::chan::<u32>(0);
        let closer = tx2.clone();
        let hr = go!(move || rx.recv_timeout(PATIENCE));
        let hs = go!(move || tx2.send_timeout(9, PATIENCE));
        while gort::runtime::goroutines()
            .iter()
            .filter(|g| g.id == hr.id() || g.id == hs.id())
            .any(|g| !g.state.starts_with("chan"))
        {
            gort::time::sleep(Duration::from_millis(1));
        }
        tx.close();
        closer.close();
        assert_eq!(hr.join().unwrap(), Err(RecvTimeoutError::Closed));
        assert!(matches!(hs.join().unwrap(), Err(SendTimeoutError::Closed(9))));
    });
}

#[test]
fn nil_channels_never_complete() {
    run(|| {
        let (tx, rx) = chan::nil::<u32>();
        assert!(matches!(tx.try_send(1), Err(TrySendError::Full(1))));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(rx.recv_timeout(Duration::from_millis(5)), Err(RecvTimeoutError::Timeout));
        assert!(matches!(tx.send_timeout(2, Duration::from_millis(5)), Err(SendTimeoutError::Timeout(2))));
        assert!(!tx.close(), "closing a nil channel does nothing");
    });
}

/// Everything works from plain OS threads, without any goroutine: the thread blocks.
#[test]
fn plain_threads_only() {
    let (tx, rx) = chan::chan::<u64>(0);
    let (back_tx, back) = chan::chan::<u64>(4);
    let t = std::thread::spawn(move || {
        let mut sum = 0;
        for v in rx.iter() {
            sum += v;
        }
        back_tx.send(sum).unwrap();
    });
    for i in 0..10_000 {
        tx.send(i).unwrap();
    }
    drop(tx);
    assert_eq!(back.recv_timeout(PATIENCE), Ok(10_000 * 9_999 / 2));
    t.join().unwrap();
    // Timeouts from a plain thread.
    assert_eq!(back.recv_timeout(Duration::from_millis(10)), Err(RecvTimeoutError::Closed));
    let (_t2, r2) = chan::chan::<u8>(0);
    assert_eq!(r2.recv_timeout(Duration::from_millis(10)), Err(RecvTimeoutError::Timeout));
}

/// A goroutine and a plain thread hand values both ways.
#[test]
fn goroutine_thread_handoff() {
    run(|| {
        let (tx, rx) = chan::chan::<u32>(0);
        let (tx2, rx2) = chan::chan::<u32>(0);
        let t = std::thread::spawn(move || {
            for _ in 0..1000 {
                let v = rx.recv().unwrap();
                tx2.send(v * 2).unwrap();
            }
        });
        for i in 0..1000 {
            tx.send(i).unwrap();
            assert_eq!(rx2.recv_timeout(PATIENCE), Ok(i * 2));
        }
        gort::blocking(|| t.join().unwrap());
    });
}

#[test]
fn errors_display_like_go() {
    assert_eq!(SendError(1).to_string(), "send on closed channel");
    assert_eq!(TrySendError::Closed(1).to_string(), "send on closed channel");
    assert_eq!(TryRecvError::Empty.to_string(), "receive on empty channel");
    assert_eq!(RecvTimeoutError::Timeout.to_string(), "timed out receiving on channel");
}
