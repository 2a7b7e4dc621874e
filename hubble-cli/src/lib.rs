//! `hubble-cli`: see ARCHITECTURE.md.
