//! The stack a parked goroutine waits on, as the wall-clock profile and the leak census see it.
//!
//! A parked goroutine's stack is frozen at its park site ([`Parked`]), so its frames can be
//! walked without stopping it. [`park_stack`] returns that walk as a shared, immutable list of
//! code addresses (leaf first, as [`Parked::walk`] writes them).

use std::sync::Arc;

use crate::g::Parked;
use crate::unwind::MAX_DEPTH;

/// A parked goroutine's stack: code addresses, leaf first, unsymbolized.
pub type ParkStack = Arc<[usize]>;

/// The frozen stack of the goroutine `p` holds still.
pub fn park_stack(p: &Parked<'_>) -> ParkStack {
    let mut buf = [0usize; MAX_DEPTH];
    let w = p.walk(&mut buf);
    Arc::from(&buf[..w.len])
}
