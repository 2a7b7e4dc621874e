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

/// Sets the allocator's options for a long-running agent (see [`PURGE_DELAY_MS`]).
/// Called first thing in `main`.
pub fn configure_allocator() {
    // SAFETY: `mi_option_set` takes no pointers and may be called at any time; the
    // option only changes when freed memory is purged.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
    }
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
