//! prometheus-text (to be written)
