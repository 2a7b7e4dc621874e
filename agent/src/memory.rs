//! Handing freed memory back to the system.

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
