//! Handing freed memory back to the system.

/// `mi_option_purge_delay`: its number in mimalloc.h's `mi_option_e` (the same in
/// mimalloc v2 and v3; `libmimalloc-sys` names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long, in milliseconds, memory the agent freed stays resident before mimalloc
/// hands it back: mimalloc v2's default. v3, which the agent is built with, waits a
/// second, which kept 10-25 MiB more resident in an agent replaying into a full ring of
/// 1,048,575 flows (284.6-301.3 MiB against 275.9-277.0 with this delay; 0 gave
/// 270.5-272.5).
pub const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Sets the allocator's options for a long-running agent (see [`PURGE_DELAY_MS`]) and
/// turns transparent huge pages off for the process. Called first thing in `main`.
///
/// mimalloc asks for huge pages for its arenas; the kernel then backs each 2 MiB of
/// them that is touched at all with a whole huge page, and memory freed inside one
/// cannot be handed back in part. An agent's many small allocations (per-thread heaps,
/// tables, buffers) left 21-26 MiB more resident that way: 43-47 MiB idle with a 4,095-flow
/// ring against 21-22 MiB without huge pages, 232-246 against 208-213 MiB holding
/// 1,048,575 corpus flows. What huge pages bought: a ring scan with a pod filter at
/// 95-97 M slots/s instead of 77-86 (fewer TLB misses over 128 MiB of slots). An error
/// says why huge pages stay on (a kernel without the switch).
pub fn configure_allocator() -> nix::Result<()> {
    // SAFETY: `mi_option_set` takes no pointers and may be called at any time; the
    // option only changes when freed memory is purged.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
    }
    // Checked at each page fault, so it also covers the arena mimalloc reserved before
    // `main` ran.
    nix::sys::prctl::set_thp_disable(true)
}

/// Whether transparent huge pages are off for this process.
pub fn huge_pages_disabled() -> bool {
    nix::sys::prctl::get_thp_disable().unwrap_or(false)
}

/// The allocator's purge delay in milliseconds, as it reads it now.
pub fn purge_delay_ms() -> std::ffi::c_long {
    // SAFETY: as in `configure_allocator`; reading an option has no other effect.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY)
    }
}

/// Returns to the system the freed memory the allocator still holds. mimalloc purges
/// freed pages only when it is called again, so memory freed by a burst that does not
/// come again stays resident in an idle agent: loading the datapath parses the
/// kernel's BTF (about 40 MiB, freed as soon as the programs are loaded), a replay
/// parses its file on threads that then end.
pub fn release_freed_memory() {
    // SAFETY: `mi_collect` takes no pointers and may be called from any thread at any
    // time; it only frees and purges what the allocator holds unused.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}
