//! Tokio's reactor and timer for [`block_on`](crate::block_on) (the `tokio` feature).
//!
//! Tokio's I/O and timer types (`tokio::net`, `tokio::time`, and so hyper, reqwest and the
//! crates on them) register with the Tokio runtime found in the polling thread's context and
//! panic without one. With this feature, [`block_on`](crate::block_on) polls inside a Tokio
//! runtime's context: the future's sockets and timers live on that runtime's driver, on
//! the runtime's own threads, and wake the goroutine, which parks on gort in between. Tasks the
//! future spawns (`tokio::spawn`, hyper's connection tasks) run on that runtime's workers.
//!
//! The runtime is the one handed to [`set_handle`], or else a multi-threaded runtime of its
//! own (threads named `gort-tokio`, Tokio's default worker count), started by the first
//! `block_on` (or [`handle`]) and kept for the life of the process. Its threads can wake
//! goroutines and the runtime does not know them, so while they exist deadlock detection never
//! calls a deadlock (as with any thread gort has not seen);
//! [`runtime::block_on`](crate::runtime::block_on) enters no Tokio runtime and starts none.
//!
//! Once the runtime is chosen, every thread that runs goroutines enters its context for good
//! (each before it next starts a goroutine, through
//! [`on_each_m`](gort_runtime::on_each_m)), so a goroutine sees it wherever it runs and
//! however often it moves: inside `block_on` and outside it (`tokio::spawn` and
//! `Handle::current()` work in any goroutine from then on). A poll therefore costs nothing
//! extra, and a poll that makes a blocking gort call may resume on another thread as usual. On
//! a plain OS thread, `block_on` enters the context for the call and leaves it on return; the
//! thread is the caller's, so nothing stays behind.
//!
//! Values made *before* the runtime is chosen are made outside any context:
//! `tokio::time::sleep(d)` in the argument of the process's first `block_on` panics (call
//! [`handle`] at start to choose the runtime early), `async { tokio::time::sleep(d).await }`
//! does not (the `sleep` call runs inside the first poll).
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

use std::cell::Cell;
use std::sync::{Once, OnceLock};

use tokio::runtime::{Builder, Handle, Runtime};

/// The runtime `block_on` enters, once chosen.
static HANDLE: OnceLock<Handle> = OnceLock::new();
/// The runtime started by the bridge itself, if it was: owned here so its threads live on.
static OWN: OnceLock<Runtime> = OnceLock::new();

/// Makes `block_on` use the Tokio runtime behind `handle` (keep that runtime alive: a dropped
/// runtime's handle fails every I/O and timer future). Must come before the first `block_on`:
/// once a runtime is chosen it stays, and the handle is given back as `Err`.
pub fn set_handle(handle: Handle) -> Result<(), Handle> {
    HANDLE.set(handle)?;
    CONTEXT_ON_EVERY_M.call_once(|| gort_runtime::on_each_m(enter_for_good));
    Ok(())
}

/// The handle of the runtime `block_on` enters: the one given to [`set_handle`], or else the
/// bridge's own runtime, started by this call if it is the first. From this call on, every
/// thread that runs goroutines has the runtime's context entered (module docs).
///
/// # Panics
/// If the bridge's own runtime cannot be started (the OS refuses threads).
pub fn handle() -> &'static Handle {
    let h = HANDLE.get_or_init(|| {
        OWN.get_or_init(|| {
            Builder::new_multi_thread()
                .thread_name("gort-tokio")
                .enable_all()
                .build()
                .expect("gort: cannot start the Tokio runtime for block_on")
        })
        .handle()
        .clone()
    });
    CONTEXT_ON_EVERY_M.call_once(|| gort_runtime::on_each_m(enter_for_good));
    h
}

/// Registers the per-M entry once a runtime is chosen, by either path.
static CONTEXT_ON_EVERY_M: Once = Once::new();

thread_local! {
    /// Whether this thread has entered the chosen runtime's context for good.
    static ENTERED: Cell<bool> = const { Cell::new(false) };
}

/// Enters the chosen runtime's context on this M's thread and never leaves it: an M is gort's
/// own thread and never exits, and any guard a goroutine takes and drops on it nests inside.
fn enter_for_good() {
    if let (Ok(false), Some(h)) = (ENTERED.try_with(Cell::get), HANDLE.get()) {
        std::mem::forget(h.enter());
        ENTERED.set(true);
    }
}

/// `gort_runtime::block_on` with `handle()`'s context entered (module docs).
pub(crate) fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    let handle = handle();
    if gort_runtime::in_goroutine() {
        // This M may have been running the goroutine since before the runtime was chosen (by
        // another thread): enter here if it has not. Any M the goroutine moves to enters before
        // it runs the goroutine.
        enter_for_good();
        gort_runtime::block_on(fut)
    } else {
        let _entered = handle.enter();
        gort_runtime::block_on(fut)
    }
}
