//! A P's timer heap: entries ordered by `when`, FIFO among equals, with lazy deletion.
//!
//! Stale entries (a `stop`ped or re-armed timer's old generation) stay in the heap until they
//! surface, and are also swept out in bulk (Go's `clearDeletedTimers`): when an insertion
//! makes a heap reach `clean_at` entries, the heap keeps only its live entries and `clean_at`
//! becomes twice what is left (at least [`CLEAN_MIN`]). So a heap never holds more than about
//! twice its live timers plus [`CLEAN_MIN`], whatever the pattern of stops and resets (a read
//! deadline per `read`, a `recv_timeout` per message), and the sweep costs O(1) amortized per
//! insertion: between two sweeps the heap at least doubles.
//!
//! The heap knows nothing of what firing means: an entry readies a goroutine or calls a
//! [`TimerFunc`] (the generation check and the callback live with the timer type in `time/`).

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::g::GRef;

/// A timer callback with generations: an entry is live while its generation is current.
pub(crate) trait TimerFunc: Send + Sync {
    /// Whether an entry armed with `gen` is still wanted. Called with the heap's lock held.
    fn is_live(&self, gen: u64) -> bool;
    /// Fires an entry armed with `gen` for `when` (a stale one does nothing). Called without
    /// the heap's lock, on a scheduler thread.
    fn fire(self: Arc<Self>, gen: u64, when: u64);
}

pub(crate) enum Target {
    /// Wake a sleeping goroutine.
    G(GRef),
    /// Run a callback if its generation still matches.
    Func(Arc<dyn TimerFunc>, u64),
}

pub(crate) struct Entry {
    pub(crate) when: u64,
    seq: u64,
    pub(crate) target: Target,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Entry) -> bool {
        self.when == o.when && self.seq == o.seq
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Entry) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Entry {
    /// False for an entry that `stop`/`reset` made stale. Called with the heap's lock held: the
    /// arming CAS happened before the push of this entry under the same lock, so a Relaxed load
    /// sees at least the entry's generation; a newer one means stopped or re-armed.
    fn live(&self) -> bool {
        match &self.target {
            Target::G(_) => true,
            Target::Func(f, gen) => f.is_live(*gen),
        }
    }
}

impl Ord for Entry {
    fn cmp(&self, o: &Entry) -> CmpOrdering {
        // BinaryHeap is a max-heap: invert for earliest first, FIFO among equal `when`s.
        (o.when, o.seq).cmp(&(self.when, self.seq))
    }
}

/// A P's timers.
#[derive(Default)]
pub(crate) struct TimerHeap {
    heap: BinaryHeap<Entry>,
    seq: u64,
    /// Sweep stale entries when the heap reaches this length (module docs; 0: [`CLEAN_MIN`]).
    clean_at: usize,
}

/// The smallest heap worth sweeping.
const CLEAN_MIN: usize = 64;

impl TimerHeap {
    /// Drops the stale entries if the heap has grown to `clean_at`; returns them so the caller
    /// drops them (and the callbacks they own) after releasing the lock.
    fn maybe_sweep(&mut self) -> Vec<Entry> {
        if self.heap.len() < self.clean_at.max(CLEAN_MIN) {
            return Vec::new();
        }
        let (live, stale): (Vec<Entry>, Vec<Entry>) =
            std::mem::take(&mut self.heap).into_vec().into_iter().partition(Entry::live);
        self.heap = BinaryHeap::from(live);
        self.clean_at = (2 * self.heap.len()).max(CLEAN_MIN);
        stale
    }

    /// Entries in the heap, stale ones included (tests).
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Adds an entry. Returns the stale entries a sweep removed (for the caller to drop after
    /// releasing the heap's lock: they own callbacks) and the new earliest `when`.
    pub(crate) fn push(&mut self, when: u64, target: Target) -> (Vec<Entry>, u64) {
        self.seq += 1;
        let seq = self.seq;
        self.heap.push(Entry { when, seq, target });
        let stale = self.maybe_sweep();
        (stale, self.earliest())
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    #[inline]
    pub(crate) fn pop_if_due(&mut self, now: u64) -> Option<Entry> {
        if self.heap.peek()?.when > now {
            return None;
        }
        self.heap.pop()
    }

    /// The earliest `when` (`u64::MAX` if none).
    pub(crate) fn earliest(&self) -> u64 {
        self.heap.peek().map(|e| e.when).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A callback whose live generation is `gen`; firing is not exercised here.
    struct Gen(AtomicU64);
    impl TimerFunc for Gen {
        fn is_live(&self, gen: u64) -> bool {
            self.0.load(Ordering::Relaxed) == gen
        }
        fn fire(self: Arc<Self>, _gen: u64, _when: u64) {}
    }

    fn drain(h: &mut TimerHeap, now: u64) -> Vec<(u64, u64)> {
        std::iter::from_fn(|| h.pop_if_due(now)).map(|e| (e.when, e.seq)).collect()
    }

    #[test]
    fn pops_due_entries_earliest_first_fifo_among_equals() {
        let f: Arc<dyn TimerFunc> = Arc::new(Gen(AtomicU64::new(0)));
        let mut h = TimerHeap::default();
        let mut x = 12345u64;
        let mut whens = Vec::new();
        for _ in 0..1000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let w = (x >> 33) % 50; // many equal `when`s
            whens.push(w);
            h.push(w, Target::Func(f.clone(), 0));
        }
        assert_eq!(h.earliest(), *whens.iter().min().unwrap());
        let got = drain(&mut h, 24);
        // Everything due at 24, in (when, insertion order), and nothing later.
        let mut want: Vec<(u64, u64)> =
            whens.iter().enumerate().filter(|(_, &w)| w <= 24).map(|(i, &w)| (w, i as u64 + 1)).collect();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(h.earliest(), whens.iter().copied().filter(|&w| w > 24).min().unwrap());
        assert_eq!(got.len() + h.len(), 1000);
        assert!(drain(&mut h, 24).is_empty());
    }

    #[test]
    fn sweep_keeps_live_entries_in_order() {
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
