//! `observer`: see ARCHITECTURE.md.
