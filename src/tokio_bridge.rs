//! Tokio's reactor and timer for [`block_on`](crate::block_on) (the `tokio` feature).
//!
//! Tokio's I/O and timer types (`tokio::net`, `tokio::time`, and so hyper, reqwest and the
//! crates on them) register with the Tokio runtime found in the polling thread's context and
//! panic without one. With this feature, [`block_on`](crate::block_on) enters a Tokio runtime's
//! context around every poll: the future's sockets and timers live on that runtime's driver, on
//! the runtime's own threads, and wake the goroutine, which parks on gort in between. Tasks the
//! future spawns (`tokio::spawn`, hyper's connection tasks) run on that runtime's workers.
//!
//! The runtime is the one handed to [`set_handle`], or else a multi-threaded runtime of its
//! own (threads named `gort-tokio`, Tokio's default worker count), started by the first
//! `block_on` and kept for the life of the process. Its threads can wake goroutines and the
//! runtime does not know them, so while they exist deadlock detection never calls a deadlock
//! (as with any thread gort has not seen); [`runtime::block_on`](crate::runtime::block_on)
//! enters no Tokio runtime and starts none.
//!
//! The context is entered for one poll at a time, and the goroutine is wired to its thread for
//! that poll ([`lock_os_thread`](crate::runtime::lock_os_thread)): Tokio's context is
//! thread-local, so it must be left on the thread it was entered on, even if the poll itself
//! makes a blocking gort call. Between polls the goroutine parks on gort and may resume on
//! another thread, with no Tokio context held.
//!
//! Values made *before* `block_on` are made outside the context: `tokio::time::sleep(d)` called
//! in the argument itself panics, `async { tokio::time::sleep(d).await }` does not (the
//! `sleep` call runs inside the first poll).
//!
//! ```
//! # #[cfg(feature = "tokio")] {
//! use std::time::Duration;
//!
//! // SAFETY: the goroutine keeps no thread-bound value across its blocking calls.
//! let slept = unsafe {
//!     gort::run(|| {
//!         gort::block_on(async {
//!             tokio::time::sleep(Duration::from_millis(1)).await;
//!             true
//!         })
//!     })
//! };
//! assert!(slept);
//! # }
//! ```

use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

/// The runtime `block_on` enters, once chosen.
static HANDLE: OnceLock<Handle> = OnceLock::new();
/// The runtime started by the bridge itself, if it was: owned here so its threads live on.
static OWN: OnceLock<Runtime> = OnceLock::new();

/// Makes `block_on` use the Tokio runtime behind `handle` (keep that runtime alive: a dropped
/// runtime's handle fails every I/O and timer future). Must come before the first `block_on`:
/// once a runtime is chosen it stays, and the handle is given back as `Err`.
pub fn set_handle(handle: Handle) -> Result<(), Handle> {
    HANDLE.set(handle)
}

/// The handle of the runtime `block_on` enters: the one given to [`set_handle`], or else the
/// bridge's own runtime, started by this call if it is the first.
///
/// # Panics
/// If the bridge's own runtime cannot be started (the OS refuses threads).
pub fn handle() -> &'static Handle {
    HANDLE.get_or_init(|| {
        OWN.get_or_init(|| {
            Builder::new_multi_thread()
                .thread_name("gort-tokio")
                .enable_all()
                .build()
                .expect("gort: cannot start the Tokio runtime for block_on")
        })
        .handle()
        .clone()
    })
}

/// Undoes a [`lock_os_thread`](crate::runtime::lock_os_thread) on drop, so a poll that panics
/// still unwires its goroutine.
struct Wired;

impl Wired {
    fn new() -> Wired {
        gort_runtime::lock_os_thread();
        Wired
    }
}

impl Drop for Wired {
    fn drop(&mut self) {
        gort_runtime::unlock_os_thread();
    }
}

/// `gort_runtime::block_on`, with `handle()`'s context entered around each poll (module docs).
pub(crate) fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    let handle = handle();
    let mut fut = std::pin::pin!(fut);
    gort_runtime::block_on(std::future::poll_fn(move |cx| {
        // Dropped in reverse order: the context is left before the goroutine is unwired, on
        // the thread that entered it.
        let _wired = Wired::new();
        let _entered = handle.enter();
        fut.as_mut().poll(cx)
    }))
}
