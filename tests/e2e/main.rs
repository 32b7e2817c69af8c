//! End-to-end tests: the real `weir` binary, real plugins (built by
//! agent/build.rs), real files and real sockets on 127.0.0.1.
mod support;

mod apps;
mod author;
mod check;
mod churn;
mod containers;
mod faults;
mod hostile;
mod http;
mod import;
mod journald;
mod languages;
mod logs;
mod long_lines;
mod multiline;
mod nginx;
mod otlp;
mod persist;
mod poison;
mod process;
mod prometheus;
mod reexpose;
mod reload;
mod reload_live;
mod reload_matrix;
mod remote_write;
mod resets;
mod restart;
mod rotation;
mod scrape;
mod security;
mod state;
mod status;
mod tools;
