//! Scanning the process table (`/proc`), reading only the fields the
//! pipeline's plugin asked for. Processes that vanish mid-scan are normal;
//! files we may not read (another user's `exe`, `io`) are counted, not
//! fatal.
//!
//! What a process costs, each scan: a read of `/proc/PID/stat` and one of
//! `/proc/PID/status` (when context switches are asked for) or
//! `/proc/PID/statm` (the exact resident set: that of `stat` can be 8% short
//! for a small process), and of what its plugin asked for: `cmdline`, the
//! `exe` link, the size of `fd/` and a `prlimit` (reading
//! `/proc/PID/limits` costs 30 times more; it is the fallback for another
//! user's process), `io`.
//!
//! Opening and closing a `/proc` file costs about as much as reading it, so
//! the files of a process are kept open from scan to scan and read again
//! from offset 0, which makes the kernel write them afresh. A kept file
//! fails once its process has exited, and a reused pid is a new process
//! with new files. How many files are kept is bounded (see
//! [`MAX_KEPT_FILES`]); past that, files are opened and closed each scan.
//! Each kept file but `fd/` and `cmdline` holds about 4.5 KiB of kernel
//! memory (a page of text): 13 KiB a process with every field asked for.
use crate::runtime::bindings::process::exports::weir::plugin::process::{
    Fields, ProcessInfo, Scan,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the process table is.
const PROC: &str = "/proc";

/// Most files a scanner keeps open between scans: 4 per process when every
/// field but `cmdline` is asked for (`stat`, `status`, `io`, `fd/`), one
/// more for `cmdline` and one more for another user's process (its
/// `limits`), so about 2,000 processes. At most a quarter of the soft limit
/// on open files is used.
pub const MAX_KEPT_FILES: usize = 8192;

/// Boot time estimates further apart than this (seconds) mean the wall
/// clock was set: start times follow. Less than the plugins' margin for
/// recognising a process by its start time, and more than the estimate's
/// noise (`/proc/uptime` has centiseconds).
const BOOT_RESYNC: f64 = 0.1;

/// `PF_KTHREAD` in the flags of `/proc/PID/stat`: a kernel thread, which
/// has no open files.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Converts kernel units; owns the files and buffers scans reuse. One per
/// pipeline, used from its thread.
pub struct Scanner {
    ticks: f64,
    page: u64,
    /// Whether the size of `/proc/PID/fd` is the number of open files
    /// (Linux 6.2 and later); else the entries are counted.
    fd_size_counts: bool,
    keys: Keys,
    state: RefCell<State>,
}

/// What a scan could not read.
#[derive(Default, Debug, Clone, Copy)]
pub struct ScanIssues {
    /// Files refused by permissions.
    pub denied: u64,
    /// Processes gone between listing and reading.
    pub vanished: u64,
}

/// What scans reuse.
struct State {
    /// Seconds since the epoch at boot, to which start times (in clock
    /// ticks since boot) are added.
    boot: f64,
    path: String,
    data: Vec<u8>,
    kept: HashMap<u32, Kept>,
    /// Files held in `kept`.
    kept_files: usize,
    /// Most files `kept` may hold.
    budget: usize,
    generation: u64,
    last_count: usize,
}

/// The files of one process, kept open between scans.
#[derive(Default)]
struct Kept {
    stat: Option<File>,
    io: Option<File>,
    status: Option<File>,
    statm: Option<File>,
    /// `/proc/PID/fd`, opened with `O_PATH`: its size is read with `fstat`.
    fd_dir: Option<File>,
    /// Only for processes `prlimit` may not query.
    limits: Option<File>,
    cmdline: Option<File>,
    generation: u64,
}

impl Kept {
    fn files(&self) -> usize {
        [
            &self.stat,
            &self.io,
            &self.status,
            &self.statm,
            &self.fd_dir,
            &self.limits,
            &self.cmdline,
        ]
        .iter()
        .filter(|f| f.is_some())
        .count()
    }
}

impl State {
    /// Point `path` at `/proc/PID/file`.
    fn at(&mut self, pid: u32, file: &str) -> &str {
        self.path.clear();
        // Writing to a String cannot fail.
        let _ = write!(self.path, "{PROC}/{pid}/{file}");
        &self.path
    }

    /// Read `/proc/PID/file` whole into `data` through the kept file in
    /// `slot`, opening (and keeping, within the budget) it when there is
    /// none or it failed. Returns the length read.
    fn read(&mut self, pid: u32, file: &str, slot: &mut Option<File>) -> std::io::Result<usize> {
        if let Some(f) = slot {
            if let Ok(n) = read_whole(f, &mut self.data) {
                return Ok(n);
            }
            *slot = None;
            self.kept_files -= 1;
        }
        let f = File::open(self.at(pid, file))?;
        let n = read_whole(&f, &mut self.data)?;
        if self.kept_files < self.budget {
            *slot = Some(f);
            self.kept_files += 1;
        }
        Ok(n)
    }
}

/// Read a `/proc` file from offset 0 to its end into `buf` (grown as
/// needed); returns the length read. From offset 0, the kernel writes the
/// file afresh.
///
/// The files read here are written whole by the kernel on the first read,
/// so a short read that ends in a newline is the end of the file: stopping
/// there saves the read that would return 0.
fn read_whole(f: &File, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    if buf.len() < 4096 {
        buf.resize(4096, 0);
    }
    let mut n = 0;
    loop {
        if n == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match f.read_at(&mut buf[n..], n as u64) {
            Ok(0) => return Ok(n),
            Ok(k) => {
                n += k;
                if n < buf.len() && buf[n - 1] == b'\n' {
                    return Ok(n);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The fields of `/proc/PID/stat` a scan uses.
#[derive(Debug, PartialEq)]
struct Stat<'a> {
    comm: &'a [u8],
    state: u8,
    ppid: u32,
    flags: u64,
    minflt: u64,
    majflt: u64,
    utime: u64,
    stime: u64,
    threads: u64,
    starttime: u64,
    vsize: u64,
    rss: u64,
}

/// An unsigned decimal number. Negative or malformed fields read as `None`.
fn number(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

/// Parse `/proc/PID/stat`: `pid (comm) state ppid ...`. The name may hold
/// spaces and parentheses, so it ends at the last `)`.
fn parse_stat(data: &[u8]) -> Option<Stat<'_>> {
    let open = memchr::memchr(b'(', data)?;
    let close = memchr::memrchr(b')', data)?;
    if close < open {
        return None;
    }
    let comm = &data[open + 1..close];
    let rest = data.get(close + 2..)?;
    // After the name: state(0) ppid(1) pgrp session tty_nr tpgid flags(6)
    // minflt(7) cminflt majflt(9) cmajflt utime(11) stime(12) cutime cstime
    // priority nice num_threads(17) itrealvalue starttime(19) vsize(20)
    // rss(21) ...
    let mut f: [&[u8]; 22] = [&[]; 22];
    let mut parts = rest.split(|&c| c == b' ');
    for slot in f.iter_mut() {
        *slot = parts.next()?;
    }
    let state = *f[0].first()?;
    Some(Stat {
        comm,
        state,
        ppid: u32::try_from(number(f[1])?).ok()?,
        flags: number(f[6])?,
        minflt: number(f[7])?,
        majflt: number(f[9])?,
        utime: number(f[11])?,
        stime: number(f[12])?,
        threads: number(f[17])?,
        starttime: number(f[19])?,
        vsize: number(f[20])?,
        rss: number(f[21])?,
    })
}

/// A key of `/proc/PID/io` or `/proc/PID/status`, searched for with a
/// searcher built once.
struct Key(memchr::memmem::Finder<'static>);

impl Key {
    fn new(key: &'static str) -> Key {
        Key(memchr::memmem::Finder::new(key.as_bytes()))
    }

    /// The values after `key:` on the line that starts with `key`, as a
    /// whitespace-separated list.
    fn values<'a>(&self, data: &'a [u8]) -> Option<impl Iterator<Item = &'a [u8]>> {
        let len = self.0.needle().len();
        let at = self
            .0
            .find_iter(data)
            .find(|&i| (i == 0 || data[i - 1] == b'\n') && data.get(i + len) == Some(&b':'))?;
        let rest = &data[at + len + 1..];
        let line = &rest[..memchr::memchr(b'\n', rest).unwrap_or(rest.len())];
        Some(
            line.split(|c| c.is_ascii_whitespace())
                .filter(|t| !t.is_empty()),
        )
    }

    /// The number after `key:`.
    fn number(&self, data: &[u8]) -> Option<u64> {
        self.values(data)?.next().and_then(number)
    }
}

/// The keys scans look for.
struct Keys {
    read_bytes: Key,
    write_bytes: Key,
    voluntary: Key,
    nonvoluntary: Key,
    uid: Key,
    rss: Key,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            read_bytes: Key::new("read_bytes"),
            write_bytes: Key::new("write_bytes"),
            voluntary: Key::new("voluntary_ctxt_switches"),
            nonvoluntary: Key::new("nonvoluntary_ctxt_switches"),
            uid: Key::new("Uid"),
            rss: Key::new("VmRSS"),
        }
    }

    /// The effective user of `/proc/PID/status` (`Uid: real effective ...`).
    fn euid(&self, status: &[u8]) -> Option<u32> {
        self.uid
            .values(status)?
            .nth(1)
            .and_then(number)
            .and_then(|u| u32::try_from(u).ok())
    }
}

/// The soft limit on open files from `/proc/PID/limits`; `None` when
/// unlimited or unreadable.
fn max_open_files(data: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(data, b"Max open files")?;
    let line = &data[at + b"Max open files".len()..];
    let soft = line
        .split(|c| c.is_ascii_whitespace())
        .find(|t| !t.is_empty())?;
    number(soft)
}

impl Scanner {
    /// Read the clock tick, page size and boot time.
    pub fn new() -> Result<Self, String> {
        let mut state = State {
            boot: 0.0,
            path: String::with_capacity(64),
            data: vec![0; 4096],
            kept: HashMap::new(),
            kept_files: 0,
            budget: (soft_nofile_limit() / 4).min(MAX_KEPT_FILES),
            generation: 0,
            last_count: 0,
        };
        state.boot = match boot_time(&mut state) {
            Some(b) => b,
            None => {
                procfs::boot_time_secs().map_err(|e| format!("reading /proc/stat: {e}"))? as f64
            }
        };
        // This process has at least stdin, stdout and stderr open.
        let fd_size_counts = std::fs::metadata(format!("{PROC}/self/fd"))
            .map(|m| m.size() > 0)
            .unwrap_or(false);
        Ok(Scanner {
            ticks: procfs::ticks_per_second() as f64,
            page: procfs::page_size(),
            fd_size_counts,
            keys: Keys::new(),
            state: RefCell::new(state),
        })
    }

    /// One scan.
    pub fn scan(&self, fields: Fields) -> Result<(Scan, ScanIssues), String> {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let mut issues = ScanIssues::default();
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        st.generation += 1;
        if let Some(b) = boot_time(st) {
            if (b - st.boot).abs() > BOOT_RESYNC {
                st.boot = b;
            }
        }
        let mut processes = Vec::with_capacity(st.last_count + 16);
        let listed = std::fs::read_dir(PROC)
            .map_err(|e| format!("listing {PROC}: {e}"))
            .and_then(|dir| {
                for entry in dir {
                    let entry = entry.map_err(|e| format!("listing {PROC}: {e}"))?;
                    let name = entry.file_name();
                    let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                        continue;
                    };
                    match self.read(pid, fields, st, &mut issues) {
                        Some(info) => processes.push(info),
                        None => issues.vanished += 1,
                    }
                }
                Ok(())
            });
        // Close the files of processes that are gone (all of them when the
        // listing failed).
        let generation = st.generation;
        let mut closed = 0;
        st.kept.retain(|_, k| {
            let keep = listed.is_ok() && k.generation == generation;
            if !keep {
                closed += k.files();
            }
            keep
        });
        st.kept_files -= closed;
        listed?;
        st.last_count = processes.len();
        Ok((Scan { time, processes }, issues))
    }

    /// Read one process; `None` when it is gone.
    fn read(
        &self,
        pid: u32,
        fields: Fields,
        st: &mut State,
        issues: &mut ScanIssues,
    ) -> Option<ProcessInfo> {
        let mut kept = st.kept.remove(&pid).unwrap_or_default();
        let info = self.read_kept(pid, fields, st, &mut kept, issues);
        if info.is_some() && kept.files() > 0 {
            kept.generation = st.generation;
            st.kept.insert(pid, kept);
        } else {
            st.kept_files -= kept.files();
        }
        info
    }

    fn read_kept(
        &self,
        pid: u32,
        fields: Fields,
        st: &mut State,
        kept: &mut Kept,
        issues: &mut ScanIssues,
    ) -> Option<ProcessInfo> {
        let n = match kept.stat.as_ref().map(|f| read_whole(f, &mut st.data)) {
            Some(Ok(n)) => n,
            failed => {
                if failed.is_some() {
                    // The process the kept files were opened for has
                    // exited; the pid may be another process's now.
                    st.kept_files -= kept.files();
                    *kept = Kept::default();
                }
                // Err: gone.
                st.read(pid, "stat", &mut kept.stat).ok()?
            }
        };
        // Files the fields no longer need (the plugin was replaced).
        let ctx = fields.contains(Fields::CONTEXT_SWITCHES);
        for (slot, used) in [
            (&mut kept.status, ctx),
            (&mut kept.statm, !ctx),
            (&mut kept.io, fields.contains(Fields::IO)),
            (&mut kept.fd_dir, fields.contains(Fields::FDS)),
            (&mut kept.limits, fields.contains(Fields::FDS)),
            (&mut kept.cmdline, fields.contains(Fields::CMDLINE)),
        ] {
            if !used && slot.take().is_some() {
                st.kept_files -= 1;
            }
        }
        let s = parse_stat(&st.data[..n])?;
        let kthread = s.flags & PF_KTHREAD != 0;
        let mut info = ProcessInfo {
            pid,
            ppid: s.ppid,
            comm: String::from_utf8_lossy(s.comm).into_owned(),
            exe: String::new(),
            cmdline: Vec::new(),
            state: char::from(s.state).to_string(),
            uid: u32::MAX,
            start_time: st.boot + s.starttime as f64 / self.ticks,
            cpu_user_seconds: s.utime as f64 / self.ticks,
            cpu_system_seconds: s.stime as f64 / self.ticks,
            resident_bytes: s.rss.saturating_mul(self.page),
            virtual_bytes: s.vsize,
            threads: u32::try_from(s.threads).unwrap_or(u32::MAX),
            minor_faults: s.minflt,
            major_faults: s.majflt,
            open_fds: None,
            max_fds: None,
            read_bytes: None,
            write_bytes: None,
            voluntary_ctxt_switches: None,
            nonvoluntary_ctxt_switches: None,
        };
        let mut denied = |e: &std::io::Error| {
            if e.kind() == ErrorKind::PermissionDenied {
                issues.denied += 1;
            }
        };
        // The resident set of /proc/PID/stat leaves out what the kernel has
        // not yet summed from its per-CPU counters (8% of a small process);
        // status and statm have the exact figure.
        let mut resident = None;
        if fields.contains(Fields::CONTEXT_SWITCHES) {
            if let Ok(n) = st.read(pid, "status", &mut kept.status) {
                let data = &st.data[..n];
                info.voluntary_ctxt_switches = self.keys.voluntary.number(data);
                info.nonvoluntary_ctxt_switches = self.keys.nonvoluntary.number(data);
                info.uid = self.keys.euid(data).unwrap_or(u32::MAX);
                if let Some(kib) = self.keys.rss.number(data) {
                    resident = Some(kib.saturating_mul(1024));
                }
            }
        } else if let Ok(n) = st.read(pid, "statm", &mut kept.statm) {
            // size resident shared ... (pages)
            resident = st.data[..n]
                .split(|&c| c == b' ')
                .nth(1)
                .and_then(number)
                .map(|pages| pages.saturating_mul(self.page));
        }
        if let Some(r) = resident {
            info.resident_bytes = r;
        }
        if info.uid == u32::MAX {
            // /proc/PID belongs to the process's effective user (root when
            // it is not dumpable). A path lookup brings it up to date.
            if let Ok(m) = std::fs::metadata(st.at(pid, "")) {
                info.uid = m.uid();
            }
        }
        if fields.contains(Fields::CMDLINE) {
            // Empty for kernel threads and zombies.
            if let Ok(n) = st.read(pid, "cmdline", &mut kept.cmdline) {
                info.cmdline = st.data[..n]
                    .split(|&c| c == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
            }
        }
        if fields.contains(Fields::EXE) && !kthread {
            match std::fs::read_link(st.at(pid, "exe")) {
                Ok(p) => info.exe = p.to_string_lossy().into_owned(),
                // Zombies have none either.
                Err(e) => denied(&e),
            }
        }
        if fields.contains(Fields::FDS) {
            info.open_fds = if kthread {
                Some(0)
            } else {
                match self.fd_count(pid, st, &mut kept.fd_dir) {
                    Ok(n) => Some(n),
                    Err(e) => {
                        denied(&e);
                        None
                    }
                }
            };
            let limit = match kept.limits {
                None => nofile_soft_limit(pid).ok(),
                Some(_) => None,
            };
            info.max_fds = match limit {
                Some(limit) => limit,
                // Another user's process, without CAP_SYS_RESOURCE (or a
                // system call filter): /proc/PID/limits is readable by all.
                None => st
                    .read(pid, "limits", &mut kept.limits)
                    .ok()
                    .and_then(|n| max_open_files(&st.data[..n])),
            };
        }
        if fields.contains(Fields::IO) {
            match st.read(pid, "io", &mut kept.io) {
                Ok(n) => {
                    let data = &st.data[..n];
                    info.read_bytes = self.keys.read_bytes.number(data);
                    info.write_bytes = self.keys.write_bytes.number(data);
                }
                Err(e) => denied(&e),
            }
        }
        Some(info)
    }

    /// Open file descriptors of `pid`: the size of `/proc/PID/fd` (an
    /// `fstat` of the kept directory), or its entries on kernels before
    /// 6.2.
    fn fd_count(&self, pid: u32, st: &mut State, slot: &mut Option<File>) -> std::io::Result<u32> {
        if !self.fd_size_counts {
            let mut n = 0u32;
            for e in std::fs::read_dir(st.at(pid, "fd"))? {
                e?;
                n = n.saturating_add(1);
            }
            return Ok(n);
        }
        if let Some(d) = slot {
            if let Ok(m) = d.metadata() {
                return Ok(u32::try_from(m.size()).unwrap_or(u32::MAX));
            }
            *slot = None;
            st.kept_files -= 1;
        }
        let d = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(st.at(pid, "fd"))?;
        let size = d.metadata()?.size();
        if st.kept_files < st.budget {
            *slot = Some(d);
            st.kept_files += 1;
        }
        Ok(u32::try_from(size).unwrap_or(u32::MAX))
    }
}

/// This process's soft limit on open files.
fn soft_nofile_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes `lim`, a valid rlimit owned by this frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
}

/// The soft limit on open files of `pid` (`prlimit`, one system call);
/// `None` when unlimited. Fails for another user's process unless the
/// caller has CAP_SYS_RESOURCE.
fn nofile_soft_limit(pid: u32) -> std::io::Result<Option<u64>> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| std::io::Error::from(ErrorKind::InvalidInput))?;
    let mut lim = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit64 only reads its arguments and writes `lim`, a valid
    // rlimit64 owned by this frame; a null new limit means "do not set".
    let rc = unsafe { libc::prlimit64(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut lim) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((lim.rlim_cur != libc::RLIM64_INFINITY).then_some(lim.rlim_cur))
}

/// Seconds since the epoch at boot: the wall clock less `/proc/uptime`.
/// Precise to about 10ms, where `btime` of `/proc/stat` is whole seconds.
fn boot_time(st: &mut State) -> Option<f64> {
    let f = File::open("/proc/uptime").ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    let n = read_whole(&f, &mut st.data).ok()?;
    let text = std::str::from_utf8(&st.data[..n]).ok()?;
    let up: f64 = text.split_ascii_whitespace().next()?.parse().ok()?;
    Some(now.as_secs_f64() - up)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn find(scan: &Scan, pid: u32) -> &ProcessInfo {
        scan.processes
            .iter()
            .find(|p| p.pid == pid)
            .expect("process in scan")
    }

    #[test]
    fn scan_finds_this_process_with_its_memory() {
        let s = Scanner::new().expect("scanner");
        let (scan, _) = s.scan(Fields::CMDLINE | Fields::FDS).expect("scan");
        let p = find(&scan, std::process::id());
        assert!(p.resident_bytes > 0);
        assert!(p.open_fds.unwrap_or(0) >= 3);
        assert!(p.max_fds.unwrap_or(0) >= 3);
        assert!(!p.cmdline.is_empty());
        assert!(p.exe.is_empty(), "exe was not asked for");
        assert!(p.read_bytes.is_none(), "io was not asked for");
        assert!(p.start_time > 1.0e9 && p.start_time <= scan.time + 1.0);
    }

    #[test]
    fn every_field_agrees_with_procfs() {
        let s = Scanner::new().expect("scanner");
        // Twice: the second scan reads through the kept files.
        for _ in 0..2 {
            let (scan, _) = s.scan(Fields::all()).expect("scan");
            let p = find(&scan, std::process::id());
            let ours = procfs::process::Process::myself().expect("myself");
            let stat = ours.stat().expect("stat");
            assert_eq!(p.ppid, stat.ppid as u32);
            assert_eq!(p.comm, stat.comm);
            // One letter (it changes from one reading to the next).
            assert!(p.state.len() == 1 && p.state.chars().all(|c| c.is_ascii_uppercase()));
            let start = s.state.borrow().boot + stat.starttime as f64 / s.ticks;
            assert!((p.start_time - start).abs() < 1e-6);
            assert_eq!(p.uid, ours.uid().expect("uid"));
            assert_eq!(p.cmdline, ours.cmdline().expect("cmdline"));
            assert_eq!(
                p.exe,
                ours.exe().expect("exe").to_string_lossy().into_owned()
            );
            let limit = match ours.limits().expect("limits").max_open_files.soft_limit {
                procfs::process::LimitValue::Value(v) => Some(v),
                procfs::process::LimitValue::Unlimited => None,
            };
            assert_eq!(p.max_fds, limit);
            // Other tests open and close files meanwhile.
            assert!(p.open_fds.unwrap_or(0) >= 3);
            // Counters only grow between the two readings.
            let io = ours.io().expect("io");
            assert!(p.read_bytes.unwrap_or(u64::MAX) <= io.read_bytes);
            assert!(p.write_bytes.unwrap_or(u64::MAX) <= io.write_bytes);
            let status = ours.status().expect("status");
            assert!(p.voluntary_ctxt_switches <= status.voluntary_ctxt_switches);
            assert!(p.voluntary_ctxt_switches.is_some());
            assert!(p.nonvoluntary_ctxt_switches <= status.nonvoluntary_ctxt_switches);
            assert!(p.cpu_user_seconds <= stat.utime as f64 / s.ticks + 1e-9);
            assert!(p.minor_faults <= stat.minflt);
            // Kernel threads (children of kthreadd, pid 2) have no exe,
            // command line or open files.
            for k in scan.processes.iter().filter(|p| p.ppid == 2) {
                assert!(k.exe.is_empty() && k.cmdline.is_empty(), "{k:?}");
                assert_eq!(k.open_fds, Some(0), "{k:?}");
            }
        }
    }

    #[test]
    fn kept_files_follow_processes_that_exit() {
        let s = Scanner::new().expect("scanner");
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        let fields = Fields::FDS | Fields::IO | Fields::CONTEXT_SWITCHES;
        let statm_rss = || {
            std::fs::read_to_string(format!("/proc/{pid}/statm"))
                .ok()
                .and_then(|t| t.split(' ').nth(1).and_then(|v| v.parse::<u64>().ok()))
                .map(|pages| pages * procfs::page_size())
        };
        // A child just spawned is still exec'ing and loading `sleep`: its
        // name and resident memory change under the test. Wait until it
        // is `sleep` and its RSS holds still.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let before = statm_rss();
            std::thread::sleep(std::time::Duration::from_millis(50));
            if comm.trim() == "sleep" && before == statm_rss() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "sleep never settled");
        }
        // Resident memory from statm, then from status.
        let (scan, _) = s.scan(Fields::empty()).expect("scan");
        assert_eq!(Some(find(&scan, pid).resident_bytes), statm_rss());
        for _ in 0..2 {
            let (scan, _) = s.scan(fields).expect("scan");
            let p = find(&scan, pid);
            assert_eq!(Some(p.resident_bytes), statm_rss());
            assert_eq!(p.comm, "sleep");
            // stdin, stdout, stderr, and what the test runner left open.
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u32);
            assert_eq!(p.open_fds, fds.ok());
            assert!(p.voluntary_ctxt_switches.is_some() && p.read_bytes.is_some());
        }
        let kept = s.state.borrow().kept.get(&pid).map(Kept::files);
        assert_eq!(kept, Some(4), "stat, io, status and fd/ kept");
        let total: usize = s.state.borrow().kept.values().map(Kept::files).sum();
        assert_eq!(total, s.state.borrow().kept_files);
        let _ = child.kill();
        let _ = child.wait();
        let (scan, _) = s.scan(fields).expect("scan");
        assert!(scan.processes.iter().all(|p| p.pid != pid));
        assert!(!s.state.borrow().kept.contains_key(&pid), "files closed");
        let total: usize = s.state.borrow().kept.values().map(Kept::files).sum();
        assert_eq!(total, s.state.borrow().kept_files);
    }

    #[test]
    fn open_files_are_listed_where_fd_has_no_size() {
        // Kernels before 6.2 give /proc/PID/fd no size.
        let mut s = Scanner::new().expect("scanner");
        s.fd_size_counts = false;
        let (scan, _) = s.scan(Fields::FDS).expect("scan");
        let me = find(&scan, std::process::id());
        assert!(me.open_fds.unwrap_or(0) >= 3);
        for k in scan.processes.iter().filter(|p| p.ppid == 2) {
            assert_eq!(k.open_fds, Some(0), "{k:?}");
        }
        assert!(s.state.borrow().kept.values().all(|k| k.fd_dir.is_none()));
    }

    #[test]
    fn a_budget_of_zero_keeps_nothing() {
        let s = Scanner::new().expect("scanner");
        s.state.borrow_mut().budget = 0;
        let (scan, _) = s.scan(Fields::all()).expect("scan");
        assert!(find(&scan, std::process::id()).open_fds.unwrap_or(0) >= 3);
        assert_eq!(s.state.borrow().kept_files, 0);
        assert!(s.state.borrow().kept.is_empty());
    }

    #[test]
    fn boot_time_is_close_to_the_kernels() {
        let s = Scanner::new().expect("scanner");
        let btime = procfs::boot_time_secs().expect("btime") as f64;
        // btime is whole seconds, truncated.
        let b = s.state.borrow().boot;
        assert!(b >= btime - 0.05 && b < btime + 1.05, "{b} vs {btime}");
    }

    #[test]
    fn stat_names_may_hold_spaces_and_parentheses() {
        let line = b"4242 (we ird) (x)) S 1 4242 4242 0 -1 4194560 120 0 3 0 7 5 0 0 20 0 2 0 123456 10485760 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        let st = parse_stat(line).expect("parses");
        assert_eq!(
            st,
            Stat {
                comm: b"we ird) (x)",
                state: b'S',
                ppid: 1,
                flags: 4194560,
                minflt: 120,
                majflt: 3,
                utime: 7,
                stime: 5,
                threads: 2,
                starttime: 123456,
                vsize: 10485760,
                rss: 300,
            }
        );
        assert!(parse_stat(b"1 (x) S 1 2").is_none(), "too short");
        assert!(parse_stat(b"").is_none());
    }

    #[test]
    fn keyed_files_and_limits_parse() {
        let k = Keys::new();
        let io = b"rchar: 10\nwchar: 20\nsyscr: 1\nsyscw: 2\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(k.read_bytes.number(io), Some(4096));
        assert_eq!(k.write_bytes.number(io), Some(8192));
        assert_eq!(Key::new("rchar").number(io), Some(10));
        let status = b"Name:\tsleep\nUid:\t1000\t1001\t1000\t1000\nnonvoluntary_ctxt_switches:\t3\nvoluntary_ctxt_switches:\t17\n";
        assert_eq!(k.voluntary.number(status), Some(17));
        assert_eq!(k.nonvoluntary.number(status), Some(3));
        assert_eq!(Key::new("missing").number(status), None);
        assert_eq!(k.euid(status), Some(1001));
        let limits =
            b"Limit                     Soft Limit           Hard Limit           Units     \n\
Max processes             96365                96365                processes \n\
Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        let unlimited =
            b"Max open files            unlimited            unlimited            files     \n";
        assert_eq!(max_open_files(unlimited), None);
    }

    #[test]
    fn long_files_are_read_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big");
        let text: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(&path, &text).expect("write");
        let mut buf = Vec::new();
        let f = File::open(&path).expect("open");
        let n = read_whole(&f, &mut buf).expect("read");
        assert_eq!(&buf[..n], &text[..]);
        // Again from the start, as a kept file is.
        let n = read_whole(&f, &mut buf).expect("read again");
        assert_eq!(&buf[..n], &text[..]);
    }
}
