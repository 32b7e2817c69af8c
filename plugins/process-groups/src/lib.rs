//! process-groups (to be written)
