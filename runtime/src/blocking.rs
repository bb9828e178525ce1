//! `blocking`: running code that may block its OS thread without stalling other goroutines (Go's
//! `entersyscall`/`exitsyscall`; sysmon's side, the hand-off of a P left in a system call, is in
//! `sysmon.rs`).

use std::sync::atomic::Ordering;

use crate::g::{self, GRef, Yield, G};
use crate::m::current_m;
use crate::p::{P_SYSCALL, P_USER};
use crate::park::{enter, leave, suspend};
use crate::parksite::ParkStack;
use crate::sched::state::{started, Sched};
use crate::wall;

/// Runs `f`, which may block its OS thread (a file read, DNS, a `std` lock, a C call), without
/// stalling other goroutines: the goroutine is marked as in a system call and, if `f` lasts
/// longer than about 20 µs, sysmon hands its P to another M (Go's entersyscall/exitsyscall).
/// Afterwards the goroutine reacquires a P, or queues itself until one is free.
///
/// On a plain thread it just calls `f`.
pub fn blocking<F: FnOnce() -> R, R>(f: F) -> R {
    let m = match current_m() {
        Some(m) if !m.curg.load(Ordering::Relaxed).is_null() => m,
        _ => return f(),
    };
    let g = m.curg().expect("curg");
    let s = started();
    {
        let _e = enter();
    }
    struct Exit(&'static Sched, GRef, Option<ParkStack>);
    impl Drop for Exit {
        fn drop(&mut self) {
            wall::syscall_exit(self.1 .0, self.2.take());
            exitsyscall(self.0, self.1);
        }
    }
    let site = wall::syscall_enter(g.0);
    // entersyscall: the P goes from USER to SYSCALL; sysmon may take it from there.
    if let Some(p) = m.p.get() {
        p.syscalltick.store(p.syscalltick.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        // Release: pairs with sysmon's Acquire CAS when it retakes the P.
        if p.status.compare_exchange(P_USER | m.tag, P_SYSCALL | m.tag, Ordering::Release, Ordering::Relaxed).is_err() {
            m.p.set(None);
        }
    }
    g.0.status.store(g::SYSCALL, Ordering::Relaxed);
    s.nsyscall.fetch_add(1, Ordering::SeqCst);
    let _x = Exit(s, g, site);
    f()
}

fn exitsyscall(s: &'static Sched, g: GRef) {
    s.nsyscall.fetch_sub(1, Ordering::SeqCst);
    g.0.status.store(g::RUNNING, Ordering::Relaxed);
    let m = current_m().expect("exitsyscall on an M");
    if let Some(p) = m.p.get() {
        // Acquire: pairs with sysmon's Release when it gives up a P it did not take, and with
        // our own Release in entersyscall.
        if p.status.compare_exchange(P_SYSCALL | m.tag, P_USER | m.tag, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            return;
        }
        m.p.set(None);
    }
    // Lost the P: take an idle one, or queue ourselves (only if not unwinding).
    if let Some(p) = s.try_pidleget() {
        m.p.set(Some(p));
        p.curg.store(g.as_ptr() as *mut G, Ordering::Relaxed);
        leave();
        return;
    }
    if !std::thread::panicking() {
        suspend(g, Yield::NeedP);
        leave();
    }
}
