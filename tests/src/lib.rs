//! `tests`: see ARCHITECTURE.md.
