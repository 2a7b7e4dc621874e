//! `proto`: see ARCHITECTURE.md.
