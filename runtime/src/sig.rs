//! What the runtime's signal handlers share: taking a signal only if nobody else handles it,
//! and keeping the interrupted code's `errno`.

use std::io;

/// A handler with the `SA_SIGINFO` signature.
pub(crate) type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Installs `h` for `sig` (`SA_SIGINFO | SA_ONSTACK | SA_RESTART`) unless another handler is
/// installed: `Ok(false)`, nothing changed, if someone else's is; `Ok(true)` once `h` is in
/// place (also if it was already).
pub(crate) fn install_unless_foreign(sig: libc::c_int, h: Handler) -> io::Result<bool> {
    // SAFETY: zeroed is a valid sigaction to receive the current one.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the current one into `old`.
    if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let ours = h as usize;
    if old.sa_sigaction == ours {
        return Ok(true);
    }
    if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN {
        return Ok(false);
    }
    // SAFETY: zeroed is a valid sigaction (empty mask, no flags) before we fill it in.
    let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
    new.sa_sigaction = ours;
    new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
    // SAFETY: sa_mask is a valid sigset_t to initialise.
    unsafe { libc::sigemptyset(&mut new.sa_mask) };
    // SAFETY: `new` is fully initialised and `h` has the SA_SIGINFO signature.
    if unsafe { libc::sigaction(sig, &new, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

/// Saves the thread's `errno` and puts it back on drop: a signal handler must not change what
/// the code it interrupted will read.
pub(crate) struct ErrnoGuard(libc::c_int);

impl ErrnoGuard {
    #[inline]
    pub(crate) fn save() -> ErrnoGuard {
        // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
        ErrnoGuard(unsafe { *libc::__errno_location() })
    }
}

impl Drop for ErrnoGuard {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: as in `save`.
        unsafe { *libc::__errno_location() = self.0 };
    }
}
