//! `ui-backend`: see ARCHITECTURE.md.
