//! `metrics`: see ARCHITECTURE.md.
