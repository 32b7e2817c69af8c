//! json-stats (to be written)
