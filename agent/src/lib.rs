//! `agent`: see ARCHITECTURE.md.
