//! park/ready (stub while the core lands).
use crate::g::{GRef, WaitReason};
pub fn current() -> GRef { todo!() }
pub fn in_goroutine() -> bool { todo!() }
pub fn park<F: FnOnce(GRef) -> bool>(_reason: WaitReason, _commit: F) { todo!() }
pub fn ready(_g: GRef) { todo!() }
