//! `select!`: fairness, the same channel in several arms, `default`, blocking, `select! {}`,
//! many arms, plain threads, and timeouts with `after`/`tick`.

mod common;

use std::time::{Duration, Instant};

use common::{go, run, wait_state, PATIENCE};
use gort::chan::{self, Receiver};
use gort::time::{after, tick};

/// Two always-ready arms, 10,000 selects: each must win between 40% and 60% of the time. A
/// uniform choice is within 1% of 50% with overwhelming probability (sd = 0.5%: the bound is
/// 20 sd away), so this cannot flake; a biased poll order (always the first arm) fails it.
#[test]
fn random_choice_between_two_ready_arms() {
    run(|| {
        const N: usize = 10_000;
        let (a_tx, a) = chan::chan::<u8>(1);
        let (b_tx, b) = chan::chan::<u8>(1);
        let mut wins = [0usize; 2];
        for _ in 0..N {
            a_tx.try_send(0).ok();
            b_tx.try_send(1).ok();
            let i = gort::select! {
                v = a.recv() => v.unwrap(),
                v = b.recv() => v.unwrap(),
            };
            wins[i as usize] += 1;
        }
        for w in wins {
            assert!((N * 40 / 100..=N * 60 / 100).contains(&w), "unfair: {wins:?}");
        }
    });
}

/// Four ready arms of different kinds (buffered receive, closed receive, buffered send,
/// closed send): each wins 25% +- 5% of 10,000 selects (sd 0.43%: > 10 sd).
#[test]
fn random_choice_among_four_kinds_of_ready_arm() {
    run(|| {
        const N: usize = 10_000;
        let (full_tx, full) = chan::chan::<u8>(1);
        let (closed_tx, closed) = chan::chan::<u8>(0);
        closed_tx.close();
        let (room, room_rx) = chan::chan::<u8>(1);
        let mut wins = [0usize; 4];
        for _ in 0..N {
            full_tx.try_send(0).ok();
            room_rx.try_recv().ok();
            let i = gort::select! {
                _ = full.recv() => 0,
                _ = closed.recv() => 1,
                room.send(0) => 2,
                _ = closed_tx.send(0) => 3,
            };
            wins[i] += 1;
        }
        for w in wins {
            assert!((N * 20 / 100..=N * 30 / 100).contains(&w), "unfair: {wins:?}");
        }
    });
}

#[test]
fn default_when_nothing_ready() {
    run(|| {
        let (tx, rx) = chan::chan::<u8>(0);
        let arm = gort::select! {
            _ = rx.recv() => 0,
            tx.send(1) => 1,
            default => 2,
        };
        assert_eq!(arm, 2);
        // A ready arm beats default.
        let (tx, rx) = chan::chan::<u8>(1);
        tx.send(3).unwrap();
        let v = gort::select! {
            v = rx.recv() => v,
            default => None,
        };
        assert_eq!(v, Some(3));
    });
}

/// The same channel in two receive arms: each value completes exactly one arm, and over many
/// rounds both arms win.
#[test]
fn same_channel_in_several_arms() {
    run(|| {
        let (tx, rx) = chan::chan::<u32>(0);
        let h = go!(move || {
            for i in 0..2000 {
                tx.send(i).unwrap();
            }
        });
        let mut wins = [0usize; 3];
        for i in 0..2000 {
            let (arm, v) = gort::select! {
                v = rx.recv() => (0, v),
                v = rx.recv() => (1, v),
                v = rx.recv() => (2, v),
            };
            assert_eq!(v, Some(i));
            wins[arm] += 1;
        }
        assert!(wins.iter().all(|&w| w > 300), "some arm never/rarely won: {wins:?}");
        assert_eq!(rx.recv(), None);
        h.join().unwrap();
    });
}

/// A select that both sends to and receives from one channel never matches itself, and
/// completes with whichever peer shows up.
#[test]
fn send_and_receive_on_one_channel() {
    run(|| {
        for round in 0..200 {
            let (tx, rx) = chan::chan::<u32>(0);
            let (tx2, rx2) = (tx.clone(), rx.clone());
            let me = gort::runtime::current_id().unwrap();
            let peer = go!(move || {
                wait_state(me, "select");
                if round % 2 == 0 {
                    tx2.send(10).unwrap();
                    None
                } else {
                    rx2.recv()
                }
            });
            let got = gort::select! {
                v = rx.recv() => v,
                _ = tx.send(20) => Some(20),
            };
            let peer_got = peer.join().unwrap();
            if round % 2 == 0 {
                assert_eq!((got, peer_got), (Some(10), None));
            } else {
                assert_eq!((got, peer_got), (Some(20), Some(20)));
            }
        }
    });
}

/// Two goroutines ping-pong through selects with a decoy arm each: every wake-up must unlink
/// the decoy nodes (a stale node would swallow a later value).
#[test]
fn select_ping_pong_with_decoys() {
    run(|| {
        const N: u32 = 20_000;
        let (ping_tx, ping) = chan::chan::<u32>(0);
        let (pong_tx, pong) = chan::chan::<u32>(0);
        let (decoy_tx, decoy) = chan::chan::<u32>(0);
        let d2 = decoy.clone();
        let h = go!(move || {
            for _ in 0..N {
                let v = gort::select! {
                    v = ping.recv() => v.unwrap(),
                    _ = d2.recv() => unreachable!(),
                };
                gort::select! {
                    pong_tx.send(v + 1) => {},
                    _ = d2.recv() => unreachable!(),
                }
            }
        });
        for i in 0..N {
            gort::select! {
                ping_tx.send(i) => {},
                _ = decoy.recv() => unreachable!(),
            }
            let v = gort::select! {
                v = pong.recv() => v.unwrap(),
                _ = decoy.recv() => unreachable!(),
            };
            assert_eq!(v, i + 1);
        }
        h.join().unwrap();
        drop(decoy_tx);
    });
}

/// More arms than the inline index buffer (16): the heap path.
#[test]
fn many_arms() {
    run(|| {
        let chans: Vec<_> = (0..20).map(|_| chan::chan::<usize>(1)).collect();
        for k in 0..20 {
            chans[k].0.send(k).unwrap();
            let rxs: Vec<&Receiver<usize>> = chans.iter().map(|c| &c.1).collect();
            // A macro needs its arms spelled out; 20 of them.
            let got = gort::select! {
                v = rxs[0].recv() => v, v = rxs[1].recv() => v, v = rxs[2].recv() => v,
                v = rxs[3].recv() => v, v = rxs[4].recv() => v, v = rxs[5].recv() => v,
                v = rxs[6].recv() => v, v = rxs[7].recv() => v, v = rxs[8].recv() => v,
                v = rxs[9].recv() => v, v = rxs[10].recv() => v, v = rxs[11].recv() => v,
                v = rxs[12].recv() => v, v = rxs[13].recv() => v, v = rxs[14].recv() => v,
                v = rxs[15].recv() => v, v = rxs[16].recv() => v, v = rxs[17].recv() => v,
                v = rxs[18].recv() => v, v = rxs[19].recv() => v,
            };
            assert_eq!(got, Some(k));
        }
    });
}

/// Arm bodies are plain blocks of the enclosing function: `break`, `continue`, `return` work.
#[test]
fn control_flow_in_arms() {
    fn first_even(rx: &Receiver<u32>) -> Option<u32> {
        loop {
            gort::select! {
                v = rx.recv() => match v {
                    Some(v) if v % 2 == 0 => return Some(v),
                    Some(_) => continue,
                    None => break,
                },
            }
        }
        None
    }
    run(|| {
        let (tx, rx) = chan::chan::<u32>(8);
        for v in [1, 3, 4, 5] {
            tx.send(v).unwrap();
        }
        assert_eq!(first_even(&rx), Some(4));
        tx.close();
        assert_eq!(first_even(&rx), None);
    });
}

/// A blocking select parks with reason `select` (and nil-only selects too); `select! {}` parks
/// forever with `select (no cases)`. The parked goroutines are left behind, as in Go.
#[test]
fn select_wait_reasons() {
    run(|| {
        let (tx, rx) = chan::chan::<u8>(0);
        let h = go!(move || {
            gort::select! {
                v = rx.recv() => v,
                _ = gort::time::after(PATIENCE).recv() => None,
            }
        });
        wait_state(h.id(), "select");
        tx.send(1).unwrap();
        assert_eq!(h.join().unwrap(), Some(1));

        let forever = go!(|| gort::select! {});
        wait_state(forever.id(), "select (no cases)");
        let nil_only = go!(|| {
            let rx = chan::nil::<u8>().1;
            gort::select! { _ = rx.recv() => {} }
        });
        wait_state(nil_only.id(), "select");
    });
}

/// `select!` from a plain thread blocks the thread and is woken by a goroutine.
#[test]
fn select_on_a_plain_thread() {
    run(|| {
        let (tx, rx) = chan::chan::<u32>(0);
        let (tx2, rx2) = chan::chan::<u32>(0);
        let t = std::thread::spawn(move || {
            let mut sum = 0;
            for _ in 0..1000 {
                sum += gort::select! {
                    v = rx.recv() => v.unwrap(),
                    v = rx2.recv() => v.unwrap() * 1000,
                };
            }
            sum
        });
        for i in 0..1000u32 {
            if i % 2 == 0 {
                tx.send_timeout(1, PATIENCE).unwrap();
            } else {
                tx2.send_timeout(1, PATIENCE).unwrap();
            }
        }
        assert_eq!(gort::blocking(|| t.join().unwrap()), 500 + 500 * 1000);
    });
}

/// `after` as a select timeout: fires after (not before) its duration when nothing else is
/// ready, and loses to a ready value.
#[test]
fn after_as_timeout() {
    run(|| {
        let (_tx, rx) = chan::chan::<u8>(0);
        let t0 = Instant::now();
        let timed_out = gort::select! {
            _ = rx.recv() => false,
            _ = after(Duration::from_millis(30)).recv() => true,
        };
        assert!(timed_out);
        assert!(t0.elapsed() >= Duration::from_millis(30), "fired early: {:?}", t0.elapsed());

        let (tx, rx) = chan::chan::<u8>(1);
        tx.send(1).unwrap();
        let timed_out = gort::select! {
            _ = rx.recv() => false,
            _ = after(Duration::from_secs(10)).recv() => true,
        };
        assert!(!timed_out);

        // The value `after` delivers is the firing time, at least d after the call.
        let t0 = Instant::now();
        let at = after(Duration::from_millis(5)).recv_timeout(PATIENCE).unwrap();
        assert!(at >= t0 + Duration::from_millis(5));
    });
}

/// `tick` delivers repeatedly, spaced at least (about) its period apart on average, and keeps
/// one pending tick for a slow reader, dropping the rest as Go's ticker does rather than
/// delivering them late.
#[test]
fn tick_with_select() {
    run(|| {
        let ticker = tick(Duration::from_millis(5));
        let (_tx, quiet) = chan::chan::<u8>(0);
        let t0 = Instant::now();
        let mut n = 0;
        while n < 10 {
            gort::select! {
                _ = quiet.recv() => unreachable!(),
                t = ticker.recv() => {
                    assert!(t.is_some());
                    n += 1;
                },
                _ = after(PATIENCE).recv() => panic!("ticker stopped"),
            }
        }
        assert!(t0.elapsed() >= Duration::from_millis(45), "10 ticks of 5ms in {:?}", t0.elapsed());
        // A slow reader: after a pause of ten periods one tick waits (the ticker fires before
        // the longer sleep ends).
        gort::time::sleep(Duration::from_millis(50));
        assert!(ticker.try_recv().is_ok(), "no tick kept for a slow reader");
        // The nine missed ticks are gone. Ten periods hold ten tick times, and a tick due just
        // before or after the window can land in it too: at most 12, where a ticker that
        // delivered the missed ticks late would bring about 19.
        let window = after(Duration::from_millis(50));
        let mut late = 0;
        loop {
            gort::select! {
                t = ticker.recv() => {
                    assert!(t.is_some());
                    late += 1;
                },
                _ = window.recv() => break,
            }
        }
        assert!(late <= 12, "{late} ticks in ten periods after a pause: missed ticks were delivered late");
        drop(ticker); // stops the timer
    });
}

#[test]
#[should_panic(expected = "non-positive interval")]
fn tick_zero_panics() {
    let _ = tick(Duration::ZERO);
}

/// A closed channel in a loop of selects keeps being ready (receives `None`).
#[test]
fn closed_channel_always_ready() {
    run(|| {
        let (tx, rx) = chan::chan::<u8>(0);
        tx.close();
        let (_t2, idle) = chan::chan::<u8>(0);
        for _ in 0..100 {
            let v = gort::select! {
                v = rx.recv() => v,
                _ = idle.recv() => unreachable!(),
            };
            assert_eq!(v, None);
        }
    });
}
