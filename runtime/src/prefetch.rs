//! A software prefetch: the one instruction the runtime uses to start cold lines loading before
//! it needs them (a sleeper's descriptor and stack when its timer fires, the next timer's target).

/// Starts loading the line holding `addr` into every cache level (`prefetcht0`); nothing on
/// other architectures. A hint only: any address is allowed, and a wrong one costs a wasted
/// load, never a fault.
#[inline(always)]
pub(crate) fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` reads nothing architecturally and cannot fault, whatever the address
    // (unmapped, guard page, freed): it only hints the cache, so any `usize` is a valid operand.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}
