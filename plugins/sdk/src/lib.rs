//! Write weir plugins in Rust.
//!
//! A plugin is a type that implements [`LogPlugin`], [`HttpPlugin`] or
//! [`ProcessPlugin`], exported with the matching macro:
//!
//! ```
//! use weir_sdk::{Families, FamilyId, LogPlugin, Output, Batch};
//!
//! struct Lines { total: FamilyId }
//!
//! impl LogPlugin for Lines {
//!     fn init(_config: &str, families: &mut Families) -> Result<Self, String> {
//!         let total = families.counter("app_lines_total", "Lines seen.", &[]);
//!         Ok(Lines { total })
//!     }
//!     fn on_lines(&mut self, batch: &Batch, out: &mut Output) -> Result<(), String> {
//!         out.add(self.total, &[], batch.lines.len() as f64);
//!         Ok(())
//!     }
//! }
//!
//! weir_sdk::export_log_plugin!(Lines);
//! # // Natively (tests, doctests) the plugin is an ordinary type:
//! # let mut f = Families::default();
//! # let mut p = Lines::init("{}", &mut f).unwrap();
//! # let mut out = Output::new();
//! # p.on_lines(&Batch { origin: "t".into(), lines: vec!["a".into(), "b".into()] }, &mut out).unwrap();
//! # assert_eq!(out.len(), 1);
//! ```
//!
//! Helpers for what application logs need: [`logfmt`] (logfmt and other
//! `key=value` lines), [`duration`] (Go and Prometheus durations),
//! [`timestamp`] (RFC 3339, common log format, epoch numbers and more) and,
//! with the `serde` feature, [`settings`] (typed settings whose errors name
//! the key the user wrote).
//!
//! The host owns metric state: a plugin declares its families once, at
//! `init`, and returns updates. [`Output`] merges updates to the same series
//! within one call, so a plugin may emit per line without sending one update
//! per line across the boundary.
#![deny(missing_docs)]

// The generated code names the runtime by this crate's public path.
extern crate self as weir_sdk;

mod bindings;
pub mod duration;
pub mod json;
mod labels;
pub mod logfmt;
mod output;
#[cfg(feature = "serde")]
pub mod settings;
#[cfg(feature = "serde")]
pub mod spec;
pub mod timestamp;
pub mod units;

pub use labels::Labels;
pub use output::Output;
pub use units::Scale;

#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::*;
    pub use wit_bindgen;
}

use bindings::log_world::weir::plugin::types as wit;

/// An HTTP response handed to an [`HttpPlugin`].
pub use bindings::http_world::exports::weir::plugin::http::Response;
/// Log lines handed to a [`LogPlugin`].
pub use bindings::log_world::exports::weir::plugin::log::Batch;
/// Fields a [`ProcessPlugin`] asks the host to read.
pub use bindings::process_world::exports::weir::plugin::process::Fields as ProcessFields;
/// One process of a scan.
pub use bindings::process_world::exports::weir::plugin::process::ProcessInfo;
/// A scan of the process table.
pub use bindings::process_world::exports::weir::plugin::process::Scan;

/// Metric kinds.
pub use wit::MetricKind as Kind;

/// A declared family, as returned by [`Families`] declarations. Copy it
/// into your plugin and pass it to [`Output`] methods. The number is the
/// family's position in declaration order.
///
/// ```
/// let mut f = weir_sdk::Families::default();
/// let a = f.counter("app_a_total", "A.", &[]);
/// let b = f.counter("app_b_total", "B.", &[]);
/// assert_eq!((a, b), (weir_sdk::FamilyId(0), weir_sdk::FamilyId(1)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FamilyId(pub u32);

/// The metric families a plugin declares at `init`. Names and units
/// follow Prometheus' naming rules: base units (`_seconds`, `_bytes`),
/// `_total` on counters.
///
/// ```
/// let mut f = weir_sdk::Families::default();
/// f.counter("app_requests_total", "Requests by route.", &["route"]);
/// f.histogram("app_request_duration_seconds", "Request time.", &["route"], weir_sdk::DEFAULT_BUCKETS);
/// f.with_unit("seconds");
/// assert_eq!(f.len(), 2);
/// ```
#[derive(Default, Debug)]
pub struct Families {
    list: Vec<wit::Family>,
}

/// The default histogram buckets of the Prometheus client libraries (in
/// seconds: 5 ms to 10 s).
///
/// ```
/// assert_eq!(weir_sdk::DEFAULT_BUCKETS.len(), 11);
/// ```
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Families {
    /// Declare a family of any kind. `unit` may be empty; `buckets` is for
    /// histograms only (empty means [`DEFAULT_BUCKETS`]).
    ///
    /// ```
    /// use weir_sdk::{Families, Kind};
    /// let mut f = Families::default();
    /// let id = f.declare(Kind::Gauge, "app_queue_bytes", "Bytes queued.", "bytes", &["queue"], &[]);
    /// assert_eq!(f.kind(id), Some(Kind::Gauge));
    /// ```
    pub fn declare(
        &mut self,
        kind: Kind,
        name: &str,
        help: &str,
        unit: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> FamilyId {
        let id = FamilyId(self.list.len() as u32);
        self.list.push(wit::Family {
            name: name.to_string(),
            kind,
            help: help.to_string(),
            unit: unit.to_string(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            buckets: buckets.to_vec(),
        });
        id
    }

    /// Declare a counter. Its name should end in `_total`.
    ///
    /// ```
    /// let mut f = weir_sdk::Families::default();
    /// let id = f.counter("app_errors_total", "Errors by kind.", &["kind"]);
    /// assert_eq!(f.name(id), Some("app_errors_total"));
    /// ```
    pub fn counter(&mut self, name: &str, help: &str, labels: &[&str]) -> FamilyId {
        self.declare(Kind::Counter, name, help, "", labels, &[])
    }

    /// Declare a gauge.
    ///
    /// ```
    /// let mut f = weir_sdk::Families::default();
    /// let id = f.gauge("app_connections", "Open connections.", &[]);
    /// assert_eq!(f.kind(id), Some(weir_sdk::Kind::Gauge));
    /// ```
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[&str]) -> FamilyId {
        self.declare(Kind::Gauge, name, help, "", labels, &[])
    }

    /// Declare a histogram with the given bucket upper bounds.
    ///
    /// ```
    /// let mut f = weir_sdk::Families::default();
    /// let id = f.histogram("app_backup_size_bytes", "Backup sizes.", &[], &[1e6, 1e8, 1e10]);
    /// f.with_unit("bytes");
    /// assert_eq!(f.kind(id), Some(weir_sdk::Kind::Histogram));
    /// ```
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> FamilyId {
        self.declare(Kind::Histogram, name, help, "", labels, buckets)
    }

    /// Set the unit of the last declared family (`seconds`, `bytes`, ...).
    ///
    /// ```
    /// let mut f = weir_sdk::Families::default();
    /// f.gauge("app_uptime_seconds", "Uptime.", &[]);
    /// f.with_unit("seconds");
    /// assert_eq!(f.len(), 1);
    /// ```
    pub fn with_unit(&mut self, unit: &str) -> &mut Self {
        if let Some(f) = self.list.last_mut() {
            f.unit = unit.to_string();
        }
        self
    }

    /// How many families are declared.
    ///
    /// ```
    /// assert_eq!(weir_sdk::Families::default().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether no family is declared.
    ///
    /// ```
    /// assert!(weir_sdk::Families::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The declared name of a family.
    ///
    /// ```
    /// let f = weir_sdk::Families::default();
    /// assert_eq!(f.name(weir_sdk::FamilyId(0)), None);
    /// ```
    pub fn name(&self, id: FamilyId) -> Option<&str> {
        self.list.get(id.0 as usize).map(|f| f.name.as_str())
    }

    /// The declared label names of a family.
    ///
    /// ```
    /// let mut f = weir_sdk::Families::default();
    /// let id = f.counter("app_requests_total", "Requests.", &["method", "status"]);
    /// assert_eq!(f.labels(id).unwrap(), ["method", "status"]);
    /// ```
    pub fn labels(&self, id: FamilyId) -> Option<&[String]> {
        self.list.get(id.0 as usize).map(|f| f.labels.as_slice())
    }

    /// The declared kind of a family.
    ///
    /// ```
    /// let mut f = weir_sdk::Families::default();
    /// let id = f.counter("app_requests_total", "Requests.", &[]);
    /// assert_eq!(f.kind(id), Some(weir_sdk::Kind::Counter));
    /// ```
    pub fn kind(&self, id: FamilyId) -> Option<Kind> {
        self.list.get(id.0 as usize).map(|f| f.kind)
    }

    /// The kind of each declared family, by id.
    ///
    /// ```
    /// let mut f = weir_sdk::Families::default();
    /// f.gauge("queue_depth", "Jobs waiting.", &[]);
    /// assert_eq!(f.kinds(), vec![weir_sdk::Kind::Gauge]);
    /// ```
    pub fn kinds(&self) -> Vec<Kind> {
        self.list.iter().map(|f| f.kind).collect()
    }

    #[doc(hidden)]
    pub fn into_wit(self) -> Vec<wit::Family> {
        self.list
    }
}

/// A plugin fed with log lines. Updates accumulate.
///
/// ```
/// use weir_sdk::{logfmt, Batch, Families, FamilyId, LogPlugin, Output};
///
/// pub struct Requests { total: FamilyId }
///
/// impl LogPlugin for Requests {
///     fn init(_config: &str, families: &mut Families) -> Result<Self, String> {
///         Ok(Requests { total: families.counter("app_requests_total", "Requests by status.", &["status"]) })
///     }
///     fn on_lines(&mut self, batch: &Batch, out: &mut Output) -> Result<(), String> {
///         for line in &batch.lines {
///             match logfmt::get(line, "status") {
///                 Some(status) => out.add(self.total, &[status.as_ref()], 1.0),
///                 None => out.reject(),
///             }
///         }
///         Ok(())
///     }
/// }
/// weir_sdk::export_log_plugin!(Requests);
///
/// let mut p = Requests::init("{}", &mut Families::default()).unwrap();
/// let mut out = Output::new();
/// let batch = Batch { origin: "app.log".into(), lines: vec!["status=200".into(), "junk".into()] };
/// p.on_lines(&batch, &mut out).unwrap();
/// assert_eq!((out.len(), out.rejected()), (1, 1));
/// ```
pub trait LogPlugin: Sized + 'static {
    /// Read the pipeline's plugin settings (JSON text; `{}` when none) and
    /// declare families. An `Err` is shown to the user as is; with
    /// [`settings`], it names the key the user wrote.
    ///
    /// ```
    /// # use weir_sdk::{Batch, Families, FamilyId, LogPlugin, Output};
    /// struct P;
    /// impl LogPlugin for P {
    ///     fn init(config: &str, _families: &mut Families) -> Result<Self, String> {
    ///         if config.contains("bad") { return Err("prefix: must not be \"bad\"".into()) }
    ///         Ok(P)
    ///     }
    ///     fn on_lines(&mut self, _: &Batch, _: &mut Output) -> Result<(), String> { Ok(()) }
    /// }
    /// assert!(P::init(r#"{"prefix":"bad"}"#, &mut Families::default()).is_err());
    /// ```
    fn init(config: &str, families: &mut Families) -> Result<Self, String>;
    /// Handle a batch of lines. Count lines you cannot parse with
    /// [`Output::reject`]; return `Err` only when the whole batch failed.
    ///
    /// ```
    /// # use weir_sdk::{Batch, Families, FamilyId, LogPlugin, Output};
    /// struct Lines(FamilyId);
    /// impl LogPlugin for Lines {
    ///     fn init(_: &str, f: &mut Families) -> Result<Self, String> { Ok(Lines(f.counter("app_lines_total", "Lines.", &[]))) }
    ///     fn on_lines(&mut self, batch: &Batch, out: &mut Output) -> Result<(), String> {
    ///         out.add(self.0, &[], batch.lines.len() as f64);
    ///         Ok(())
    ///     }
    /// }
    /// let mut p = Lines::init("{}", &mut Families::default()).unwrap();
    /// let mut out = Output::new();
    /// p.on_lines(&Batch { origin: "x".into(), lines: vec!["a".into()] }, &mut out).unwrap();
    /// assert_eq!(out.len(), 1);
    /// ```
    fn on_lines(&mut self, batch: &Batch, out: &mut Output) -> Result<(), String>;
}

/// A plugin fed with HTTP responses. Each response is a snapshot: the
/// updates replace the pipeline's previous series.
///
/// ```
/// use weir_sdk::{Families, FamilyId, HttpPlugin, Output, Response};
///
/// struct Up { up: FamilyId }
/// impl HttpPlugin for Up {
///     fn init(_: &str, f: &mut Families) -> Result<Self, String> {
///         Ok(Up { up: f.gauge("app_up", "1 when the status page says ok.", &[]) })
///     }
///     fn on_response(&mut self, r: &Response, out: &mut Output) -> Result<(), String> {
///         let ok = r.status == 200 && r.body.starts_with(b"ok");
///         out.set(self.up, &[], if ok { 1.0 } else { 0.0 });
///         Ok(())
///     }
/// }
/// weir_sdk::export_http_plugin!(Up);
///
/// let mut p = Up::init("{}", &mut Families::default()).unwrap();
/// let r = Response { url: "http://127.0.0.1/health".into(), status: 200, headers: vec![], body: b"ok".to_vec() };
/// let mut out = Output::new();
/// p.on_response(&r, &mut out).unwrap();
/// assert_eq!(out.len(), 1);
/// ```
pub trait HttpPlugin: Sized + 'static {
    /// As [`LogPlugin::init`].
    ///
    /// ```
    /// # use weir_sdk::{Families, HttpPlugin, Output, Response};
    /// struct P;
    /// impl HttpPlugin for P {
    ///     fn init(_: &str, _: &mut Families) -> Result<Self, String> { Ok(P) }
    ///     fn on_response(&mut self, _: &Response, _: &mut Output) -> Result<(), String> { Ok(()) }
    /// }
    /// assert!(P::init("{}", &mut Families::default()).is_ok());
    /// ```
    fn init(config: &str, families: &mut Families) -> Result<Self, String>;
    /// Handle one response: return the complete current set of series.
    ///
    /// ```
    /// # use weir_sdk::{Families, HttpPlugin, Output, Response};
    /// struct P;
    /// impl HttpPlugin for P {
    ///     fn init(_: &str, _: &mut Families) -> Result<Self, String> { Ok(P) }
    ///     fn on_response(&mut self, r: &Response, _: &mut Output) -> Result<(), String> {
    ///         if r.status != 200 { return Err(format!("status {}", r.status)) }
    ///         Ok(())
    ///     }
    /// }
    /// let r = Response { url: "u".into(), status: 503, headers: vec![], body: vec![] };
    /// assert!(P.on_response(&r, &mut Output::new()).is_err());
    /// ```
    fn on_response(&mut self, response: &Response, out: &mut Output) -> Result<(), String>;
}

/// A plugin fed with process-table scans. Each scan is a snapshot.
///
/// ```
/// use weir_sdk::{Families, FamilyId, Output, ProcessFields, ProcessPlugin, Scan};
///
/// struct Count { procs: FamilyId }
/// impl ProcessPlugin for Count {
///     fn init(_: &str, f: &mut Families) -> Result<(Self, ProcessFields), String> {
///         let procs = f.gauge("host_processes", "Processes by state.", &["state"]);
///         Ok((Count { procs }, ProcessFields::empty()))
///     }
///     fn on_scan(&mut self, scan: &Scan, out: &mut Output) -> Result<(), String> {
///         for p in &scan.processes {
///             out.add(self.procs, &[p.state.as_str()], 1.0);
///         }
///         Ok(())
///     }
/// }
/// weir_sdk::export_process_plugin!(Count);
/// ```
pub trait ProcessPlugin: Sized + 'static {
    /// As [`LogPlugin::init`]; also say which costly fields to read.
    ///
    /// ```
    /// # use weir_sdk::{Families, Output, ProcessFields, ProcessPlugin, Scan};
    /// struct P;
    /// impl ProcessPlugin for P {
    ///     fn init(_: &str, _: &mut Families) -> Result<(Self, ProcessFields), String> {
    ///         Ok((P, ProcessFields::all()))
    ///     }
    ///     fn on_scan(&mut self, _: &Scan, _: &mut Output) -> Result<(), String> { Ok(()) }
    /// }
    /// assert!(P::init("{}", &mut Families::default()).unwrap().1.contains(ProcessFields::all()));
    /// ```
    fn init(config: &str, families: &mut Families) -> Result<(Self, ProcessFields), String>;
    /// Handle one scan: return the complete current set of series.
    ///
    /// ```
    /// # use weir_sdk::{Families, FamilyId, Output, ProcessFields, ProcessPlugin, Scan};
    /// struct P(FamilyId);
    /// impl ProcessPlugin for P {
    ///     fn init(_: &str, f: &mut Families) -> Result<(Self, ProcessFields), String> {
    ///         Ok((P(f.gauge("host_processes_total_count", "Processes.", &[])), ProcessFields::empty()))
    ///     }
    ///     fn on_scan(&mut self, scan: &Scan, out: &mut Output) -> Result<(), String> {
    ///         out.set(self.0, &[], scan.processes.len() as f64);
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn on_scan(&mut self, scan: &Scan, out: &mut Output) -> Result<(), String>;
}

/// Logging through the agent: lines are tagged with the pipeline and plugin.
/// Natively (in tests) they go to stderr.
///
/// ```
/// weir_sdk::log::info("loaded 3 rules");
/// ```
pub mod log {
    use crate::bindings::log_world::weir::plugin::host;

    fn emit(level: host::Level, message: &str) {
        #[cfg(target_arch = "wasm32")]
        host::log(level, message);
        #[cfg(not(target_arch = "wasm32"))]
        eprintln!("[{level:?}] {message}");
    }

    /// Log at debug level.
    ///
    /// ```
    /// weir_sdk::log::debug("a message for the agent's log");
    /// ```
    pub fn debug(message: &str) {
        emit(host::Level::Debug, message)
    }
    /// Log at info level.
    ///
    /// ```
    /// weir_sdk::log::info("a message for the agent's log");
    /// ```
    pub fn info(message: &str) {
        emit(host::Level::Info, message)
    }
    /// Log at warn level.
    ///
    /// ```
    /// weir_sdk::log::warn("a message for the agent's log");
    /// ```
    pub fn warn(message: &str) {
        emit(host::Level::Warn, message)
    }
    /// Log at error level.
    ///
    /// ```
    /// weir_sdk::log::error("a message for the agent's log");
    /// ```
    pub fn error(message: &str) {
        emit(host::Level::Error, message)
    }
}

#[doc(hidden)]
pub mod glue {
    //! What the export macros call. One plugin instance lives in a
    //! thread-local: a component instance is single-threaded.
    use super::*;
    use std::any::Any;
    use std::cell::RefCell;

    thread_local! {
        static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
        // Kinds of the families declared so far, so that each call's Output
        // merges gauge updates as the host would apply them.
        static KINDS: RefCell<Vec<Kind>> = const { RefCell::new(Vec::new()) };
    }

    fn declared(families: Families) -> Vec<wit::Family> {
        KINDS.with(|k| *k.borrow_mut() = families.kinds());
        families.into_wit()
    }

    /// Run one call with an Output that knows the kinds; keep the kinds it
    /// learnt (families declared during the call) for the next.
    fn call<T: 'static>(
        f: impl FnOnce(&mut T, &mut Output) -> Result<(), String>,
    ) -> Result<wit::Output, String> {
        with_state::<T, _>(|p| {
            let mut out = Output::with_kinds(KINDS.with(|k| k.borrow().clone()));
            f(p, &mut out)?;
            let (out, kinds) = out.into_parts();
            KINDS.with(|k| *k.borrow_mut() = kinds);
            Ok(out)
        })
    }

    fn with_state<T: 'static, R>(f: impl FnOnce(&mut T) -> Result<R, String>) -> Result<R, String> {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            match s.as_mut().and_then(|b| b.downcast_mut::<T>()) {
                Some(p) => f(p),
                None => Err("plugin called before a successful init".to_string()),
            }
        })
    }

    fn store<T: 'static>(p: T) {
        STATE.with(|s| *s.borrow_mut() = Some(Box::new(p)));
    }

    pub fn log_init<T: LogPlugin>(config: String) -> Result<Vec<wit::Family>, String> {
        let mut families = Families::default();
        let p = T::init(&config, &mut families)?;
        store(p);
        Ok(declared(families))
    }

    pub fn log_on_lines<T: LogPlugin>(batch: Batch) -> Result<wit::Output, String> {
        call::<T>(|p, out| p.on_lines(&batch, out))
    }

    pub fn http_init<T: HttpPlugin>(config: String) -> Result<Vec<wit::Family>, String> {
        let mut families = Families::default();
        let p = T::init(&config, &mut families)?;
        store(p);
        Ok(declared(families))
    }

    pub fn http_on_response<T: HttpPlugin>(r: Response) -> Result<wit::Output, String> {
        call::<T>(|p, out| p.on_response(&r, out))
    }

    pub fn process_init<T: ProcessPlugin>(
        config: String,
    ) -> Result<crate::bindings::process_world::exports::weir::plugin::process::Declaration, String>
    {
        let mut families = Families::default();
        let (p, fields) = T::init(&config, &mut families)?;
        store(p);
        Ok(
            crate::bindings::process_world::exports::weir::plugin::process::Declaration {
                families: declared(families),
                fields,
            },
        )
    }

    pub fn process_on_scan<T: ProcessPlugin>(scan: Scan) -> Result<wit::Output, String> {
        call::<T>(|p, out| p.on_scan(&scan, out))
    }
}

/// Export a [`LogPlugin`] as the component's `weir:plugin/log` interface.
/// Once per plugin crate; natively (tests) it expands to nothing.
///
/// ```
/// # use weir_sdk::{Batch, Families, LogPlugin, Output};
/// struct P;
/// impl LogPlugin for P {
///     fn init(_: &str, _: &mut Families) -> Result<Self, String> { Ok(P) }
///     fn on_lines(&mut self, _: &Batch, _: &mut Output) -> Result<(), String> { Ok(()) }
/// }
/// weir_sdk::export_log_plugin!(P);
/// ```
#[macro_export]
macro_rules! export_log_plugin {
    ($t:ty) => {
        #[doc(hidden)]
        #[cfg(target_arch = "wasm32")]
        pub struct __WeirLogExport;
        #[cfg(target_arch = "wasm32")]
        impl $crate::__private::log_world::exports::weir::plugin::log::Guest for __WeirLogExport {
            fn init(
                config: ::std::string::String,
            ) -> ::std::result::Result<
                ::std::vec::Vec<$crate::__private::log_world::weir::plugin::types::Family>,
                ::std::string::String,
            > {
                $crate::glue::log_init::<$t>(config)
            }
            fn on_lines(
                batch: $crate::Batch,
            ) -> ::std::result::Result<
                $crate::__private::log_world::weir::plugin::types::Output,
                ::std::string::String,
            > {
                $crate::glue::log_on_lines::<$t>(batch)
            }
        }
        // Exported symbol names hold ':' and link only into wasm; natively
        // the plugin type stays testable through its trait.
        #[cfg(target_arch = "wasm32")]
        $crate::__private::log_world::export_log!(__WeirLogExport with_types_in $crate::__private::log_world);
    };
}

/// Export an [`HttpPlugin`] as the component's `weir:plugin/http` interface.
///
/// ```
/// # use weir_sdk::{Families, HttpPlugin, Output, Response};
/// struct P;
/// impl HttpPlugin for P {
///     fn init(_: &str, _: &mut Families) -> Result<Self, String> { Ok(P) }
///     fn on_response(&mut self, _: &Response, _: &mut Output) -> Result<(), String> { Ok(()) }
/// }
/// weir_sdk::export_http_plugin!(P);
/// ```
#[macro_export]
macro_rules! export_http_plugin {
    ($t:ty) => {
        #[doc(hidden)]
        #[cfg(target_arch = "wasm32")]
        pub struct __WeirHttpExport;
        #[cfg(target_arch = "wasm32")]
        impl $crate::__private::http_world::exports::weir::plugin::http::Guest for __WeirHttpExport {
            fn init(
                config: ::std::string::String,
            ) -> ::std::result::Result<
                ::std::vec::Vec<$crate::__private::log_world::weir::plugin::types::Family>,
                ::std::string::String,
            > {
                $crate::glue::http_init::<$t>(config)
            }
            fn on_response(
                response: $crate::Response,
            ) -> ::std::result::Result<
                $crate::__private::log_world::weir::plugin::types::Output,
                ::std::string::String,
            > {
                $crate::glue::http_on_response::<$t>(response)
            }
        }
        // Exported symbol names hold ':' and link only into wasm; natively
        // the plugin type stays testable through its trait.
        #[cfg(target_arch = "wasm32")]
        $crate::__private::http_world::export_http!(__WeirHttpExport with_types_in $crate::__private::http_world);
    };
}

/// Export a [`ProcessPlugin`] as the component's `weir:plugin/process` interface.
///
/// ```
/// # use weir_sdk::{Families, Output, ProcessFields, ProcessPlugin, Scan};
/// struct P;
/// impl ProcessPlugin for P {
///     fn init(_: &str, _: &mut Families) -> Result<(Self, ProcessFields), String> { Ok((P, ProcessFields::empty())) }
///     fn on_scan(&mut self, _: &Scan, _: &mut Output) -> Result<(), String> { Ok(()) }
/// }
/// weir_sdk::export_process_plugin!(P);
/// ```
#[macro_export]
macro_rules! export_process_plugin {
    ($t:ty) => {
        #[doc(hidden)]
        #[cfg(target_arch = "wasm32")]
        pub struct __WeirProcessExport;
        #[cfg(target_arch = "wasm32")]
        impl $crate::__private::process_world::exports::weir::plugin::process::Guest
            for __WeirProcessExport
        {
            fn init(
                config: ::std::string::String,
            ) -> ::std::result::Result<
                $crate::__private::process_world::exports::weir::plugin::process::Declaration,
                ::std::string::String,
            > {
                $crate::glue::process_init::<$t>(config)
            }
            fn on_scan(
                scan: $crate::Scan,
            ) -> ::std::result::Result<
                $crate::__private::log_world::weir::plugin::types::Output,
                ::std::string::String,
            > {
                $crate::glue::process_on_scan::<$t>(scan)
            }
        }
        // Exported symbol names hold ':' and link only into wasm; natively
        // the plugin type stays testable through its trait.
        #[cfg(target_arch = "wasm32")]
        $crate::__private::process_world::export_process!(__WeirProcessExport with_types_in $crate::__private::process_world);
    };
}
