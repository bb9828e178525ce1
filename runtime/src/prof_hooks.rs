//! Mutex/block profile hooks — see issue 3.
