//! `peer-service`: see ARCHITECTURE.md.
