//! Basic channel behaviour: buffering, rendezvous, close, timeouts, iteration, plain threads.

use std::time::Duration;

use gort::runtime::chan::{self, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError};

#[test]
fn runtime_works() {
    assert_eq!(gort::run(|| 1), 1);
}

#[test]
fn buffered_fifo() {
    gort::run(|| {
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
    });
}
