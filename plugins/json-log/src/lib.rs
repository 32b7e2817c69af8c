//! json-log (to be written)
