//! Hands the allocator's free pages back to the kernel once a burst of work is over.
//!
//! glibc keeps freed memory in its heap: parsing a large configuration (the TOML parser holds
//! every token of the file at once) or checking a thousand certificates leaves most of the
//! heap free but resident, and its dynamic trim threshold grows after large frees, so `free`
//! alone rarely shrinks it. `malloc_trim(3)` returns the free pages, top and middle alike.
//! The daemon calls [`release`] when it goes idle: after the configuration is (re)loaded and
//! whenever the last running certificate task finishes.

/// Returns the allocator's free pages to the kernel (glibc); elsewhere does nothing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "malloc_trim(3) FFI")]
pub(super) fn release() {
    // SAFETY: malloc_trim takes a byte count and has no preconditions; it only gives pages
    // the allocator holds free back to the kernel (it takes the allocator's own locks).
    let released = unsafe { libc::malloc_trim(0) } != 0;
    tracing::trace!(released, "allocator trimmed");
}

/// Returns the allocator's free pages to the kernel (glibc); elsewhere does nothing.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(super) fn release() {}
