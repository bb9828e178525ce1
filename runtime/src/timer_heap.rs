//! A P's timers: entries ordered by `when`, FIFO among equals, with lazy deletion.
//!
//! Stale entries (a `stop`ped or re-armed timer's old generation) stay in the heap until they
//! surface, and are also swept out in bulk (Go's `clearDeletedTimers`): when an insertion
//! makes a heap reach `clean_at` entries, the heap keeps only its live entries and `clean_at`
//! becomes twice what is left (at least [`CLEAN_MIN`]). So a heap never holds more than about
//! twice its live timers plus [`CLEAN_MIN`], whatever the pattern of stops and resets (a read
//! deadline per `read`, a `recv_timeout` per message), and the sweep costs O(1) amortized per
//! insertion: between two sweeps the heap at least doubles.
//!
//! # Layout
//!
//! A 4-ary min-heap (Go's shape) of 16-byte keys, whose targets live in a slab beside it. A
//! node's four children share one 64-byte cache line, so a pop from a heap of 100k timers that
//! has gone cold (sleepers armed a second ago) misses about 9 lines on its way down, against
//! about 17 levels of 48-byte entries in a binary heap of whole entries. Nodes move, targets do
//! not: a node names its target's slab slot.
//!
//! The heap knows nothing of what firing means: an entry readies a goroutine or calls a
//! [`TimerFunc`] (the generation check and the callback live with the timer type in `time/`).

use std::sync::Arc;

use crate::g::{GRef, SwitchIn};
use crate::prefetch::prefetch;

/// A timer callback with generations: an entry is live while its generation is current.
pub(crate) trait TimerFunc: Send + Sync {
    /// Whether an entry armed with `gen` is still wanted. Called with the heap's lock held.
    fn is_live(&self, gen: u64) -> bool;
    /// Fires an entry armed with `gen` for `when` (a stale one does nothing). Called without
    /// the heap's lock, on a scheduler thread.
    fn fire(self: Arc<Self>, gen: u64, when: u64);
}

pub(crate) enum Target {
    /// Wake a sleeping goroutine, whose stack starts loading from the hint when it is due.
    G(GRef, SwitchIn),
    /// Run a callback if its generation still matches.
    Func(Arc<dyn TimerFunc>, u64),
}

impl Target {
    /// False for an entry that `stop`/`reset` made stale. Called with the heap's lock held: the
    /// arming CAS happened before the push of this entry under the same lock, so a Relaxed load
    /// sees at least the entry's generation; a newer one means stopped or re-armed.
    fn live(&self) -> bool {
        match self {
            Target::G(..) => true,
            Target::Func(f, gen) => f.is_live(*gen),
        }
    }
}

/// A popped (or swept) timer.
pub(crate) struct Entry {
    pub(crate) when: u64,
    pub(crate) target: Target,
}

/// A heap node: the key and the slab slot of its target.
#[derive(Clone, Copy, Default)]
struct Node {
    when: u64,
    /// Push order, for FIFO among equal `when`s; compared by wrapping difference, exact while
    /// two equal `when`s are pushed fewer than 2^31 pushes apart.
    seq: u32,
    slot: u32,
}

impl Node {
    #[inline]
    fn before(&self, o: &Node) -> bool {
        self.when < o.when || (self.when == o.when && (self.seq.wrapping_sub(o.seq) as i32) < 0)
    }
}

/// Four nodes, one cache line: the children of one node.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([Node; 4]);

/// A P's timers.
#[derive(Default)]
pub(crate) struct TimerHeap {
    /// Heap node `i` at flat position `i + 3`, so the children of `i` (`4i+1 ..= 4i+4`) are the
    /// whole of line `i + 1`.
    lines: Vec<Line>,
    len: usize,
    /// Targets by slot; `None` in a free slot.
    slab: Vec<Option<Target>>,
    free: Vec<u32>,
    seq: u32,
    /// Sweep stale entries when the heap reaches this length (module docs; 0: [`CLEAN_MIN`]).
    clean_at: usize,
}

/// The smallest heap worth sweeping.
const CLEAN_MIN: usize = 64;

impl TimerHeap {
    #[inline]
    fn node(&self, i: usize) -> Node {
        let p = i + 3;
        self.lines[p / 4].0[p % 4]
    }

    #[inline]
    fn set(&mut self, i: usize, n: Node) {
        let p = i + 3;
        self.lines[p / 4].0[p % 4] = n;
    }

    /// Moves node `n` up from the hole at `i` to its place.
    fn sift_up(&mut self, mut i: usize, n: Node) {
        while i > 0 {
            let parent = (i - 1) / 4;
            let pn = self.node(parent);
            if !n.before(&pn) {
                break;
            }
            self.set(i, pn);
            i = parent;
        }
        self.set(i, n);
    }

    /// Appends node `n` (growing the lines as needed) and restores the heap order.
    fn insert(&mut self, n: Node) {
        let i = self.len;
        let flat = i + 3;
        if flat / 4 >= self.lines.len() {
            self.lines.push(Line::default());
        }
        self.len += 1;
        self.sift_up(i, n);
    }

    /// Removes the root. Floyd's: the hole goes down along the smaller children to a leaf, and
    /// the last node rises from there (it usually belongs near the bottom).
    fn remove_root(&mut self) -> Node {
        let root = self.node(0);
        self.len -= 1;
        let last = self.node(self.len);
        if self.len == 0 {
            return root;
        }
        let mut i = 0;
        loop {
            let first = 4 * i + 1;
            if first >= self.len {
                break;
            }
            // The four children's own children fill the four lines from `4i + 2`: whichever
            // child wins, its line starts loading now, a level ahead of the descent (in a heap
            // that has gone cold, the bottom levels miss).
            let grand = 4 * i + 2;
            for l in grand..(grand + 4).min(self.lines.len()) {
                prefetch(&self.lines[l] as *const Line as usize);
            }
            let kids = &self.lines[i + 1].0;
            let n = (self.len - first).min(4);
            let mut c = 0;
            for k in 1..n {
                if kids[k].before(&kids[c]) {
                    c = k;
                }
            }
            let child = kids[c];
            self.set(i, child);
            i = first + c;
        }
        self.sift_up(i, last);
        root
    }

    /// Puts `target` in a free slab slot.
    fn store(&mut self, target: Target) -> u32 {
        match self.free.pop() {
            Some(s) => {
                self.slab[s as usize] = Some(target);
                s
            }
            None => {
                self.slab.push(Some(target));
                // Room in the free list for every slot, reserved as the slab grows: timers are
                // armed ahead of time, but they fire when late wake-ups cost, and growing the
                // list then (a `realloc` copying it) delayed a backlog's firing.
                self.free.reserve(self.slab.capacity() - self.free.len());
                u32::try_from(self.slab.len() - 1).expect("gort: more than 2^32 timers on one P")
            }
        }
    }

    /// Takes the target out of `slot`.
    fn take(&mut self, slot: u32) -> Target {
        self.free.push(slot);
        self.slab[slot as usize].take().expect("gort: timer heap node names an empty slot")
    }

    /// Drops the stale entries if the heap has grown to `clean_at`; returns them so the caller
    /// drops them (and the callbacks they own) after releasing the lock.
    fn maybe_sweep(&mut self) -> Vec<Entry> {
        if self.len < self.clean_at.max(CLEAN_MIN) {
            return Vec::new();
        }
        let mut nodes: Vec<Node> = (0..self.len).map(|i| self.node(i)).collect();
        let mut stale = Vec::new();
        nodes.retain(|n| {
            let live = self.slab[n.slot as usize].as_ref().is_some_and(Target::live);
            if !live {
                stale.push(*n);
            }
            live
        });
        let stale: Vec<Entry> = stale.into_iter().map(|n| Entry { when: n.when, target: self.take(n.slot) }).collect();
        // The live nodes, inserted anew (most sift little: they were in heap order).
        self.len = 0;
        self.lines.clear();
        for n in nodes {
            self.insert(n);
        }
        self.clean_at = (2 * self.len).max(CLEAN_MIN);
        stale
    }

    /// Entries in the heap, stale ones included (tests).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds an entry. Returns the stale entries a sweep removed (for the caller to drop after
    /// releasing the heap's lock: they own callbacks) and the new earliest `when`.
    pub(crate) fn push(&mut self, when: u64, target: Target) -> (Vec<Entry>, u64) {
        self.seq = self.seq.wrapping_add(1);
        let slot = self.store(target);
        self.insert(Node { when, seq: self.seq, slot });
        let stale = self.maybe_sweep();
        (stale, self.earliest())
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    #[inline]
    pub(crate) fn pop_if_due(&mut self, now: u64) -> Option<Entry> {
        if self.len == 0 || self.node(0).when > now {
            return None;
        }
        let n = self.remove_root();
        let target = self.take(n.slot);
        // The next pop's target, most likely: a backlog fires in deadline order, which is not
        // the slab's, so each target is a cache miss unless its line starts loading now.
        if self.len > 0 {
            prefetch(&self.slab[self.node(0).slot as usize] as *const Option<Target> as usize);
        }
        Some(Entry { when: n.when, target })
    }

    /// The goroutine the earliest timer wakes, if that timer is a sleeper's.
    pub(crate) fn earliest_sleeper(&self) -> Option<(GRef, SwitchIn)> {
        if self.len == 0 {
            return None;
        }
        match self.slab.get(self.node(0).slot as usize)? {
            Some(Target::G(g, hint)) => Some((*g, *hint)),
            _ => None,
        }
    }

    /// The earliest `when` (`u64::MAX` if none).
    pub(crate) fn earliest(&self) -> u64 {
        if self.len == 0 {
            u64::MAX
        } else {
            self.node(0).when
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A callback whose live generations are those `>= gen`; firing is not exercised here.
    struct Gen(AtomicU64);
    impl TimerFunc for Gen {
        fn is_live(&self, gen: u64) -> bool {
            gen >= self.0.load(Ordering::Relaxed)
        }
        fn fire(self: Arc<Self>, _gen: u64, _when: u64) {}
    }

    /// Pops everything due at `now`: (when, the generation it was pushed with).
    fn drain(h: &mut TimerHeap, now: u64) -> Vec<(u64, u64)> {
        std::iter::from_fn(|| h.pop_if_due(now))
            .map(|e| match e.target {
                Target::Func(_, gen) => (e.when, gen),
                Target::G(..) => unreachable!(),
            })
            .collect()
    }

    fn lcg(x: &mut u64) -> u64 {
        *x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *x >> 33
    }

    #[test]
    fn the_earliest_sleeper_is_the_earliest_entry_when_that_is_a_sleeper() {
        use crate::g::{GKind, G};
        let f: Arc<dyn TimerFunc> = Arc::new(Gen(AtomicU64::new(0)));
        let mut h = TimerHeap::default();
        assert!(h.earliest_sleeper().is_none());
        let a = GRef(Box::leak(Box::new(G::new(GKind::Thread))));
        let b = GRef(Box::leak(Box::new(G::new(GKind::Thread))));
        h.push(30, Target::G(a, SwitchIn::default()));
        h.push(20, Target::G(b, SwitchIn::default()));
        assert!(h.earliest_sleeper().map(|s| s.0) == Some(b));
        h.push(10, Target::Func(f, 0));
        assert!(h.earliest_sleeper().is_none(), "the earliest entry is a callback");
        assert!(matches!(h.pop_if_due(10).map(|e| e.target), Some(Target::Func(..))));
        assert!(matches!(h.pop_if_due(20).map(|e| e.target), Some(Target::G(g, _)) if g == b));
        assert!(h.earliest_sleeper().map(|s| s.0) == Some(a));
    }

    #[test]
    fn pops_due_entries_earliest_first_fifo_among_equals() {
        let f: Arc<dyn TimerFunc> = Arc::new(Gen(AtomicU64::new(0)));
        let mut h = TimerHeap::default();
        let mut x = 12345u64;
        let mut whens = Vec::new();
        for i in 0..1000 {
            let w = lcg(&mut x) % 50; // many equal `when`s
            whens.push(w);
            h.push(w, Target::Func(f.clone(), i));
        }
        assert_eq!(h.earliest(), *whens.iter().min().unwrap());
        let got = drain(&mut h, 24);
        // Everything due at 24, in (when, insertion order), and nothing later.
        let mut want: Vec<(u64, u64)> =
            whens.iter().enumerate().filter(|(_, &w)| w <= 24).map(|(i, &w)| (w, i as u64)).collect();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(h.earliest(), whens.iter().copied().filter(|&w| w > 24).min().unwrap());
        assert_eq!(got.len() + h.len(), 1000);
        assert!(drain(&mut h, 24).is_empty());
    }

    #[test]
    fn interleaved_pushes_and_pops_match_a_sorted_reference() {
        let f: Arc<dyn TimerFunc> = Arc::new(Gen(AtomicU64::new(0)));
        let mut h = TimerHeap::default();
        let mut reference: Vec<(u64, u64)> = Vec::new();
        let mut x = 99u64;
        let mut now = 0u64;
        for i in 0..20_000u64 {
            // Pushes run ahead of the clock; every few steps the clock moves and the due
            // entries are popped, so the heap grows, shrinks to empty and refills.
            let w = now + lcg(&mut x) % 1000;
            h.push(w, Target::Func(f.clone(), i));
            reference.push((w, i));
            if lcg(&mut x).is_multiple_of(3) {
                now += lcg(&mut x) % 400;
                reference.sort();
                let split = reference.partition_point(|&(w, _)| w <= now);
                let want: Vec<(u64, u64)> = reference.drain(..split).collect();
                assert_eq!(drain(&mut h, now), want);
                assert_eq!(h.len(), reference.len());
                assert_eq!(h.earliest(), reference.iter().map(|e| e.0).min().unwrap_or(u64::MAX));
            }
        }
        reference.sort();
        assert_eq!(drain(&mut h, u64::MAX), reference);
        assert_eq!(h.earliest(), u64::MAX);
    }

    #[test]
    fn sweep_keeps_live_entries_in_order() {
        // Generations below 1 are stale.
        let live: Arc<dyn TimerFunc> = Arc::new(Gen(AtomicU64::new(1)));
        let mut h = TimerHeap::default();
        let mut stale_seen = 0;
        for i in 0..200u64 {
            // Every other entry is of a stale generation (0).
            let (stale, _) = h.push(1000 - i, Target::Func(live.clone(), i % 2));
            stale_seen += stale.len();
        }
        assert!(stale_seen > 0, "the heap never swept");
        let got = drain(&mut h, u64::MAX);
        let whens: Vec<u64> = got.iter().map(|e| e.0).collect();
        let mut sorted = whens.clone();
        sorted.sort();
        assert_eq!(whens, sorted);
        // Every live entry survived the sweeps.
        assert_eq!(whens.iter().filter(|&&w| (1000 - w) % 2 == 1).count(), 100);
    }
}
