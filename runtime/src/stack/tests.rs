//! Tests of the stack pool, guards and overflow checks.

use super::guard::*;
use super::pool::*;
use super::vm::*;
use super::*;
use std::ptr;

fn maps_lines() -> usize {
    std::fs::read_to_string("/proc/self/maps").unwrap().lines().count()
}

/// The /proc/self/maps line covering `addr`: (lo, hi, perms).
fn map_of(addr: usize) -> Option<(usize, usize, String)> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let mut it = line.split_whitespace();
        let range = it.next()?;
        let perms = it.next()?;
        let (a, b) = range.split_once('-')?;
        let (a, b) = (usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?);
        if a <= addr && addr < b {
            return Some((a, b, perms.to_string()));
        }
    }
    None
}

/// Whether a write to `addr` in a forked child kills it with SIGSEGV.
fn write_faults_in_child(addr: usize) -> bool {
    // SAFETY: the child only does a volatile store and _exit (async-signal-safe), nothing
    // that could need a lock another parent thread held at fork time.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: a deliberately faulting (or harmless) write, in the child only.
        unsafe {
            ptr::write_volatile(addr as *mut u8, 1);
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV
}

fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * page_size()
}

fn touch(s: &Stack, from: usize, to: usize) {
    let mut a = from;
    while a < to {
        // SAFETY: the tests only touch ranges of stacks they own (usable range or gap of an
        // unguarded stack, both mapped read-write).
        unsafe { ptr::write_volatile(a as *mut u8, 0xA5) };
        a += page_size();
    }
    let _ = s;
}

#[test]
fn sizes_are_rounded() {
    let p = StackPool::new(1, 0);
    assert_eq!(p.stack_size(), MIN_STACK_SIZE);
    let p = StackPool::new(100_000, 0);
    assert_eq!(p.stack_size(), 102_400);
    let s = p.get().unwrap();
    assert_eq!(s.size(), 102_400);
    assert_eq!(s.hi() - s.lo(), s.size());
    assert_eq!(s.lo() % page_size(), 0);
    assert_eq!(s.guard_range(), (s.lo() - GAP_SIZE, s.lo()));
    assert!(!s.is_dedicated());
    p.put(s).unwrap();
}

#[test]
fn get_put_reuse_is_lifo() {
    let p = StackPool::new(64 * 1024, 0);
    let a = p.get().unwrap();
    let b = p.get().unwrap();
    let c = p.get().unwrap();
    let (la, lb, lc) = (a.lo(), b.lo(), c.lo());
    assert!(la != lb && lb != lc && la != lc);
    p.put(a).unwrap();
    p.put(b).unwrap();
    p.put(c).unwrap();
    assert_eq!(p.get().unwrap().lo(), lc);
    assert_eq!(p.get().unwrap().lo(), lb);
    let a2 = p.get().unwrap();
    assert_eq!(a2.lo(), la);
    let st = p.stats();
    assert_eq!((st.total_stacks, st.free_stacks, st.slabs), (3, 0, 1));
    // The two stacks popped above were dropped, not put: leaked, still mapped.
    assert!(st.leaked >= 2);
    p.put(a2).unwrap();
    assert_eq!(p.stats().free_stacks, 1);
}

#[test]
fn batch_ops_and_stats() {
    let p = StackPool::new(32 * 1024, 3);
    let mut v = Vec::new();
    p.get_batch(300, &mut v).unwrap();
    assert_eq!(v.len(), 300);
    let st = p.stats();
    assert_eq!(st.total_stacks, 300);
    assert_eq!(st.slabs, 2, "256 slots per slab");
    assert_eq!(st.guarded_stacks, 3);
    assert_eq!(st.free_stacks, 0);
    assert_eq!(st.mapped_bytes, 2 * (GAP_SIZE + 256 * (32 * 1024 + GAP_SIZE)));
    assert_eq!(v.iter().filter(|s| s.is_guarded()).count(), 3);
    let mut los: Vec<usize> = v.iter().map(|s| s.lo()).collect();
    los.sort_unstable();
    los.dedup();
    assert_eq!(los.len(), 300);
    let last = v.last().unwrap().lo();
    p.put_batch(v.drain(..));
    assert!(v.is_empty());
    assert_eq!(p.stats().free_stacks, 300);
    // LIFO across batches: the last stack put is the first handed out.
    p.get_batch(10, &mut v).unwrap();
    assert_eq!(v[0].lo(), last);
    assert_eq!(p.stats().total_stacks, 300, "reused, not carved");
    p.put_batch(v.drain(..));
}

#[test]
fn whole_usable_range_is_writable() {
    for budget in [0, 1] {
        let p = StackPool::new(128 * 1024, budget);
        let s = p.get().unwrap();
        assert_eq!(s.is_guarded(), budget == 1);
        // SAFETY: [lo, hi) is the stack's mapped, read-write usable range, owned by `s`.
        let mem = unsafe { std::slice::from_raw_parts_mut(s.lo() as *mut u8, s.size()) };
        mem.fill(0x5A);
        assert!(mem.iter().all(|b| *b == 0x5A));
        // Filling the usable range does not touch the gap.
        assert_eq!(p.check_released(&s), Ok(()));
        p.put(s).unwrap();
    }
}

#[test]
fn guard_is_prot_none_and_unguarded_gap_is_not() {
    let p = StackPool::with_guard_kind(64 * 1024, 1, GuardKind::Mprotect);
    let g = p.get().unwrap();
    let u = p.get().unwrap();
    assert!(g.is_guarded() && !u.is_guarded());
    let (glo, ghi) = g.guard_range();
    let (a, b, perms) = map_of(glo).unwrap();
    // (The slab guard below slot 0 has the same protection: one VMA with it.)
    assert!(a <= glo, "{a:#x} {glo:#x}");
    assert_eq!((b, perms.as_str()), (ghi, "---p"));
    let (a, _, perms) = map_of(g.lo()).unwrap();
    assert_eq!((a, perms.as_str()), (g.lo(), "rw-p"));
    let (_, _, perms) = map_of(u.guard_range().0).unwrap();
    assert_eq!(perms, "rw-p");
    // Probe: writing into the guard in a forked child kills it with SIGSEGV.
    assert!(write_faults_in_child(ghi - 1));
    assert!(write_faults_in_child(glo));
    assert!(!write_faults_in_child(g.lo()));
    assert!(!write_faults_in_child(u.guard_range().1 - 1));
    p.put(g).unwrap();
    p.put(u).unwrap();
}

#[test]
fn light_guards_cost_no_vma() {
    if !light_guards_supported() {
        eprintln!("kernel without MADV_GUARD_INSTALL: skipped");
        return;
    }
    let p = StackPool::new(64 * 1024, 1000);
    let first = p.get().unwrap(); // maps the slab
    let before = maps_lines();
    let mut v = Vec::new();
    p.get_batch(200, &mut v).unwrap();
    assert!(v.iter().all(|s| s.is_guarded()));
    assert!(p.stats().light_guards);
    // No VMA split: the guard is part of the slab's rw mapping in /proc/self/maps ...
    let s = &v[100];
    let (glo, ghi) = s.guard_range();
    assert_eq!(map_of(glo).unwrap().2, "rw-p");
    assert!(maps_lines() <= before + 1, "{before} -> {}", maps_lines());
    // ... but any access faults.
    assert!(write_faults_in_child(ghi - 1));
    assert!(write_faults_in_child(glo));
    assert!(!write_faults_in_child(s.lo()));
    assert!(!write_faults_in_child(s.hi() - 1));
    // Guards survive scavenging (MADV_DONTNEED keeps guard markers).
    touch(s, s.lo(), s.hi());
    p.put_batch(v.drain(..));
    assert!(p.scavenge(0) > 0);
    let s = p.get().unwrap();
    assert!(write_faults_in_child(s.guard_range().1 - 1));
    // mincore reports guard pages as not resident: the release check stays clean.
    assert_eq!(p.check_released(&s), Ok(()));
    p.put(s).unwrap();
    p.put(first).unwrap();
}

#[test]
fn check_sp_bounds() {
    let p = StackPool::new(64 * 1024, 0);
    let s = p.get().unwrap();
    assert!(s.check_sp(s.hi()));
    assert!(s.check_sp(s.hi() - 64));
    assert!(s.check_sp(s.lo()));
    assert!(!s.check_sp(s.lo() - 8));
    assert!(!s.check_sp(s.guard_range().0));
    p.put(s).unwrap();
}

#[test]
fn check_released_detects_touched_gap() {
    let p = StackPool::new(64 * 1024, 0);
    let s = p.get().unwrap();
    assert!(!s.is_guarded());
    assert_eq!(p.check_released(&s), Ok(()));
    let (glo, ghi) = s.guard_range();
    touch(&s, ghi - 8, ghi); // top page of the gap: the first a small overflow hits
    assert_eq!(p.check_released(&s), Err(Overflowed { stack_size: 64 * 1024, touched_bytes: 4096 }));
    touch(&s, glo, glo + 1); // the bottom page as well: once the top page is resident, the
                             // whole gap is read
    let err = p.put(s).unwrap_err();
    assert_eq!(err.touched_bytes, 2 * page_size());
    assert!(err.to_string().contains("overflowed"));
    // Recycled with a clean gap.
    let s = p.get().unwrap();
    assert_eq!(s.guard_range().1, ghi);
    assert_eq!(p.check_released(&s), Ok(()));
    p.put(s).unwrap();
    // A read of the gap (a debugger's, say) faults in the zero page but is no overflow; the
    // gap is cleaned for the next user.
    let s = p.get().unwrap();
    // SAFETY: the unguarded gap is mapped read-write.
    let _ = unsafe { ptr::read_volatile((s.lo() - 1) as *const u8) };
    assert_eq!(resident_bytes(s.lo() - page_size(), page_size()), page_size());
    assert_eq!(p.check_released(&s), Ok(()));
    assert_eq!(resident_bytes(s.lo() - page_size(), page_size()), 0, "the read gap was cleaned");
    p.put(s).unwrap();
    // A write of zeros alone leaves no trace either (a stack probe that then returned).
    let s = p.get().unwrap();
    // SAFETY: as above.
    unsafe { ptr::write_volatile((s.lo() - 8) as *mut u64, 0) };
    assert_eq!(p.check_released(&s), Ok(()));
    p.put(s).unwrap();
}

#[test]
fn scavenge_releases_rss() {
    const N: usize = 64;
    let p = StackPool::new(256 * 1024, 0);
    let mut v = Vec::new();
    p.get_batch(N, &mut v).unwrap();
    for s in &v {
        touch(s, s.lo(), s.hi());
    }
    let los: Vec<usize> = v.iter().map(|s| s.lo()).collect();
    p.put_batch(v.drain(..));
    let before = rss_bytes();
    // Keep the 4 hottest (the last 4 put).
    let released = p.scavenge(4);
    let after = rss_bytes();
    assert_eq!(released, (N - 4) * 256 * 1024);
    assert!(before.saturating_sub(after) >= released / 2, "rss {before} -> {after}, released {released}");
    for (i, lo) in los.iter().enumerate() {
        let expect = if i < N - 4 { 0 } else { 256 * 1024 };
        assert_eq!(resident_bytes(*lo, 256 * 1024), expect, "stack {i}");
    }
    assert_eq!(p.stats().scavenged_stacks, N - 4);
    // Nothing new to do.
    assert_eq!(p.scavenge(4), 0);
    // Popping below the watermark lowers it; the rest get scavenged when asked.
    p.get_batch(N - 2, &mut v).unwrap();
    assert_eq!(p.stats().scavenged_stacks, 2);
    p.put_batch(v.drain(..));
    assert_eq!(p.scavenge(0), 4 * 256 * 1024);
    assert_eq!(p.stats().scavenged_stacks, N);
    // A scavenged stack reads as zeros and is fully usable.
    let s = p.get().unwrap();
    // SAFETY: usable range of a stack we own.
    assert_eq!(unsafe { ptr::read_volatile((s.hi() - 1) as *const u8) }, 0);
    touch(&s, s.lo(), s.hi());
    p.put(s).unwrap();
}

#[test]
fn hundred_thousand_unguarded_stacks_few_vmas() {
    const N: usize = 100_000;
    let p = StackPool::new(256 * 1024, 0);
    let maps_before = maps_lines();
    let mut v = Vec::with_capacity(N);
    for _ in 0..N {
        v.push(p.get().unwrap());
    }
    let maps_after = maps_lines();
    let st = p.stats();
    assert_eq!(st.total_stacks, N);
    assert_eq!(st.slabs, N.div_ceil(256));
    assert!(maps_after < maps_before + 1000, "maps {maps_before} -> {maps_after}");
    // Each stack is usable: touch its top page (what a parked goroutine costs).
    for s in v.iter().step_by(97) {
        touch(s, s.hi() - 8, s.hi());
    }
    for s in v.drain(..) {
        p.put(s).unwrap(); // includes the mincore gap check
    }
    assert_eq!(p.stats().free_stacks, N);
    for _ in 0..N {
        v.push(p.get().unwrap());
    }
    p.put_batch(v.drain(..));
    let s = p.get().unwrap();
    let lo = s.lo();
    p.put(s).unwrap();
    drop(p); // everything is back: the slabs are unmapped
    let mut vec = [0u8; 1];
    // SAFETY: mincore only inspects page tables.
    let r = unsafe { libc::mincore(lo as *mut libc::c_void, page_size(), vec.as_mut_ptr()) };
    assert_eq!(r, -1, "slab still mapped after the pool was dropped");
}

#[test]
fn guard_budget_is_respected() {
    let p = StackPool::new(16 * 1024, 5);
    let mut v = Vec::new();
    p.get_batch(8, &mut v).unwrap();
    let guarded: Vec<bool> = v.iter().map(|s| s.is_guarded()).collect();
    assert_eq!(guarded, [true, true, true, true, true, false, false, false]);
    p.put_batch(v.drain(..));
    // Reuse keeps each stack's guard state; no more guards are added.
    p.get_batch(8, &mut v).unwrap();
    assert_eq!(v.iter().filter(|s| s.is_guarded()).count(), 5);
    assert_eq!(p.stats().guarded_stacks, 5);
    p.put_batch(v.drain(..));
}

#[test]
fn dedicated_stacks_own_their_mapping() {
    let s = alloc_dedicated_with(100_000, GuardKind::Mprotect).unwrap();
    assert!(s.is_dedicated() && s.is_guarded());
    assert_eq!(s.size(), 102_400);
    let (glo, ghi) = s.guard_range();
    assert_eq!(map_of(glo).unwrap(), (glo, ghi, "---p".to_string()));
    drop(s);
    let s = alloc_dedicated(100_000).unwrap();
    assert!(s.is_dedicated() && s.is_guarded());
    assert!(write_faults_in_child(s.guard_range().1 - 1));
    touch(&s, s.lo(), s.hi());
    let lo = s.lo();
    drop(s);
    // Unmapped: mincore fails with ENOMEM on the old range.
    let mut vec = [0u8; 1];
    // SAFETY: mincore only inspects page tables.
    let r = unsafe { libc::mincore(lo as *mut libc::c_void, page_size(), vec.as_mut_ptr()) };
    assert_eq!(r, -1);
    // put() also accepts dedicated stacks and unmaps them.
    let p = StackPool::new(64 * 1024, 0);
    p.put(alloc_dedicated(1 << 20).unwrap()).unwrap();
    let mut v = vec![alloc_dedicated(1 << 16).unwrap(), p.get().unwrap()];
    p.put_batch(v.drain(..));
    assert_eq!(p.stats().free_stacks, 1);
}

#[test]
fn coroutine_runs_on_pool_stack() {
    use corosensei::{Coroutine, CoroutineResult};
    fn depth(n: u32, buf: &mut [u8; 512]) -> u32 {
        let mut local = [n as u8; 512];
        std::hint::black_box(&mut local);
        if n == 0 {
            return buf[0] as u32 & std::hint::black_box(0);
        }
        depth(n - 1, &mut local) + 1
    }
    let p = StackPool::new(256 * 1024, 1);
    for _ in 0..2 {
        let s = p.get().unwrap();
        let (lo, hi) = (s.lo(), s.hi());
        let mut co = Coroutine::with_stack(s, move |y: &corosensei::Yielder<(), usize>, ()| {
            let marker = 0u8;
            let sp = &marker as *const u8 as usize;
            y.suspend(sp);
            depth(200, &mut [0; 512]) // ~200 KiB of frames in a 256 KiB stack
        });
        match co.resume(()) {
            CoroutineResult::Yield(sp) => assert!(sp > lo && sp < hi, "{sp:#x} not in [{lo:#x}, {hi:#x})"),
            CoroutineResult::Return(_) => panic!("expected a yield"),
        }
        assert!(matches!(co.resume(()), CoroutineResult::Return(200)));
        let s = co.into_stack();
        assert!(s.check_sp(s.hi() - 1024));
        p.put(s).unwrap();
    }
    assert_eq!(p.stats().total_stacks, 1);
}
