//! Resident memory: no transparent huge pages for this process.
//!
//! Why: with the kernel's THP set to `always` (Debian's and many distributions' default), a
//! proxy's allocator arenas are backed by 2 MiB pages as soon as they are touched, so a
//! few KiB of live data per thread hold whole huge pages resident. Measured on the lb
//! (mimalloc, 2 threads, 50 connections): 35 MiB resident after a load run with THP, 19 MiB
//! without, at the same requests per second (benches/README.md, "Memory"). The setting is
//! per process (`PR_SET_THP_DISABLE`), leaves the machine's setting alone, and is inherited
//! by children.

/// Turn transparent huge pages off for this process. Call it first in `main`: memory
/// already faulted in keeps its pages. A kernel that refuses is only noted at DEBUG: the
/// process works either way, with more memory resident.
pub fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::debug!(error = %e, "could not turn transparent huge pages off");
    }
}
