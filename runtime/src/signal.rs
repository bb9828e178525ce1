//! SIGSEGV/SIGBUS stack-overflow reporting on a sigaltstack (helper fills this in).
use crate::g::GRef;
/// What the signal handler needs to know about the faulting thread's goroutine.
pub(crate) struct SignalStackInfo {
    pub goid: u64,
    pub g: Option<GRef>,
    pub stack_lo: usize,
    pub stack_hi: usize,
    pub guard_lo: usize,
    pub guard_hi: usize,
}
