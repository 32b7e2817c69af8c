//! Write weir plugins in Rust.
//!
//! A plugin is a type that implements [`LogPlugin`], [`HttpPlugin`] or
//! [`ProcessPlugin`], exported with the matching macro:
//!
//! ```ignore
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
//! ```
//!
//! The host owns metric state: a plugin declares its families once, at
//! `init`, and returns updates. [`Output`] merges updates to the same series
//! within one call, so a plugin may emit per line without sending one update
//! per line across the boundary.
#![deny(missing_docs)]

// The generated code names the runtime by this crate's public path.
extern crate self as weir_sdk;

mod bindings;
mod output;
#[cfg(feature = "serde")]
pub mod spec;

pub use output::Output;

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
/// into your plugin and pass it to [`Output`] methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FamilyId(pub u32);

/// The metric families a plugin declares at `init`.
#[derive(Default, Debug)]
pub struct Families {
    list: Vec<wit::Family>,
}

/// The default histogram buckets of the Prometheus client libraries.
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Families {
    /// Declare a family of any kind. `unit` may be empty; `buckets` is for
    /// histograms only (empty means [`DEFAULT_BUCKETS`]).
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
    pub fn counter(&mut self, name: &str, help: &str, labels: &[&str]) -> FamilyId {
        self.declare(Kind::Counter, name, help, "", labels, &[])
    }

    /// Declare a gauge.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[&str]) -> FamilyId {
        self.declare(Kind::Gauge, name, help, "", labels, &[])
    }

    /// Declare a histogram with the given bucket upper bounds.
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
    pub fn with_unit(&mut self, unit: &str) -> &mut Self {
        if let Some(f) = self.list.last_mut() {
            f.unit = unit.to_string();
        }
        self
    }

    /// How many families are declared.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether no family is declared.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The declared name of a family.
    pub fn name(&self, id: FamilyId) -> Option<&str> {
        self.list.get(id.0 as usize).map(|f| f.name.as_str())
    }

    /// The declared label names of a family.
    pub fn labels(&self, id: FamilyId) -> Option<&[String]> {
        self.list.get(id.0 as usize).map(|f| f.labels.as_slice())
    }

    /// The declared kind of a family.
    pub fn kind(&self, id: FamilyId) -> Option<Kind> {
        self.list.get(id.0 as usize).map(|f| f.kind)
    }

    #[doc(hidden)]
    pub fn into_wit(self) -> Vec<wit::Family> {
        self.list
    }
}

/// A plugin fed with log lines. Updates accumulate.
pub trait LogPlugin: Sized + 'static {
    /// Read the pipeline's plugin settings (JSON text; `{}` when none) and
    /// declare families. An `Err` is shown to the user as is.
    fn init(config: &str, families: &mut Families) -> Result<Self, String>;
    /// Handle a batch of lines. Count lines you cannot parse with
    /// [`Output::reject`]; return `Err` only when the whole batch failed.
    fn on_lines(&mut self, batch: &Batch, out: &mut Output) -> Result<(), String>;
}

/// A plugin fed with HTTP responses. Each response is a snapshot: the
/// updates replace the pipeline's previous series.
pub trait HttpPlugin: Sized + 'static {
    /// As [`LogPlugin::init`].
    fn init(config: &str, families: &mut Families) -> Result<Self, String>;
    /// Handle one response.
    fn on_response(&mut self, response: &Response, out: &mut Output) -> Result<(), String>;
}

/// A plugin fed with process-table scans. Each scan is a snapshot.
pub trait ProcessPlugin: Sized + 'static {
    /// As [`LogPlugin::init`]; also say which costly fields to read.
    fn init(config: &str, families: &mut Families) -> Result<(Self, ProcessFields), String>;
    /// Handle one scan.
    fn on_scan(&mut self, scan: &Scan, out: &mut Output) -> Result<(), String>;
}

/// Logging through the agent: lines are tagged with the pipeline and plugin.
pub mod log {
    use crate::bindings::log_world::weir::plugin::host;

    fn emit(level: host::Level, message: &str) {
        #[cfg(target_arch = "wasm32")]
        host::log(level, message);
        #[cfg(not(target_arch = "wasm32"))]
        eprintln!("[{level:?}] {message}");
    }

    /// Log at debug level.
    pub fn debug(message: &str) {
        emit(host::Level::Debug, message)
    }
    /// Log at info level.
    pub fn info(message: &str) {
        emit(host::Level::Info, message)
    }
    /// Log at warn level.
    pub fn warn(message: &str) {
        emit(host::Level::Warn, message)
    }
    /// Log at error level.
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
        Ok(families.into_wit())
    }

    pub fn log_on_lines<T: LogPlugin>(batch: Batch) -> Result<wit::Output, String> {
        with_state::<T, _>(|p| {
            let mut out = Output::new();
            p.on_lines(&batch, &mut out)?;
            Ok(out.finish())
        })
    }

    pub fn http_init<T: HttpPlugin>(config: String) -> Result<Vec<wit::Family>, String> {
        let mut families = Families::default();
        let p = T::init(&config, &mut families)?;
        store(p);
        Ok(families.into_wit())
    }

    pub fn http_on_response<T: HttpPlugin>(r: Response) -> Result<wit::Output, String> {
        with_state::<T, _>(|p| {
            let mut out = Output::new();
            p.on_response(&r, &mut out)?;
            Ok(out.finish())
        })
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
                families: families.into_wit(),
                fields,
            },
        )
    }

    pub fn process_on_scan<T: ProcessPlugin>(scan: Scan) -> Result<wit::Output, String> {
        with_state::<T, _>(|p| {
            let mut out = Output::new();
            p.on_scan(&scan, &mut out)?;
            Ok(out.finish())
        })
    }
}

/// Export a [`LogPlugin`] as the component's `weir:plugin/log` interface.
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
