//! Go's own channel tests (`test/chan/*.go` in golang/go), rewritten against gort's channels.
//!
//! One module per Go program, named after it; each doc comment links the original. The
//! programs are ported for meaning, not line by line: Go's `panic` becomes `assert!`, a nil
//! channel is [`chan::nil`], `close(c)` is `Sender::close`. Goroutines that Go leaves blocked
//! forever at exit (sieves, generators) are left parked here too: they cost no thread.
//! crossbeam-channel's `tests/golang.rs` did the same for its channels.
//!
//! Source: <https://github.com/golang/go/tree/master/test/chan>, Copyright 2009 The Go Authors,
//! BSD-style license.

mod common;

use std::time::Duration;

use common::{go, run, wait_state, PATIENCE};
use gort::chan::{self, Receiver, Sender};

/// Receives or fails the test after [`PATIENCE`] (instead of hanging).
fn must_recv<T>(rx: &Receiver<T>) -> Option<T> {
    match rx.recv_timeout(PATIENCE) {
        Ok(v) => Some(v),
        Err(chan::RecvTimeoutError::Closed) => None,
        Err(chan::RecvTimeoutError::Timeout) => panic!("no value within {PATIENCE:?}"),
    }
}

/// <https://github.com/golang/go/blob/master/test/chan/sieve1.go>: the concurrent prime sieve,
/// a daisy chain of filter goroutines.
mod sieve1 {
    use super::*;

    fn generate(ch: Sender<u32>) {
        for i in 2.. {
            if ch.send(i).is_err() {
                return;
            }
        }
    }

    fn filter(input: Receiver<u32>, out: Sender<u32>, prime: u32) {
        for i in input {
            if i % prime != 0 && out.send(i).is_err() {
                return;
            }
        }
    }

    fn sieve(primes: Sender<u32>) {
        let (tx, mut ch) = chan::chan(0);
        go!(generate(tx));
        loop {
            let prime = ch.recv().unwrap();
            if primes.send(prime).is_err() {
                return;
            }
            let (tx1, ch1) = chan::chan(0);
            go!(filter(ch, tx1, prime));
            ch = ch1;
        }
    }

    #[test]
    fn main() {
        run(|| {
            let (tx, primes) = chan::chan(0);
            go!(sieve(tx));
            let a = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97];
            for want in a {
                assert_eq!(must_recv(&primes), Some(want));
            }
        });
    }
}

/// <https://github.com/golang/go/blob/master/test/chan/sieve2.go>: an Eratosthenes sieve over
/// odd candidates that merges channels of prime multiples through a heap, with a feedback loop
/// buffered by a `select`-driven send proxy whose output arm is disabled (a nil channel) while
/// its buffer is empty.
mod sieve2 {
    use super::*;
    use std::cmp::Reverse;
    use std::collections::{BinaryHeap, VecDeque};

    /// Odd numbers from 5.
    fn odds() -> Receiver<u64> {
        let (tx, rx) = chan::chan(50);
        go!(move || {
            let mut n = 5;
            while tx.send(n).is_ok() {
                n += 2;
            }
        });
        rx
    }

    /// Odd multiples of `p` from `p * p`.
    fn multiples(p: u64) -> Receiver<u64> {
        let (tx, rx) = chan::chan(10);
        go!(move || {
            let mut n = p * p;
            while tx.send(n).is_ok() {
                n += 2 * p;
            }
        });
        rx
    }

    /// A goroutine buffering everything sent to the returned sender into `out`, so sending never
    /// blocks (Go's `sendproxy` on a growing ring).
    fn sendproxy(out: Sender<u64>) -> Sender<u64> {
        let (proxy, input) = chan::chan::<u64>(10);
        go!(move || {
            let (nil_tx, _nil_rx) = chan::nil::<u64>();
            let mut buf: VecDeque<u64> = VecDeque::new();
            loop {
                // Buffer empty: disable the output arm with a nil channel.
                let (c, e) = match buf.front() {
                    Some(&e) => (&out, e),
                    None => (&nil_tx, 0),
                };
                gort::select! {
                    v = input.recv() => match v {
                        Some(v) => buf.push_back(v),
                        None => return,
                    },
                    r = c.send(e) => {
                        if r.is_err() {
                            return;
                        }
                        buf.pop_front();
                    }
                }
            }
        });
        proxy
    }

    fn sieve() -> Receiver<u64> {
        let (out, rx) = chan::chan(10);
        out.send(2).unwrap();
        out.send(3).unwrap();
        // Every odd composite, in increasing order (duplicates possible, harmless).
        let (composites, composites_rx) = chan::chan::<u64>(50);
        // The feedback loop: the primes found, whose multiples become composites.
        let (primes, primes_rx) = chan::chan::<u64>(10);
        primes.send(3).unwrap();

        // Merge the channels of multiples of `primes` into `composites`.
        go!(move || {
            let mut heap: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
            let mut streams: Vec<Receiver<u64>> = Vec::new();
            while let Some(p) = primes_rx.recv() {
                let m = multiples(p);
                let head = m.recv().unwrap();
                // Everything smaller than p*p comes from the primes already known.
                while let Some(&Reverse((min, i))) = heap.peek() {
                    if min > head {
                        break;
                    }
                    heap.pop();
                    if min < head && composites.send(min).is_err() {
                        return;
                    }
                    heap.push(Reverse((streams[i].recv().unwrap(), i)));
                }
                if composites.send(head).is_err() {
                    return;
                }
                heap.push(Reverse((m.recv().unwrap(), streams.len())));
                streams.push(m);
            }
        });

        // Sieve the composites out of the candidates.
        go!(move || {
            let primes = sendproxy(primes);
            let candidates = odds();
            let mut p = candidates.recv().unwrap();
            while let Some(c) = composites_rx.recv() {
                while p < c {
                    if primes.send(p).is_err() || out.send(p).is_err() {
                        return;
                    }
                    p = candidates.recv().unwrap();
                }
                if p == c {
                    p = candidates.recv().unwrap();
                }
            }
        });
        rx
    }

    #[test]
    fn main() {
        run(|| {
            let primes = sieve();
            let a = [
                2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101,
                103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167, 173, 179, 181, 191, 193, 197, 199,
                211, 223, 227, 229, 233, 239, 241, 251, 257, 263, 269, 271, 277, 281, 283, 293, 307, 311, 313, 317,
                331, 337, 347, 349, 353, 359, 367, 373, 379, 383, 389, 397, 401, 409, 419, 421, 431, 433, 439, 443,
                449, 457, 461, 463, 467, 479, 487, 491, 499, 503, 509, 521, 523, 541, 547, 557, 563, 569, 571, 577,
                587, 593, 599, 601, 607, 613, 617, 619, 631, 641, 643, 647, 653, 659, 661, 673, 677, 683, 691, 701,
                709, 719, 727, 733, 739, 743, 751, 757, 761, 769, 773, 787, 797, 809, 811, 821, 823, 827, 829, 839,
                853, 857, 859, 863, 877, 881, 883, 887, 907, 911, 919, 929, 937, 941, 947, 953, 967, 971, 977, 983,
                991, 997,
            ];
            for want in a {
                assert_eq!(must_recv(&primes), Some(want));
            }
        });
    }
}

/// <https://github.com/golang/go/blob/master/test/chan/select.go>: every arm's value is
/// evaluated even when another arm is chosen, a chosen arm's channel can be turned off by
/// making it nil, and `default` ends the loop.
mod select {
    use super::*;
    use std::cell::Cell;

    fn send(counter: &Cell<u32>, shift: &Cell<u32>, mut a: Sender<u32>, mut b: Sender<u32>) -> u32 {
        let get_value = || {
            counter.set(counter.get() + 1);
            1 << shift.get()
        };
        let mut i = 0;
        loop {
            gort::select! {
                a.send(get_value()) => {
                    i += 1;
                    a = chan::nil().0;
                },
                b.send(get_value()) => {
                    i += 1;
                    b = chan::nil().0;
                },
                default => break,
            }
            shift.set(shift.get() + 1);
        }
        i
    }

    #[test]
    fn main() {
        run(|| {
            let (counter, shift) = (Cell::new(0), Cell::new(0));
            let (a, ar) = chan::chan(1);
            let (b, br) = chan::chan(1);
            assert_eq!(send(&counter, &shift, a.clone(), b.clone()), 2);
            let (av, bv) = (ar.recv().unwrap(), br.recv().unwrap());
            assert_eq!(av | bv, 3, "bad values {av} {bv}");
            assert_eq!(send(&counter, &shift, a.clone(), chan::nil().0), 1);
            assert_eq!(counter.get(), 10);
        });
    }
}

/// <https://github.com/golang/go/blob/master/test/chan/select2.go> is in `go_chan_select2.rs`:
/// it measures the heap, so it needs a process of its own.
///
/// <https://github.com/golang/go/blob/master/test/chan/select3.go>: which operations and
/// selects block (nil channels, closed channels, empty selects, defaults, a select that sees
/// itself) and which complete.
mod select3 {
    use super::*;
    use chan::{RecvTimeoutError, SendError};

    #[derive(PartialEq, Debug, Clone, Copy)]
    enum Signal {
        Always,
        Never,
    }
    use Signal::*;

    /// How long a goroutine that must block is watched before we call it blocked.
    const BLOCKED: Duration = Duration::from_millis(100);

    /// Runs `f` in a goroutine and checks that it blocks (`Always`) or returns (`Never`). A
    /// goroutine that blocks forever stays parked, as in Go.
    fn test_block(signal: Signal, f: impl FnOnce() + Send + 'static) {
        let (tx, rx) = chan::chan(0);
        go!(move || {
            f();
            let _ = tx.send(());
        });
        let wait = if signal == Always { BLOCKED } else { PATIENCE };
        match rx.recv_timeout(wait) {
            Ok(()) => assert_eq!(signal, Never, "function did not block"),
            Err(RecvTimeoutError::Timeout) => assert_eq!(signal, Always, "function blocked"),
            Err(RecvTimeoutError::Closed) => panic!("goroutine panicked"),
        }
    }

    fn unreachable() {
        panic!("control flow shouldn't reach here");
    }

    #[test]
    fn main() {
        run(|| {
            let closed = || {
                let (tx, rx) = chan::chan::<i32>(0);
                tx.close();
                (tx, rx)
            };

            // Sending/receiving on a nil channel blocks.
            test_block(Always, || {
                let _ = chan::nil::<i32>().0.send(7);
            });
            test_block(Always, || {
                let _ = chan::nil::<i32>().1.recv();
            });

            // A nil channel in a select is never selected.
            let (ntx, nrx) = chan::nil::<i32>();
            gort::select! {
                ntx.send(7) => unreachable(),
                default => {},
            }
            gort::select! {
                _ = nrx.recv() => unreachable(),
                default => {},
            }

            // Sending to a buffered channel with room never blocks.
            test_block(Never, || {
                let (tx, _rx) = chan::chan(1);
                tx.send(7).unwrap();
            });

            // Receiving from a closed channel never blocks, and yields "zero, !ok".
            let (ctx, crx) = closed();
            test_block(Never, move || {
                for _ in 0..10 {
                    assert_eq!(crx.recv(), None);
                }
            });

            // Sending to a closed channel fails (Go panics).
            assert_eq!(ctx.send(7), Err(SendError(7)));

            // Receiving from a non-ready channel blocks.
            test_block(Always, || {
                let (_tx, rx) = chan::chan::<i32>(0);
                rx.recv();
            });

            // Empty selects block.
            test_block(Always, || gort::select! {});

            // Selects with only nil channels block.
            test_block(Always, || {
                let rx = chan::nil::<i32>().1;
                gort::select! { _ = rx.recv() => unreachable() }
            });
            test_block(Always, || {
                let tx = chan::nil::<i32>().0;
                gort::select! { tx.send(7) => unreachable() }
            });
            test_block(Always, || {
                let (tx, rx) = chan::nil::<i32>();
                gort::select! {
                    _ = rx.recv() => unreachable(),
                    tx.send(7) => unreachable(),
                }
            });

            // Selects with non-ready, non-nil channels block.
            test_block(Always, || {
                let (_tx, rx) = chan::chan::<i32>(0);
                gort::select! { _ = rx.recv() => unreachable() }
            });

            // Selects with a default case do not block.
            test_block(Never, || gort::select! { default => {} });
            test_block(Never, || {
                let rx = chan::nil::<i32>().1;
                gort::select! {
                    _ = rx.recv() => unreachable(),
                    default => {},
                }
            });
            test_block(Never, || {
                let tx = chan::nil::<i32>().0;
                gort::select! {
                    tx.send(7) => unreachable(),
                    default => {},
                }
            });

            // Selects with ready channels do not block.
            test_block(Never, || {
                let (tx, _rx) = chan::chan(1);
                gort::select! {
                    tx.send(7) => {},
                    default => unreachable(),
                }
            });
            test_block(Never, || {
                let (tx, rx) = chan::chan(1);
                tx.send(7).unwrap();
                gort::select! {
                    v = rx.recv() => assert_eq!(v, Some(7)),
                    default => unreachable(),
                }
            });

            // Selects with closed channels behave like the plain operations.
            let (ctx, crx) = closed();
            test_block(Never, move || gort::select! { v = crx.recv() => assert_eq!(v, None) });
            let r = gort::select! { r = ctx.send(7) => r };
            assert_eq!(r, Err(SendError(7)));

            // A select must not get confused when it sees itself.
            test_block(Always, || {
                let (tx, rx) = chan::chan::<i32>(0);
                gort::select! {
                    tx.send(1) => unreachable(),
                    _ = rx.recv() => unreachable(),
                }
            });
        });
    }
}

/// Cases in the spirit of <https://github.com/golang/go/blob/master/test/chan/select5.go>,
/// which generates every combination of operation (send/receive), channel state and
/// `default`/blocking select and checks which arm runs. Here the combinations are enumerated
/// by loops instead of generated source.
mod select5 {
    use super::*;

    #[derive(Clone, Copy, Debug)]
    enum State {
        /// A nil channel: never ready.
        Nil,
        /// Closed: receives get `None`, sends fail; always ready.
        Closed,
        /// Buffered with one value (recv ready) and one free slot (send ready).
        Buffered,
        /// Unbuffered with a peer goroutine blocked on the opposite operation.
        Peer,
        /// Unbuffered with nobody on the other side.
        Idle,
    }

    /// Sets up a channel in `state` (for a `send` arm if `send`) and returns its ends plus a
    /// receiver that reports what the peer goroutine got, if there is one.
    fn setup(state: State, send: bool) -> (Sender<i32>, Receiver<i32>, Option<Receiver<Option<i32>>>) {
        match state {
            State::Nil => {
                let (t, r) = chan::nil();
                (t, r, None)
            }
            State::Closed => {
                let (t, r) = chan::chan(0);
                t.close();
                (t, r, None)
            }
            State::Buffered => {
                let (t, r) = chan::chan(2);
                t.send(1).unwrap();
                (t, r, None)
            }
            State::Peer => {
                let (t, r) = chan::chan(0);
                let (rep_tx, rep) = chan::chan(1);
                let (t2, r2) = (t.clone(), r.clone());
                let h = if send {
                    go!(move || rep_tx.send(r2.recv()).unwrap())
                } else {
                    go!(move || {
                        t2.send(1).unwrap();
                        rep_tx.send(None).unwrap();
                    })
                };
                // Let the peer block on the channel.
                wait_state(h.id(), if send { "chan receive" } else { "chan send" });
                (t, r, Some(rep))
            }
            State::Idle => {
                let (t, r) = chan::chan(0);
                (t, r, None)
            }
        }
    }

    fn ready(state: State) -> bool {
        matches!(state, State::Closed | State::Buffered | State::Peer)
    }

    #[test]
    fn one_arm() {
        run(|| {
            for state in [State::Nil, State::Closed, State::Buffered, State::Peer, State::Idle] {
                for send in [false, true] {
                    // Select with default: the arm runs iff ready.
                    let (t, r, peer) = setup(state, send);
                    let took = if send {
                        gort::select! {
                            res = t.send(7) => Some(res.is_ok()),
                            default => None,
                        }
                    } else {
                        gort::select! {
                            v = r.recv() => Some(v.is_some()),
                            default => None,
                        }
                    };
                    assert_eq!(took.is_some(), ready(state), "{state:?} send={send} with default");
                    if let Some(ok) = took {
                        assert_eq!(ok, !matches!(state, State::Closed), "{state:?} send={send}");
                    }
                    if let Some(peer) = peer {
                        let got = must_recv(&peer).unwrap();
                        if send {
                            assert_eq!(got, Some(7));
                        }
                    }
                }
            }
        });
    }

    #[test]
    fn two_arms_blocking() {
        run(|| {
            // A blocking select with a never-ready arm (nil/idle) and a second arm in every
            // state: it completes iff the second arm is ready or becomes ready.
            for state in [State::Closed, State::Buffered, State::Peer] {
                for send in [false, true] {
                    let (idle_tx, idle_rx) = chan::chan::<i32>(0);
                    let (t, r, peer) = setup(state, send);
                    let arm = if send {
                        gort::select! {
                            _ = idle_rx.recv() => 0,
                            idle_tx.send(0) => 0,
                            t.send(7) => 1,
                        }
                    } else {
                        gort::select! {
                            _ = idle_rx.recv() => 0,
                            _ = r.recv() => 1,
                            idle_tx.send(0) => 0,
                        }
                    };
                    assert_eq!(arm, 1, "{state:?} send={send}");
                    if let Some(peer) = peer {
                        must_recv(&peer);
                    }
                }
            }
            // Blocking, then woken by a later sender/receiver/close.
            for wake in 0..3 {
                let (t, r) = chan::chan::<i32>(0);
                let (t2, r2) = (t.clone(), r.clone());
                let me = gort::runtime::current_id().unwrap();
                go!(move || {
                    wait_state(me, "select");
                    match wake {
                        0 => t2.send(5).unwrap(),
                        1 => assert_eq!(r2.recv(), Some(6)),
                        _ => {
                            t2.close();
                        }
                    }
                });
                let (nt, nr) = chan::nil::<i32>();
                let got = gort::select! {
                    v = r.recv() => v,
                    _ = nr.recv() => unreachable!(),
                    nt.send(1) => unreachable!(),
                    // On close both arms are ready: the receive gets None, the send fails.
                    res = t.send(6) => res.ok().map(|()| 6),
                };
                match wake {
                    0 => assert_eq!(got, Some(5)),
                    1 => assert_eq!(got, Some(6)),
                    _ => assert_eq!(got, None),
                }
            }
        });
    }
}

/// <https://github.com/golang/go/blob/master/test/chan/select6.go>: a select
/// woken on one channel must unlink its waiter from the other, or a later sender on that
/// other channel hands its value to a goroutine that is no longer listening.
mod select6 {
    use super::*;

    #[test]
    fn main() {
        run(|| {
            let (c1t, c1) = chan::chan::<bool>(0);
            let (c2t, c2) = chan::chan::<bool>(0);
            let (c3t, c3) = chan::chan::<bool>(0);
            let r = c1.clone();
            go!(move || {
                r.recv();
            });
            let r = c1.clone();
            go!(move || {
                gort::select! {
                    _ = r.recv() => panic!("dummy"),
                    _ = c2.recv() => c3t.send(true).unwrap(),
                }
                r.recv();
            });
            go!(move || c2t.send(true).unwrap());
            must_recv(&c3);
            c1t.send_timeout(true, PATIENCE).unwrap();
            c1t.send_timeout(true, PATIENCE).unwrap();
        });
    }
}

/// <https://github.com/golang/go/blob/master/test/chan/select7.go>: a plain send, a one-arm
/// select send and a two-arm select send, each against a plain receive, a one-arm select
/// receive and a two-arm select receive (all nine pairs).
mod select7 {
    use super::*;

    fn recv1(c: Receiver<i32>) {
        c.recv();
    }
    fn recv2(c: Receiver<i32>) {
        gort::select! { _ = c.recv() => {} }
    }
    fn recv3(c: Receiver<i32>) {
        let (_t2, c2) = chan::chan::<i32>(0);
        gort::select! {
            _ = c.recv() => {},
            _ = c2.recv() => {},
        }
    }

    fn send1(recv: fn(Receiver<i32>)) {
        let (c, r) = chan::chan(0);
        go!(recv(r));
        gort::runtime::yield_now();
        c.send_timeout(1, PATIENCE).unwrap();
    }
    fn send2(recv: fn(Receiver<i32>)) {
        let (c, r) = chan::chan(0);
        go!(recv(r));
        gort::runtime::yield_now();
        gort::select! { c.send(1) => {} }
    }
    fn send3(recv: fn(Receiver<i32>)) {
        let (c, r) = chan::chan(0);
        go!(recv(r));
        gort::runtime::yield_now();
        let (c2, _r2) = chan::chan(0);
        gort::select! {
            c.send(1) => {},
            c2.send(1) => {},
        }
    }

    #[test]
    fn main() {
        run(|| {
            for send in [send1, send2, send3] {
                for recv in [recv1, recv2, recv3] {
                    send(recv);
                }
            }
        });
    }
}

/// <https://github.com/golang/go/blob/master/test/chan/doubleselect.go>: a select sending on
/// four channels, each drained by a goroutine that forwards to one channel; no value may be
/// delivered twice (a select woken twice would).
mod doubleselect {
    use super::*;
    use std::collections::HashSet;

    const ITERATIONS: i32 = 100_000;

    fn sender(n: i32, c1: Sender<i32>, c2: Sender<i32>, c3: Sender<i32>, c4: Sender<i32>) {
        for i in 0..n {
            gort::select! {
                c1.send(i) => {},
                c2.send(i) => {},
                c3.send(i) => {},
                c4.send(i) => {},
            }
        }
        // Dropping the senders closes the four channels.
    }

    /// Forwards everything from `input` to `out`, then signals `done`.
    fn mux(out: Sender<i32>, input: Receiver<i32>, done: Sender<bool>) {
        for v in input {
            out.send(v).unwrap();
        }
        done.send(true).unwrap();
    }

    fn recver(input: Receiver<i32>) -> usize {
        let mut seen = HashSet::new();
        for v in input {
            assert!(seen.insert(v), "got duplicate value for {v}");
        }
        seen.len()
    }

    #[test]
    fn main() {
        run(|| {
            let (t1, r1) = chan::chan(0);
            let (t2, r2) = chan::chan(0);
            let (t3, r3) = chan::chan(0);
            let (t4, r4) = chan::chan(0);
            let (done, done_rx) = chan::chan(0);
            let (cmux, cmux_rx) = chan::chan(0);
            go!(sender(ITERATIONS, t1, t2, t3, t4));
            go!(mux(cmux.clone(), r1, done.clone()));
            go!(mux(cmux.clone(), r2, done.clone()));
            go!(mux(cmux.clone(), r3, done.clone()));
            go!(mux(cmux.clone(), r4, done));
            go!(move || {
                for _ in 0..4 {
                    done_rx.recv().unwrap();
                }
                cmux.close();
            });
            assert_eq!(recver(cmux_rx), ITERATIONS as usize);
        });
    }
}

/// <https://github.com/golang/go/blob/master/test/chan/fifo.go>: buffered channels are FIFO,
/// and so is a chain of goroutines each waiting for its turn on one unbuffered channel.
mod fifo {
    use super::*;

    const N: i32 = 10;

    #[test]
    fn asynch_fifo() {
        run(|| {
            let (tx, rx) = chan::chan(N as usize);
            for i in 0..N {
                tx.send(i).unwrap();
            }
            for i in 0..N {
                assert_eq!(rx.recv(), Some(i), "bad receive");
            }
        });
    }

    fn chain(ch: Receiver<i32>, val: i32, input: Receiver<i32>, out: Sender<i32>) {
        input.recv();
        assert_eq!(ch.recv(), Some(val));
        out.send(1).unwrap();
    }

    #[test]
    fn synch_fifo() {
        run(|| {
            let (ch_tx, ch) = chan::chan(0);
            let (start, mut input) = chan::chan(0);
            for i in 0..N {
                let (out_tx, out) = chan::chan(0);
                go!(chain(ch.clone(), i, input, out_tx));
                input = out;
            }
            start.send(0).unwrap();
            for i in 0..N {
                ch_tx.send(i).unwrap();
            }
            must_recv(&input);
        });
    }
}

/// <https://github.com/golang/go/blob/master/test/chan/goroutines.go>: a chain of 10,000
/// goroutines, each passing one value from its right neighbour to its left.
mod goroutines {
    use super::*;

    fn f(left: Sender<i32>, right: Receiver<i32>) {
        left.send(right.recv().unwrap()).unwrap();
    }

    #[test]
    fn main() {
        run(|| {
            let n = 10_000;
            let (mut left, leftmost) = chan::chan(0);
            for _ in 0..n {
                let (right_tx, right) = chan::chan(0);
                go!(f(left, right));
                left = right_tx;
            }
            go!(move || left.send(1).unwrap());
            assert_eq!(must_recv(&leftmost), Some(1));
        });
    }
}

/// <https://github.com/golang/go/blob/master/test/chan/nonblock.go>: non-blocking sends and
/// receives (`select` with `default`) on unbuffered and 1-buffered channels of several types
/// succeed once the other side is there, and never before.
mod nonblock {
    use super::*;

    /// How many polls before giving up (each sleeps ~0.1 ms).
    const MAX_TRIES: usize = 20_000;

    fn pause() {
        gort::time::sleep(Duration::from_micros(100));
        gort::runtime::yield_now();
    }

    fn receiver<T: PartialEq + std::fmt::Debug>(c: Receiver<T>, want: T, strobe: Sender<bool>) {
        assert_eq!(c.recv(), Some(want));
        strobe.send(true).unwrap();
    }

    fn sender<T>(c: Sender<T>, v: T, strobe: Sender<bool>) {
        c.send(v).ok().unwrap();
        strobe.send(true).unwrap();
    }

    fn check<T: PartialEq + Clone + Send + std::fmt::Debug + 'static>(buffer: usize, v1: T, v2: T) {
        let (sync_tx, sync) = chan::chan::<bool>(0);
        let (c_tx, c_rx) = chan::chan::<T>(buffer);

        gort::select! {
            _ = c_rx.recv() => panic!("blocked sender"),
            default => {},
        }

        go!(receiver(c_rx.clone(), v1.clone(), sync_tx.clone()));
        let mut tries = 0;
        loop {
            gort::select! {
                c_tx.send(v1.clone()) => break,
                default => {
                    tries += 1;
                    assert!(tries <= MAX_TRIES, "receiver buffer={buffer}");
                    pause();
                },
            }
        }
        must_recv(&sync);

        go!(sender(c_tx.clone(), v2.clone(), sync_tx.clone()));
        if buffer > 0 {
            must_recv(&sync);
        }
        let mut tries = 0;
        loop {
            gort::select! {
                v = c_rx.recv() => {
                    assert_eq!(v, Some(v2.clone()), "sender value");
                    break;
                },
                default => {
                    tries += 1;
                    assert!(tries <= MAX_TRIES, "sender buffer={buffer}");
                    pause();
                },
            }
        }
        if buffer == 0 {
            must_recv(&sync);
        }
    }

    #[test]
    fn main() {
        run(|| {
            for buffer in 0..2 {
                check::<i32>(buffer, 123, 234);
                check::<i64>(buffer, 123_456, 234_567);
                check::<bool>(buffer, true, true);
                check::<String>(buffer, "hello".into(), "hello again".into());
            }
        });
    }
}

/// <https://github.com/golang/go/blob/master/test/chan/zerosize.go>: channels of zero-sized
/// values (`chan struct{}`, `chan [0]byte`) work, buffered and not.
mod zerosize {
    use super::*;

    #[test]
    fn main() {
        run(|| {
            let (t, r) = chan::chan::<()>(0);
            go!(move || t.send(()).unwrap());
            assert_eq!(must_recv(&r), Some(()));

            let (t, r) = chan::chan::<[u8; 0]>(5);
            for _ in 0..5 {
                t.send([]).unwrap();
            }
            assert_eq!(t.len(), 5);
            t.close();
            assert_eq!(r.iter().count(), 5);
        });
    }
}

/// <https://github.com/golang/go/blob/master/test/chan/sendstmt.go>: a send whose channel is
/// itself received from a channel (`<-cc <- 2` in a select), and a send of a computed value.
mod sendstmt {
    use super::*;

    #[test]
    fn chanchan() {
        run(|| {
            let (cc_tx, cc) = chan::chan::<Sender<i32>>(1);
            let (c_tx, c) = chan::chan::<i32>(1);
            cc_tx.send(c_tx).unwrap();
            gort::select! {
                cc.recv().unwrap().send(2) => {},
                default => panic!("nonblock"),
            }
            assert_eq!(c.recv(), Some(2), "bad receive");
        });
    }

    #[test]
    #[allow(clippy::nonminimal_bool)]
    fn sendprec() {
        run(|| {
            let (t, r) = chan::chan::<bool>(1);
            t.send(false || true).unwrap();
            assert_eq!(r.recv(), Some(true), "sent false");
        });
    }
}

/// <https://github.com/golang/go/blob/master/test/chan/perm.go> checks at compile time that a
/// send-only channel cannot receive and a receive-only one cannot send. In gort the directions
/// are the types [`Sender`] and [`Receiver`]; the `compile_fail` doctests on `gort_runtime::chan`
/// prove the missing methods. Here: the halves are what Go's conversions allow (both may be
/// cloned and moved between goroutines).
mod perm {
    use super::*;

    fn assert_send_clone<T: Send + Clone + 'static>() {}

    #[test]
    fn halves() {
        assert_send_clone::<Sender<i32>>();
        assert_send_clone::<Receiver<i32>>();
        run(|| {
            let (t, r) = chan::chan::<i32>(1);
            let t2 = t.clone();
            let r2 = r.clone();
            assert!(t.same_channel(&t2) && r.same_channel(&r2));
            t2.send(1).unwrap();
            assert_eq!(r.recv(), Some(1));
        });
    }
}
