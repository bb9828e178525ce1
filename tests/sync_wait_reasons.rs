//! Every wait reason gort documents, spelled exactly as Go spells it, observed through
//! `gort::runtime::goroutines()` while the goroutines are blocked: channels, select, sleep and every
//! `gort::sync` primitive.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{go, run, wait_state, PATIENCE};
use gort::chan;
use gort::runtime::{GoroutineInfo, WaitReason};
use gort::sync::{Cond, Mutex, RwLock, Semaphore, WaitGroup};

/// Checks the snapshot agrees with itself: the enum spells the same string.
fn check(g: &GoroutineInfo, reason: &str) {
    let r = g.wait_reason.expect("a waiting goroutine has a wait reason");
    assert_eq!(r.as_str(), reason);
    assert_eq!(r.to_string(), reason);
}

#[test]
fn channel_and_select_reasons() {
    run(|| {
        let (tx, rx) = chan::chan::<u8>(0);
        let r = rx.clone();
        let recv = go!(move || r.recv());
        check(&wait_state(recv.id(), "chan receive"), "chan receive");
        tx.send(1).unwrap();
        assert_eq!(recv.join().unwrap(), Some(1));

        let t = tx.clone();
        let send = go!(move || t.send(2));
        check(&wait_state(send.id(), "chan send"), "chan send");
        assert_eq!(rx.recv(), Some(2));
        send.join().unwrap().unwrap();

        // Timed operations show the same reasons.
        let r = rx.clone();
        let timed = go!(move || r.recv_timeout(PATIENCE));
        check(&wait_state(timed.id(), "chan receive"), "chan receive");
        tx.send(3).unwrap();
        assert_eq!(timed.join().unwrap(), Ok(3));

        let (r, t) = (rx.clone(), tx.clone());
        let sel = go!(move || {
            gort::select! {
                v = r.recv() => v,
                t.send(9) => None,
            }
        });
        check(&wait_state(sel.id(), "select"), "select");
        assert_eq!(rx.recv(), Some(9));
        assert_eq!(sel.join().unwrap(), None);

        // Blocked forever: left parked, as Go leaves them.
        let nil_recv = go!(|| chan::nil::<u8>().1.recv());
        check(&wait_state(nil_recv.id(), "chan receive (nil chan)"), "chan receive (nil chan)");
        let nil_send = go!(|| chan::nil::<u8>().0.send(1));
        check(&wait_state(nil_send.id(), "chan send (nil chan)"), "chan send (nil chan)");
        let empty = go!(|| gort::select! {});
        let g = wait_state(empty.id(), "select (no cases)");
        check(&g, "select (no cases)");
        assert_eq!(g.wait_reason, Some(WaitReason::SelectNoCases));

        let sleeper = go!(|| gort::time::sleep(Duration::from_millis(300)));
        check(&wait_state(sleeper.id(), "sleep"), "sleep");
        sleeper.join().unwrap();
    });
}

#[test]
fn sync_reasons() {
    run(|| {
        // sync.Mutex.Lock
        let m = Arc::new(Mutex::new(()));
        let g = m.lock();
        let m2 = m.clone();
        let h = go!(move || drop(m2.lock()));
        let info = wait_state(h.id(), "sync.Mutex.Lock");
        check(&info, "sync.Mutex.Lock");
        drop(g);
        h.join().unwrap();

        // sync.RWMutex.Lock (writer waiting for a reader) and sync.RWMutex.RLock (reader behind
        // the waiting writer).
        let l = Arc::new(RwLock::new(()));
        let r = l.read();
        let l2 = l.clone();
        let w = go!(move || drop(l2.write()));
        check(&wait_state(w.id(), "sync.RWMutex.Lock"), "sync.RWMutex.Lock");
        let l3 = l.clone();
        let rd = go!(move || drop(l3.read()));
        check(&wait_state(rd.id(), "sync.RWMutex.RLock"), "sync.RWMutex.RLock");
        drop(r);
        w.join().unwrap();
        rd.join().unwrap();

        // A second writer queued on the writers' mutex also shows sync.RWMutex.Lock.
        let wg1 = l.write();
        let l4 = l.clone();
        let w2 = go!(move || drop(l4.write()));
        check(&wait_state(w2.id(), "sync.RWMutex.Lock"), "sync.RWMutex.Lock");
        drop(wg1);
        w2.join().unwrap();

        // sync.Cond.Wait
        let state = Arc::new((Mutex::new(false), Cond::new()));
        let s2 = state.clone();
        let c = go!(move || {
            let (m, c) = &*s2;
            let mut g = m.lock();
            while !*g {
                g = c.wait(g);
            }
        });
        check(&wait_state(c.id(), "sync.Cond.Wait"), "sync.Cond.Wait");
        *state.0.lock() = true;
        state.1.broadcast();
        c.join().unwrap();

        // sync.WaitGroup.Wait
        let wg = Arc::new(WaitGroup::new());
        wg.add(1);
        let wg2 = wg.clone();
        let h = go!(move || wg2.wait());
        check(&wait_state(h.id(), "sync.WaitGroup.Wait"), "sync.WaitGroup.Wait");
        wg.done();
        h.join().unwrap();

        // semacquire
        let sem = Arc::new(Semaphore::new(1));
        sem.acquire(1);
        let s2 = sem.clone();
        let h = go!(move || {
            s2.acquire(1);
            s2.release(1);
        });
        check(&wait_state(h.id(), "semacquire"), "semacquire");
        sem.release(1);
        h.join().unwrap();
    });
}

/// The time a goroutine has been waiting shows in the snapshot and grows.
#[test]
fn waiting_time_grows() {
    run(|| {
        let (tx, rx) = chan::chan::<u8>(0);
        let h = go!(move || rx.recv());
        wait_state(h.id(), "chan receive");
        gort::time::sleep(Duration::from_millis(50));
        let g = wait_state(h.id(), "chan receive");
        assert!(g.waiting_ns >= 20_000_000, "waiting_ns = {}", g.waiting_ns);
        tx.send(1).unwrap();
        let id = h.id();
        h.join().unwrap();
        // No longer waiting: no reason.
        assert!(gort::runtime::goroutines().iter().all(|g| g.id != id || g.wait_reason.is_none()));
    });
}
