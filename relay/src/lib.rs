//! `relay`: see ARCHITECTURE.md.
