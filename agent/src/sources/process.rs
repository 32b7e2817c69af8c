//! Scanning the process table (`/proc`), reading only the fields the
//! pipeline's plugin asked for. Processes that vanish mid-scan are normal;
//! files we may not read (another user's `fd/`, `io`) are counted, not
//! fatal.
use crate::runtime::bindings::process::exports::weir::plugin::process::{
    Fields, ProcessInfo, Scan,
};
use procfs::process::{LimitValue, Process};
use std::time::{SystemTime, UNIX_EPOCH};

/// Converts kernel units.
pub struct Scanner {
    ticks: f64,
    page: u64,
    boot: f64,
}

/// What a scan could not read.
#[derive(Default, Debug, Clone, Copy)]
pub struct ScanIssues {
    /// Files refused by permissions.
    pub denied: u64,
    /// Processes gone between listing and reading.
    pub vanished: u64,
}

impl Scanner {
    /// Read the clock tick, page size and boot time once.
    pub fn new() -> Result<Self, String> {
        let boot = procfs::boot_time_secs().map_err(|e| format!("reading /proc/stat: {e}"))?;
        Ok(Scanner {
            ticks: procfs::ticks_per_second() as f64,
            page: procfs::page_size(),
            boot: boot as f64,
        })
    }

    /// One scan.
    pub fn scan(&self, fields: Fields) -> Result<(Scan, ScanIssues), String> {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let mut issues = ScanIssues::default();
        let mut processes = Vec::new();
        let all = procfs::process::all_processes().map_err(|e| format!("listing /proc: {e}"))?;
        for p in all {
            let Ok(p) = p else {
                issues.vanished += 1;
                continue;
            };
            match self.read(&p, fields, &mut issues) {
                Some(info) => processes.push(info),
                None => issues.vanished += 1,
            }
        }
        Ok((Scan { time, processes }, issues))
    }

    fn read(&self, p: &Process, fields: Fields, issues: &mut ScanIssues) -> Option<ProcessInfo> {
        let stat = p.stat().ok()?;
        let uid = p.uid().unwrap_or(u32::MAX);
        let mut denied = |r: &procfs::ProcError| {
            if matches!(r, procfs::ProcError::PermissionDenied(_)) {
                issues.denied += 1;
            }
        };
        let cmdline = if fields.contains(Fields::CMDLINE) {
            p.cmdline().unwrap_or_default()
        } else {
            Vec::new()
        };
        let exe = if fields.contains(Fields::EXE) {
            match p.exe() {
                Ok(e) => e.to_string_lossy().into_owned(),
                Err(e) => {
                    denied(&e);
                    String::new()
                }
            }
        } else {
            String::new()
        };
        let (open_fds, max_fds) = if fields.contains(Fields::FDS) {
            let open = match p.fd_count() {
                Ok(n) => Some(n as u32),
                Err(e) => {
                    denied(&e);
                    None
                }
            };
            let max = p
                .limits()
                .ok()
                .and_then(|l| match l.max_open_files.soft_limit {
                    LimitValue::Value(v) => Some(v),
                    LimitValue::Unlimited => None,
                });
            (open, max)
        } else {
            (None, None)
        };
        let (read_bytes, write_bytes) = if fields.contains(Fields::IO) {
            match p.io() {
                Ok(io) => (Some(io.read_bytes), Some(io.write_bytes)),
                Err(e) => {
                    denied(&e);
                    (None, None)
                }
            }
        } else {
            (None, None)
        };
        let (vol, nonvol) = if fields.contains(Fields::CONTEXT_SWITCHES) {
            match p.status() {
                Ok(s) => (s.voluntary_ctxt_switches, s.nonvoluntary_ctxt_switches),
                Err(_) => (None, None),
            }
        } else {
            (None, None)
        };
        Some(ProcessInfo {
            pid: stat.pid.max(0) as u32,
            ppid: stat.ppid.max(0) as u32,
            comm: stat.comm,
            exe,
            cmdline,
            state: stat.state.to_string(),
            uid,
            start_time: self.boot + stat.starttime as f64 / self.ticks,
            cpu_user_seconds: stat.utime as f64 / self.ticks,
            cpu_system_seconds: stat.stime as f64 / self.ticks,
            resident_bytes: stat.rss * self.page,
            virtual_bytes: stat.vsize,
            threads: stat.num_threads.max(0) as u32,
            minor_faults: stat.minflt,
            major_faults: stat.majflt,
            open_fds,
            max_fds,
            read_bytes,
            write_bytes,
            voluntary_ctxt_switches: vol,
            nonvoluntary_ctxt_switches: nonvol,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_this_process_with_its_memory() {
        let s = Scanner::new().expect("scanner");
        let (scan, _) = s.scan(Fields::CMDLINE | Fields::FDS).expect("scan");
        let me = std::process::id();
        let p = scan
            .processes
            .iter()
            .find(|p| p.pid == me)
            .expect("self in scan");
        assert!(p.resident_bytes > 0);
        assert!(p.open_fds.unwrap_or(0) >= 3);
        assert!(!p.cmdline.is_empty());
        assert!(p.exe.is_empty(), "exe was not asked for");
        assert!(p.start_time > 1.0e9 && p.start_time <= scan.time + 1.0);
    }
}
