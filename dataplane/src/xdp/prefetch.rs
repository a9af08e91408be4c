//! [`read`]: a software prefetch of the cache line holding a value, for the
//! engine's batch lookups (`nat::batch`): a whole batch's index slots, then
//! its sessions, are asked for before any is used, so their cache misses
//! overlap without the wait a load would put in the reorder buffer.
//!
//! Invariant: a prefetch is a hint; it reads nothing the program sees,
//! cannot fault, and on targets without one it is nothing.
#![allow(unsafe_code)]

/// Asks for the cache line of `x` (into every cache level).
#[inline(always)]
pub fn read<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 only hints the cache; it never faults and has no
    // effect the program can observe, and `x` is a valid reference anyway.
    // SSE is part of x86_64's baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(std::ptr::from_ref(x).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}
