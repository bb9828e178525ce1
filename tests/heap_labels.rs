//! Heap and allocs samples carry the labels of the goroutine that allocated
//! (`gort::profiler::with_labels`, Go's `pprof.Do`), so `go tool pprof -tagfocus tenant=a` on the
//! heap profile says who holds the memory; per-request labels stay within the label cap.
//!
//! The sampling rate is 1 (every allocation sampled), so in-use sums are exact. Each test runs
//! in a child process: the rate and the label cap are process-wide.

mod common;

use common::prof::*;
use common::run;
use gort::profiler::heap::{label_stats, MAX_LABELLED_RECORDS};
use gort::profiler::proto::{self, Profile};

#[global_allocator]
static ALLOC: gort::profiler::Allocator = gort::profiler::Allocator::system();

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// Keeps `n` blocks of `size` bytes in `keep` (whose room was made by the caller, so only the
/// blocks themselves are allocated here).
#[inline(never)]
fn fill(keep: &mut Vec<Box<[u8]>>, n: usize, size: usize) {
    for _ in 0..n {
        keep.push(vec![1u8; size].into_boxed_slice());
    }
}

/// Tenant a's request: 1 MiB live in 1 KiB blocks.
#[inline(never)]
fn tenant_a_work(keep: &mut Vec<Box<[u8]>>) {
    fill(keep, 1024, KIB);
    std::hint::black_box(keep); // not a tail call: this frame stays on the stack
}

/// Tenant b's request: 3 MiB live in 3 KiB blocks.
#[inline(never)]
fn tenant_b_work(keep: &mut Vec<Box<[u8]>>) {
    fill(keep, 1024, 3 * KIB);
    std::hint::black_box(keep); // not a tail call: this frame stays on the stack
}

/// Nobody's: 2 MiB in 2 KiB blocks, allocated without labels.
#[inline(never)]
fn unlabelled_work(keep: &mut Vec<Box<[u8]>>) {
    fill(keep, 1024, 2 * KIB);
    std::hint::black_box(keep); // not a tail call: this frame stays on the stack
}

/// `key=value` of each string label of a sample.
fn tags(p: &Profile, s: &proto::Sample) -> Vec<String> {
    s.label.iter().filter(|l| l.str != 0).map(|l| format!("{}={}", p.str(l.key), p.str(l.str))).collect()
}

/// Sum of `inuse_space` over the samples carrying `tag`.
fn inuse_tagged(p: &Profile, tag: &str) -> i64 {
    p.sample.iter().filter(|s| tags(p, s).iter().any(|t| t == tag)).map(|s| s.value[3]).sum()
}

/// Runs `work` on a goroutine labelled `tenant=<tenant>` and returns what it keeps.
fn on_tenant(tenant: &'static str, work: fn(&mut Vec<Box<[u8]>>)) -> Vec<Box<[u8]>> {
    let mut keep = Vec::with_capacity(1024);
    let h = common::spawn_with(gort::Builder::new(), move || {
        gort::profiler::with_labels(&[("tenant", tenant)], || work(&mut keep));
        keep
    })
    .unwrap();
    h.join().unwrap()
}

/// In a child with `GORT_MEMPROFILERATE=1`: every allocation since the start is sampled at rate
/// 1, so the in-use totals are exact.
#[test]
fn heap_samples_carry_the_allocating_goroutines_labels() {
    if !common::in_child() {
        let out = common::run_child_ok(
            "heap_samples_carry_the_allocating_goroutines_labels",
            &[("GORT_MEMPROFILERATE", "1")],
        );
        eprintln!("{}", common::stderr(&out));
        return;
    }
    assert_eq!(gort::profiler::mem_profile_rate(), 1);
    let (a, b, plain, p0, p1) = run(|| {
        let a = on_tenant("a", tenant_a_work);
        // A finished request of another tenant on the same stack: in the allocs, not in use.
        drop(on_tenant("c", tenant_a_work));
        let b = on_tenant("b", tenant_b_work);
        let mut plain = Vec::with_capacity(1024);
        unlabelled_work(&mut plain);
        let p0 = gort::profiler::lookup("heap").unwrap().to_proto();
        let b2 = on_tenant("b", |keep| fill(keep, 512, KIB));
        let p1 = gort::profiler::lookup("heap").unwrap().to_proto();
        drop(b2);
        (a, b, plain, p0, p1)
    });
    let gz = write("heap", 0);
    let p = decode_valid(&gz);
    let near = |got: i64, want: usize| (got as f64 / want as f64 - 1.0).abs() < 0.03;
    let (ia, ib) = (inuse_tagged(&p, "tenant=a"), inuse_tagged(&p, "tenant=b"));
    assert!(near(ia, MIB), "tenant=a holds {ia}, want ~1 MiB");
    assert!(near(ib, 3 * MIB), "tenant=b holds {ib}, want ~3 MiB");
    for (leaf, want) in [("tenant_a_work", "tenant=a"), ("tenant_b_work", "tenant=b"), ("unlabelled_work", "")] {
        let of_leaf: Vec<&proto::Sample> = p
            .sample
            .iter()
            .filter(|s| s.location_id.iter().any(|&l| location_names(&p, l).iter().any(|n| n.contains(leaf))))
            .filter(|s| s.value[3] > 0)
            .collect();
        assert!(!of_leaf.is_empty(), "no live sample under {leaf}");
        for s in of_leaf {
            let t = tags(&p, s);
            assert_eq!(t.join(","), want, "{leaf}: {t:?}");
            assert_eq!(p.str(s.label[0].key), "bytes", "the size label stays first");
        }
    }
    // A delta matches records by stack and labels: only b's second request shows.
    let d = proto::delta(&p0, &p1).unwrap();
    let (da, db) = (inuse_tagged(&d, "tenant=a"), inuse_tagged(&d, "tenant=b"));
    assert_eq!(da, 0, "tenant=a did not change");
    assert!(near(db, 512 * KIB), "tenant=b grew by {db}, want 512 KiB");
    // The sampled in-use total the metrics read: at rate 1, what the profile says is in use.
    // (Read next to a profile built under the profiler's no-sampling flag, so that no sampled
    // allocation of this test lands between the two.)
    let sampled = gort::runtime::mprof::heap_inuse_sampled() as i64;
    let now = gort::profiler::lookup("heap").unwrap().to_proto();
    let total: i64 = now.sample.iter().map(|s| s.value[3]).sum();
    assert!(
        sampled >= 6 * MIB as i64 && near(sampled, total as usize),
        "heap_inuse_sampled {sampled}, profile {total}"
    );
    // The allocs profile carries them too.
    let al = decode_valid(&write("allocs", 0));
    assert!(al.sample.iter().any(|s| tags(&al, s) == ["tenant=a"]));
    let c: i64 = al.sample.iter().filter(|s| tags(&al, s) == ["tenant=c"]).map(|s| s.value[1]).sum();
    assert_eq!(c, MIB as i64, "tenant=c allocated 1 MiB");
    assert_eq!(inuse_tagged(&p, "tenant=c"), 0, "and holds nothing");
    // Go's debug=1 text has one entry per stack and size: a's and c's records are one there.
    let text = String::from_utf8(write("heap", 1)).unwrap();
    let entries = text.lines().filter(|l| l.starts_with("1024: 1048576 [2048: 2097152] @ ")).count();
    assert_eq!(entries, 1, "{text}");

    if have_go() {
        let f = tmpdir("heap-labels").join("heap.pb.gz");
        std::fs::write(&f, &gz).unwrap();
        let top = pprof(&["-top", "-sample_index=inuse_space", "-tagfocus", "tenant=a", f.to_str().unwrap()]);
        assert!(top.contains("tenant_a_work"), "{top}");
        assert!(!top.contains("tenant_b_work") && !top.contains("unlabelled_work"), "{top}");
        let rows = top_rows(&top);
        assert!(near(row(&rows, "tenant_a_work").cum as i64, MIB), "{top}");
    }
    drop((a, b, plain));
}

/// Allocating under more distinct label values than the cap keeps the labelled records bounded;
/// the surplus folds into the unlabelled records (counted), and idle records are reused.
#[test]
fn per_request_labels_stay_within_the_cap() {
    if !common::in_child() {
        common::run_child_ok("per_request_labels_stay_within_the_cap", &[("GORT_MEMPROFILERATE", "1")]);
        return;
    }
    const SIZE: usize = 777;
    let n = MAX_LABELLED_RECORDS + 1000;
    let ids: Vec<String> = (0..2 * n).map(|i| format!("req-{i}")).collect();
    run(move || {
        let mut keep: Vec<Box<[u8]>> = Vec::with_capacity(n);
        // n requests at once, each holding a block: more live label sets than the cap.
        for id in &ids[..n] {
            gort::profiler::with_labels(&[("request", id)], || fill(&mut keep, 1, SIZE));
        }
        let s1 = label_stats();
        let c1 = gort::profiler::lookup("heap").unwrap().count();
        assert!(s1.labelled_records <= MAX_LABELLED_RECORDS, "{s1:?}");
        assert!(s1.folded >= 1000, "{s1:?}");
        // Every byte is still counted, labelled or not.
        let p = gort::profiler::lookup("heap").unwrap().to_proto();
        let by_size: i64 = p.sample.iter().filter(|s| s.label[0].num == SIZE as i64).map(|s| s.value[3]).sum::<i64>();
        assert_eq!(by_size, (n * SIZE) as i64);
        assert!(p.comment.iter().any(|&c| p.str(c).contains("label cap")), "no label-cap comment");
        // Those requests end; as many new ones reuse their records instead of adding more.
        keep.clear();
        for id in &ids[n..] {
            gort::profiler::with_labels(&[("request", id)], || fill(&mut keep, 1, SIZE));
        }
        let s2 = label_stats();
        let c2 = gort::profiler::lookup("heap").unwrap().count();
        assert!(s2.labelled_records <= MAX_LABELLED_RECORDS, "{s2:?}");
        assert!(s2.retired > s1.retired, "{s1:?} -> {s2:?}");
        assert!(c2 < c1 + 100, "records grew from {c1} to {c2}");
        eprintln!("label cap: {s1:?} ({c1} records) -> {s2:?} ({c2} records)");
    });
}
