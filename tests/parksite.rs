//! The park-site cache: a parked goroutine's stack from the cache is exactly what walking it
//! gives, for goroutines parked at the same site on different stacks, at different depths of
//! the same function, and at different sites.

mod common;

use std::hint::black_box;

use gort::chan::{chan, Receiver};

/// Parks in a channel receive under `depth` frames of itself.
#[inline(never)]
fn nest(depth: u32, rx: &Receiver<()>) -> u32 {
    if depth == 0 {
        let _ = rx.recv();
        return 0;
    }
    black_box(nest(black_box(depth - 1), rx)) + 1
}

/// Another park site.
#[inline(never)]
fn other_site(rx: &Receiver<()>) {
    let _ = black_box(rx.recv());
}

#[test]
fn cached_stacks_are_the_walked_stacks() {
    gort::start().unwrap();
    let (tx, rx) = chan::<()>(0);
    let mut hs = Vec::new();
    for i in 0..40u32 {
        let rx = rx.clone();
        hs.push(
            common::spawn_with(gort::Builder::new(), move || {
                if i % 5 == 4 {
                    other_site(&rx);
                } else {
                    nest(i % 4, &rx);
                }
            })
            .unwrap(),
        );
    }
    common::wait_count("chan receive", 40);
    let mut distinct = std::collections::HashSet::new();
    let mut shared = std::collections::HashSet::new();
    for round in 0..3 {
        let mut checked = 0;
        gort::runtime::for_each_g(|g| {
            g.with_parked(|p| {
                if p.wait_reason() != Some(gort::runtime::WaitReason::ChanReceive) {
                    return;
                }
                let mut buf = [0usize; gort::runtime::unwind::MAX_DEPTH];
                let w = p.walk(&mut buf);
                let cached = gort::runtime::parksite::park_stack(p);
                assert_eq!(&cached[..], &buf[..w.len], "goroutine {} in round {round}", p.id());
                distinct.insert(cached.to_vec());
                shared.insert(cached.as_ptr() as usize);
                checked += 1;
            });
        });
        assert!(checked >= 40, "checked {checked} parked goroutines");
    }
    // Depths 0..4 of `nest` and `other_site` are five different stacks.
    assert!(distinct.len() >= 5, "{} distinct stacks", distinct.len());
    // Goroutines parked at one site on different stacks share one cached walk.
    assert_eq!(shared.len(), distinct.len(), "walks cached per site");
    drop(tx);
    for h in hs {
        h.join().unwrap();
    }
}
