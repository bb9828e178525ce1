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

    /// Moves the entries due at `now` to `due`, earliest first, and returns the new earliest
    /// `when` (`u64::MAX` if none).
    pub(crate) fn pop_due(&mut self, now: u64, due: &mut Vec<Entry>) -> u64 {
        while let Some(e) = self.heap.peek() {
            if e.when > now {
                break;
            }
            due.push(self.heap.pop().expect("peeked"));
        }
        self.earliest()
    }

    fn earliest(&self) -> u64 {
        self.heap.peek().map(|e| e.when).unwrap_or(u64::MAX)
    }
}
