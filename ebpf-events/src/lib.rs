//! `ebpf-events`: see ARCHITECTURE.md.
