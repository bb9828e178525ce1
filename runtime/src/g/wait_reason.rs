//! Why a goroutine waits: Go's wait reasons, with Go's strings (they are what goroutine dumps and
//! profiles show, and what users grep for).

/// Why a goroutine is waiting. The strings are Go's own (`runtime/runtime2.go` waitReasonStrings),
/// so goroutine dumps read the same as a Go program's.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum WaitReason {
    /// Not waiting (Go prints an empty reason as the base state).
    Zero = 0,
    /// `chan receive`
    ChanReceive,
    /// `chan send`
    ChanSend,
    /// `chan receive (nil chan)`
    ChanReceiveNilChan,
    /// `chan send (nil chan)`
    ChanSendNilChan,
    /// `select`
    Select,
    /// `select (no cases)`
    SelectNoCases,
    /// `sleep`
    Sleep,
    /// `IO wait`
    IoWait,
    /// `semacquire`
    Semacquire,
    /// `sync.Mutex.Lock`
    SyncMutexLock,
    /// `sync.RWMutex.RLock`
    SyncRWMutexRLock,
    /// `sync.RWMutex.Lock`
    SyncRWMutexLock,
    /// `sync.Cond.Wait`
    SyncCondWait,
    /// `sync.WaitGroup.Wait`
    SyncWaitGroupWait,
    /// `join`: waiting in `JoinHandle::join` (gort's own; Go has no join).
    Join,
    /// `forever`: parked with no way to be woken (gort's `park_forever`).
    Forever,
    /// `sync.Once.Do`: waiting for another goroutine's `Once` call to finish.
    SyncOnce,
    /// `sync.Parker.park`: waiting in `Parker::park` or `park_timeout` for an `Unparker`
    /// (gort's own, named as Go names its `sync` waits).
    SyncParker,
    /// `future`: waiting in `block_on` for a future's `Waker` (gort's own: the bridge to
    /// async Rust).
    Future,
}

impl WaitReason {
    /// Every wait reason, in `as u8` order.
    pub(crate) const ALL: [WaitReason; 20] = [
        WaitReason::Zero,
        WaitReason::ChanReceive,
        WaitReason::ChanSend,
        WaitReason::ChanReceiveNilChan,
        WaitReason::ChanSendNilChan,
        WaitReason::Select,
        WaitReason::SelectNoCases,
        WaitReason::Sleep,
        WaitReason::IoWait,
        WaitReason::Semacquire,
        WaitReason::SyncMutexLock,
        WaitReason::SyncRWMutexRLock,
        WaitReason::SyncRWMutexLock,
        WaitReason::SyncCondWait,
        WaitReason::SyncWaitGroupWait,
        WaitReason::Join,
        WaitReason::Forever,
        WaitReason::SyncOnce,
        WaitReason::SyncParker,
        WaitReason::Future,
    ];

    /// Go's spelling of the reason, as printed in `goroutine 7 [chan receive]:`.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Zero => "",
            WaitReason::ChanReceive => "chan receive",
            WaitReason::ChanSend => "chan send",
            WaitReason::ChanReceiveNilChan => "chan receive (nil chan)",
            WaitReason::ChanSendNilChan => "chan send (nil chan)",
            WaitReason::Select => "select",
            WaitReason::SelectNoCases => "select (no cases)",
            WaitReason::Sleep => "sleep",
            WaitReason::IoWait => "IO wait",
            WaitReason::Semacquire => "semacquire",
            WaitReason::SyncMutexLock => "sync.Mutex.Lock",
            WaitReason::SyncRWMutexRLock => "sync.RWMutex.RLock",
            WaitReason::SyncRWMutexLock => "sync.RWMutex.Lock",
            WaitReason::SyncCondWait => "sync.Cond.Wait",
            WaitReason::SyncWaitGroupWait => "sync.WaitGroup.Wait",
            WaitReason::Join => "join",
            WaitReason::Forever => "forever",
            WaitReason::SyncOnce => "sync.Once.Do",
            WaitReason::SyncParker => "sync.Parker.park",
            WaitReason::Future => "future",
        }
    }

    pub(crate) fn from_u8(v: u8) -> WaitReason {
        WaitReason::ALL.get(v as usize).copied().unwrap_or(WaitReason::Zero)
    }

    /// Whether something outside the goroutines (a timer, the network) will wake a G waiting for
    /// this reason. Deadlock detection treats such waits as live.
    pub(crate) fn externally_woken(self) -> bool {
        matches!(self, WaitReason::Sleep | WaitReason::IoWait)
    }
}

impl std::fmt::Display for WaitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
