//! process-groups: the process table as named groups, the way
//! process-exporter users know it, plus the main process of named services.
//!
//! Settings (JSON, from the pipeline's `[pipeline.NAME.config]` table):
//!
//! - `groups`: each `{name, comm, exe, cmdline, children}`. `comm`, `exe`
//!   and `cmdline` are regexes (at least one; every one given must match).
//!   They are unanchored: write `^nginx$` for a whole field. `comm` is the
//!   kernel's short name, `exe` the full executable path, `cmdline` the
//!   arguments joined with single spaces. A process joins the first group
//!   that matches it; processes no group matches are not reported.
//! - `name`: a template. `${comm}`, `${exe}` and `${exebase}` (the last path
//!   element of `exe`) are the process's fields; `${1}` is a numbered capture
//!   (only when the group has a single regex), `${name}` a named capture
//!   `(?P<name>...)` of any of the group's regexes. A process whose name
//!   uses a capture that did not take part in the match (an optional
//!   group), or comes out empty, is tried against the next groups.
//! - `children` (top level, default `false`; a group may override it): a
//!   process that matches no group joins the group of its nearest ancestor
//!   in the scan, found through `ppid`, when that group takes children.
//! - `services`: each `{name, comm, exe, cmdline}` with regexes as above.
//!   A service is its oldest matching process (earliest start, then lowest
//!   pid): the process a pidfile would name. Pidfiles themselves are the
//!   host's business, since a plugin cannot read files.
//! - `prefix` (default `namedprocess_namegroup`, so process-exporter
//!   dashboards work) and `service_prefix` (default `namedprocess_service`).
//!   `weir_` is the agent's own.
//! - `fds`, `io`, `context_switches` (default `true`): the metrics that make
//!   the host read `/proc/PID/fd`, `/proc/PID/io` and the context switches of
//!   `/proc/PID/status`. Set to `false` to skip both the reading and the
//!   metrics. `cmdline` and `exe` are read only when a regex or a name uses
//!   them.
//!
//! ```toml
//! [pipeline.procs.config]
//! children = true
//! io = false
//! groups = [
//!   { name = "${comm}", comm = '^(nginx|postgres|redis-server)$' },
//!   { name = "java-${app}", cmdline = '-jar \S*/(?P<app>[\w-]+)\.jar' },
//! ]
//! services = [{ name = "nginx", exe = '^/usr/sbin/nginx$' }]
//! ```
//!
//! Group metrics, label `groupname`: `num_procs`, `cpu_seconds_total{mode}`,
//! `memory_bytes{memtype}`, `num_threads`, `open_filedesc`, `worst_fd_ratio`,
//! `oldest_start_time_seconds`, `states{state}`, `read_bytes_total`,
//! `write_bytes_total`, `major_page_faults_total`, `minor_page_faults_total`,
//! `context_switches_total{ctxswitchtype}`. `states` counts processes by
//! their `/proc` letter: R Running, S and I Sleeping, D Waiting, Z Zombie,
//! anything else Other.
//!
//! Service metrics, label `service`: `up`, `start_time_seconds`,
//! `uptime_seconds`, `cpu_seconds_total{mode}`, `memory_bytes{memtype}`,
//! `num_threads`, `open_filedesc`, `max_filedesc`, `read_bytes_total`,
//! `write_bytes_total`.
//!
//! Counters never go down as processes come and go. A process is the pair
//! (pid, start time), so a reused pid is a new process. The plugin remembers
//! the last reading of every process; when one exits or moves to another
//! group, what it used while in its group is added to that group's
//! accumulator, and a group's counter is its accumulator plus what its live
//! members used while members. It is emitted with `set`, as a cumulative
//! reading. A process missing from one scan but back in the next (same pid
//! and start) is not counted twice. Services work the same way across
//! restarts of their main process.
//!
//! What counts as used, like process-exporter: a process that started since
//! the previous scan counts from its start; one that was already running
//! when this plugin instance first saw it (the first scan, or a process that
//! joins a group or becomes a service's main process) counts from that
//! sighting. So a new instance's first scan reads 0 for every counter.
//!
//! That memory lives in the plugin instance. When the instance is restarted
//! or reloaded it starts afresh, its counters from 0; the host, which keeps
//! the series of unchanged families and takes a lower reading from a new
//! instance as that instance starting over, adds the new instance's
//! readings to what it exposed before. Exposed counters neither go down nor count twice; what processes
//! used between the old instance's last scan and the new one's first is not
//! counted. Groups named from a template whose processes have all exited are
//! not known to a new instance: their series go until a process shows up.
use serde::Deserialize;
use std::collections::HashMap;
use weir_sdk::{Families, FamilyId, Kind, Output, ProcessFields, ProcessInfo, ProcessPlugin, Scan};

mod select;
use select::{Field, Selector, Subject, Template};

/// Two sightings of one pid are the same process when their start times are
/// this close (seconds). The host derives start times from clock ticks; the
/// margin absorbs rounding, and no pid comes back within it.
const SAME_START: f64 = 0.25;

/// Scans a process may be missing from before it is forgotten.
const FORGET_AFTER: u64 = 2;

/// A process counts from its start when it started after the previous scan,
/// less this margin (seconds) for the host's rounding of start times (clock
/// ticks) and of the boot time it adds them to.
const BORN_SLACK: f64 = 0.25;

const DEFAULT_PREFIX: &str = "namedprocess_namegroup";
const DEFAULT_SERVICE_PREFIX: &str = "namedprocess_service";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    service_prefix: Option<String>,
    #[serde(default)]
    groups: Vec<GroupConfig>,
    #[serde(default)]
    children: bool,
    #[serde(default)]
    services: Vec<ServiceConfig>,
    #[serde(default = "yes")]
    fds: bool,
    #[serde(default = "yes")]
    io: bool,
    #[serde(default = "yes")]
    context_switches: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupConfig {
    name: String,
    #[serde(default)]
    comm: Option<String>,
    #[serde(default)]
    exe: Option<String>,
    #[serde(default)]
    cmdline: Option<String>,
    #[serde(default)]
    children: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceConfig {
    name: String,
    #[serde(default)]
    comm: Option<String>,
    #[serde(default)]
    exe: Option<String>,
    #[serde(default)]
    cmdline: Option<String>,
}

// Positions in `Counters`.
const USER: usize = 0;
const SYSTEM: usize = 1;
const READ: usize = 2;
const WRITE: usize = 3;
const MINFLT: usize = 4;
const MAJFLT: usize = 5;
const VOLUNTARY: usize = 6;
const NONVOLUNTARY: usize = 7;

/// The cumulative readings of a process, or sums of them.
#[derive(Clone, Copy, Default, Debug, PartialEq)]
struct Counters([f64; 8]);

impl Counters {
    /// Read `p`. A field the host could not read this time keeps its
    /// previous value, and a live process's counters never go down.
    fn read(p: &ProcessInfo, prev: &Counters) -> Counters {
        let or_prev = |v: Option<u64>, i: usize| v.map_or(prev.0[i], |v| v as f64);
        let now = [
            p.cpu_user_seconds,
            p.cpu_system_seconds,
            or_prev(p.read_bytes, READ),
            or_prev(p.write_bytes, WRITE),
            p.minor_faults as f64,
            p.major_faults as f64,
            or_prev(p.voluntary_ctxt_switches, VOLUNTARY),
            or_prev(p.nonvoluntary_ctxt_switches, NONVOLUNTARY),
        ];
        Counters(std::array::from_fn(|i| now[i].max(prev.0[i])))
    }

    fn plus(self, o: Counters) -> Counters {
        Counters(std::array::from_fn(|i| self.0[i] + o.0[i]))
    }

    fn minus(self, o: Counters) -> Counters {
        Counters(std::array::from_fn(|i| self.0[i] - o.0[i]))
    }
}

struct Group {
    sel: Selector,
    name: Template,
    /// Index in the name table when the name has no references.
    fixed: Option<usize>,
    children: bool,
}

/// What the plugin remembers of one process between scans.
struct Seen {
    start: f64,
    /// Index in the name table.
    group: Option<usize>,
    /// Reading when the process joined its group (zeros: from its start).
    base: Counters,
    last: Counters,
    generation: u64,
}

/// One group name: what its exited and departed members used.
struct Tally {
    name: String,
    acc: Counters,
}

/// One scan's sums over a group's live members.
#[derive(Default, Clone)]
struct Live {
    procs: u32,
    used: Counters,
    resident: f64,
    virt: f64,
    threads: f64,
    fds: f64,
    worst_fd_ratio: Option<f64>,
    oldest: Option<f64>,
    states: [u32; 5],
}

const STATES: [&str; 5] = ["Running", "Sleeping", "Waiting", "Zombie", "Other"];

fn state_index(letter: &str) -> usize {
    match letter.chars().next() {
        Some('R') => 0,
        Some('S' | 'I') => 1,
        Some('D') => 2,
        Some('Z') => 3,
        _ => 4,
    }
}

struct Service {
    name: String,
    sel: Selector,
    /// (pid, start time) of the service's main process, or of the last one.
    current: Option<(u32, f64)>,
    /// What earlier main processes used.
    acc: Counters,
    /// Reading of the main process when it became the main process (zeros:
    /// from its start).
    base: Counters,
    last: Counters,
}

struct GroupFamilies {
    num_procs: FamilyId,
    cpu: FamilyId,
    memory: FamilyId,
    threads: FamilyId,
    oldest: FamilyId,
    states: FamilyId,
    minflt: FamilyId,
    majflt: FamilyId,
    open_fds: Option<FamilyId>,
    worst_fd: Option<FamilyId>,
    read: Option<FamilyId>,
    write: Option<FamilyId>,
    ctx: Option<FamilyId>,
}

struct ServiceFamilies {
    up: FamilyId,
    start: FamilyId,
    uptime: FamilyId,
    cpu: FamilyId,
    memory: FamilyId,
    threads: FamilyId,
    open_fds: Option<FamilyId>,
    max_fds: Option<FamilyId>,
    read: Option<FamilyId>,
    write: Option<FamilyId>,
}

/// The plugin: compiled groups and services, and what it remembers of
/// processes between scans.
pub struct ProcessGroups {
    groups: Vec<Group>,
    any_children: bool,
    services: Vec<Service>,
    join_cmdline: bool,
    names: HashMap<String, usize>,
    tallies: Vec<Tally>,
    seen: HashMap<u32, Seen>,
    generation: u64,
    /// Time of this instance's previous scan; `None` before the first.
    prev_time: Option<f64>,
    gf: Option<GroupFamilies>,
    sf: Option<ServiceFamilies>,
    name_buf: String,
}

fn check_prefix(prefix: &str, key: &str) -> Result<String, String> {
    let mut chars = prefix.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if !ok {
        return Err(format!(
            "{key} \"{prefix}\" is not a metric name prefix (letters, digits, '_', ':'; not starting with a digit)"
        ));
    }
    if prefix.starts_with("weir_") || prefix == "weir" {
        return Err(format!(
            "{key} \"{prefix}\": names starting with weir_ are reserved for the agent"
        ));
    }
    Ok(prefix.trim_end_matches('_').to_string())
}

impl ProcessGroups {
    /// Build from JSON settings, declaring families and the fields to read.
    pub fn from_config(
        config: &str,
        families: &mut Families,
    ) -> Result<(Self, ProcessFields), String> {
        let cfg: Config =
            serde_json::from_str(config).map_err(|e| format!("invalid settings: {e}"))?;
        if cfg.groups.is_empty() && cfg.services.is_empty() {
            return Err("nothing to report: add groups or services".into());
        }
        let mut fields = ProcessFields::empty();
        let mut names = HashMap::new();
        let mut tallies = Vec::new();
        let mut groups = Vec::new();
        for (i, g) in cfg.groups.iter().enumerate() {
            let what = format!("groups[{i}] \"{}\"", g.name);
            let mut sel = Selector::new(
                g.comm.as_deref(),
                g.exe.as_deref(),
                g.cmdline.as_deref(),
                &what,
            )?;
            let name = Template::parse(&g.name, &mut sel, &what)?;
            if name.uses_exe() || sel.uses(Field::Exe) {
                fields |= ProcessFields::EXE;
            }
            if sel.uses(Field::Cmdline) {
                fields |= ProcessFields::CMDLINE;
            }
            // Fixed names are reported (num_procs 0) before any process shows up.
            let fixed = name.literal().map(|n| intern(&mut names, &mut tallies, n));
            groups.push(Group {
                sel,
                name,
                fixed,
                children: g.children.unwrap_or(cfg.children),
            });
        }
        let mut services: Vec<Service> = Vec::new();
        for (i, s) in cfg.services.iter().enumerate() {
            let what = format!("services[{i}] \"{}\"", s.name);
            if s.name.is_empty() {
                return Err(format!("services[{i}]: empty name"));
            }
            if services.iter().any(|o| o.name == s.name) {
                return Err(format!("{what}: the name is used twice"));
            }
            let sel = Selector::new(
                s.comm.as_deref(),
                s.exe.as_deref(),
                s.cmdline.as_deref(),
                &what,
            )?;
            if sel.uses(Field::Exe) {
                fields |= ProcessFields::EXE;
            }
            if sel.uses(Field::Cmdline) {
                fields |= ProcessFields::CMDLINE;
            }
            services.push(Service {
                name: s.name.clone(),
                sel,
                current: None,
                acc: Counters::default(),
                base: Counters::default(),
                last: Counters::default(),
            });
        }
        if cfg.fds {
            fields |= ProcessFields::FDS;
        }
        if cfg.io {
            fields |= ProcessFields::IO;
        }
        if cfg.context_switches && !groups.is_empty() {
            fields |= ProcessFields::CONTEXT_SWITCHES;
        }

        let gf = if groups.is_empty() {
            None
        } else {
            let p = check_prefix(cfg.prefix.as_deref().unwrap_or(DEFAULT_PREFIX), "prefix")?;
            Some(declare_group_families(families, &p, &cfg))
        };
        let sf = if services.is_empty() {
            None
        } else {
            let p = check_prefix(
                cfg.service_prefix
                    .as_deref()
                    .unwrap_or(DEFAULT_SERVICE_PREFIX),
                "service_prefix",
            )?;
            Some(declare_service_families(families, &p, &cfg))
        };
        if let (Some(_), Some(_)) = (&gf, &sf) {
            let p = cfg.prefix.as_deref().unwrap_or(DEFAULT_PREFIX);
            let sp = cfg
                .service_prefix
                .as_deref()
                .unwrap_or(DEFAULT_SERVICE_PREFIX);
            if p.trim_end_matches('_') == sp.trim_end_matches('_') {
                return Err(format!(
                    "prefix and service_prefix are both \"{p}\": give them different values"
                ));
            }
        }
        let plugin = ProcessGroups {
            any_children: groups.iter().any(|g| g.children),
            join_cmdline: fields.contains(ProcessFields::CMDLINE),
            groups,
            services,
            names,
            tallies,
            seen: HashMap::new(),
            generation: 0,
            prev_time: None,
            gf,
            sf,
            name_buf: String::new(),
        };
        Ok((plugin, fields))
    }

    /// Handle one scan: group, remember, and emit.
    pub fn scan(&mut self, scan: &Scan, out: &mut Output) {
        self.generation += 1;
        let procs = &scan.processes;
        let cmdlines: Vec<String> = if self.join_cmdline {
            procs.iter().map(|p| p.cmdline.join(" ")).collect()
        } else {
            Vec::new()
        };
        if self.gf.is_some() {
            let mut assigned: Vec<Option<(usize, usize)>> = (0..procs.len())
                .map(|i| self.own_group(&subject(procs, &cmdlines, i)))
                .collect();
            if self.any_children {
                let groups = &self.groups;
                inherit(procs, &mut assigned, |g| groups[g].children);
            }
            let live = self.remember(procs, &assigned, out);
            self.emit_groups(&live, out);
        }
        if self.sf.is_some() {
            self.services(scan, &cmdlines, out);
        }
        self.prev_time = Some(scan.time);
    }

    /// The first group that matches, as (group index, name index).
    fn own_group(&mut self, s: &Subject) -> Option<(usize, usize)> {
        for (gi, g) in self.groups.iter_mut().enumerate() {
            if !g.sel.matches(s) {
                continue;
            }
            if let Some(t) = g.fixed {
                return Some((gi, t));
            }
            if !g.name.render(&g.sel, s, &mut self.name_buf) || self.name_buf.is_empty() {
                continue;
            }
            let t = intern(&mut self.names, &mut self.tallies, &self.name_buf);
            return Some((gi, t));
        }
        None
    }

    /// Update what is remembered of each process, move what exited or
    /// changed group into accumulators, and sum the live members per group.
    fn remember(
        &mut self,
        procs: &[ProcessInfo],
        assigned: &[Option<(usize, usize)>],
        out: &mut Output,
    ) -> Vec<Live> {
        let generation = self.generation;
        let prev = self.prev_time;
        let mut live = vec![Live::default(); self.tallies.len()];
        let tallies = &mut self.tallies;
        for (p, a) in procs.iter().zip(assigned) {
            let group = a.map(|(_, t)| t);
            let seen = match self.seen.get_mut(&p.pid) {
                Some(s) if s.generation == generation => {
                    // The same pid twice in one scan: keep the first.
                    out.reject();
                    continue;
                }
                Some(s) if (s.start - p.start_time).abs() < SAME_START => {
                    if s.group != group {
                        if let Some(old) = s.group {
                            tallies[old].acc = tallies[old].acc.plus(s.last.minus(s.base));
                        }
                        // Count from the last reading, so nothing between
                        // the two scans is lost.
                        s.base = s.last;
                        s.group = group;
                    }
                    s.last = Counters::read(p, &s.last);
                    s.generation = generation;
                    s
                }
                old => {
                    if let Some(s) = old {
                        // The pid was reused: the earlier process exited.
                        if let Some(g) = s.group {
                            tallies[g].acc = tallies[g].acc.plus(s.last.minus(s.base));
                        }
                    }
                    let last = Counters::read(p, &Counters::default());
                    let born = born_since(prev, p);
                    let fresh = Seen {
                        start: p.start_time,
                        group,
                        // Already running when first seen: from now on.
                        base: if born { Counters::default() } else { last },
                        last,
                        generation,
                    };
                    self.seen.insert(p.pid, fresh);
                    self.seen.get_mut(&p.pid).expect("just inserted")
                }
            };
            let Some(g) = group else { continue };
            let l = &mut live[g];
            l.procs += 1;
            l.used = l.used.plus(seen.last.minus(seen.base));
            l.resident += p.resident_bytes as f64;
            l.virt += p.virtual_bytes as f64;
            l.threads += f64::from(p.threads);
            if let Some(n) = p.open_fds {
                l.fds += f64::from(n);
                if let Some(max) = p.max_fds.filter(|m| *m > 0) {
                    let r = f64::from(n) / max as f64;
                    l.worst_fd_ratio = Some(l.worst_fd_ratio.map_or(r, |w: f64| w.max(r)));
                }
            }
            l.oldest = Some(l.oldest.map_or(p.start_time, |o: f64| o.min(p.start_time)));
            l.states[state_index(&p.state)] += 1;
        }
        self.seen.retain(|_, s| {
            if s.generation == generation {
                return true;
            }
            // Gone: bank what it used, once. Remember it a little longer, so
            // that a process one scan missed is not counted twice when it
            // shows up again (it then counts from its last reading).
            if let Some(g) = s.group.take() {
                tallies[g].acc = tallies[g].acc.plus(s.last.minus(s.base));
                s.base = s.last;
            }
            generation - s.generation <= FORGET_AFTER
        });
        live
    }

    fn emit_groups(&self, live: &[Live], out: &mut Output) {
        let Some(f) = &self.gf else { return };
        for (t, l) in self.tallies.iter().zip(live) {
            let n = t.name.as_str();
            let c = t.acc.plus(l.used).0;
            out.set(f.num_procs, &[n], f64::from(l.procs));
            out.set(f.cpu, &[n, "user"], c[USER]);
            out.set(f.cpu, &[n, "system"], c[SYSTEM]);
            out.set(f.memory, &[n, "resident"], l.resident);
            out.set(f.memory, &[n, "virtual"], l.virt);
            out.set(f.threads, &[n], l.threads);
            out.set(f.minflt, &[n], c[MINFLT]);
            out.set(f.majflt, &[n], c[MAJFLT]);
            for (state, count) in STATES.iter().zip(l.states) {
                out.set(f.states, &[n, state], f64::from(count));
            }
            if let Some(o) = l.oldest {
                out.set(f.oldest, &[n], o);
            }
            if let Some(id) = f.open_fds {
                out.set(id, &[n], l.fds);
            }
            if let (Some(id), Some(r)) = (f.worst_fd, l.worst_fd_ratio) {
                out.set(id, &[n], r);
            }
            if let Some(id) = f.read {
                out.set(id, &[n], c[READ]);
            }
            if let Some(id) = f.write {
                out.set(id, &[n], c[WRITE]);
            }
            if let Some(id) = f.ctx {
                out.set(id, &[n, "voluntary"], c[VOLUNTARY]);
                out.set(id, &[n, "nonvoluntary"], c[NONVOLUNTARY]);
            }
        }
    }

    fn services(&mut self, scan: &Scan, cmdlines: &[String], out: &mut Output) {
        let Some(f) = &self.sf else { return };
        let prev = self.prev_time;
        let procs = &scan.processes;
        for svc in &mut self.services {
            let mut best: Option<&ProcessInfo> = None;
            for (i, p) in procs.iter().enumerate() {
                if !svc.sel.matches(&subject(procs, cmdlines, i)) {
                    continue;
                }
                let older = best.is_none_or(|b| {
                    p.start_time < b.start_time || (p.start_time == b.start_time && p.pid < b.pid)
                });
                if older {
                    best = Some(p);
                }
            }
            // While no process matches, the last one stays current: if a scan
            // missed it, it is not counted twice when it shows up again.
            if let Some(p) = best {
                let same = svc.current.is_some_and(|(pid, start)| {
                    pid == p.pid && (start - p.start_time).abs() < SAME_START
                });
                if same {
                    svc.last = Counters::read(p, &svc.last);
                } else {
                    // A new main process: bank what the previous one used.
                    // It counts from its start if it started since the last
                    // scan (a restart), else from now.
                    svc.acc = svc.acc.plus(svc.last.minus(svc.base));
                    svc.current = Some((p.pid, p.start_time));
                    svc.last = Counters::read(p, &Counters::default());
                    svc.base = if born_since(prev, p) {
                        Counters::default()
                    } else {
                        svc.last
                    };
                }
            }
            let n = svc.name.as_str();
            let c = svc.acc.plus(svc.last.minus(svc.base)).0;
            out.set(f.up, &[n], if best.is_some() { 1.0 } else { 0.0 });
            out.set(f.cpu, &[n, "user"], c[USER]);
            out.set(f.cpu, &[n, "system"], c[SYSTEM]);
            if let Some(id) = f.read {
                out.set(id, &[n], c[READ]);
            }
            if let Some(id) = f.write {
                out.set(id, &[n], c[WRITE]);
            }
            let Some(p) = best else { continue };
            out.set(f.start, &[n], p.start_time);
            out.set(f.uptime, &[n], (scan.time - p.start_time).max(0.0));
            out.set(f.memory, &[n, "resident"], p.resident_bytes as f64);
            out.set(f.memory, &[n, "virtual"], p.virtual_bytes as f64);
            out.set(f.threads, &[n], f64::from(p.threads));
            if let (Some(id), Some(v)) = (f.open_fds, p.open_fds) {
                out.set(id, &[n], f64::from(v));
            }
            if let (Some(id), Some(v)) = (f.max_fds, p.max_fds) {
                out.set(id, &[n], v as f64);
            }
        }
    }
}

/// Whether `p` started since the previous scan at `prev`, so that all it
/// used happened while this instance watched.
fn born_since(prev: Option<f64>, p: &ProcessInfo) -> bool {
    prev.is_some_and(|t| p.start_time > t - BORN_SLACK)
}

fn subject<'a>(procs: &'a [ProcessInfo], cmdlines: &'a [String], i: usize) -> Subject<'a> {
    Subject {
        comm: &procs[i].comm,
        exe: &procs[i].exe,
        cmdline: cmdlines.get(i).map_or("", String::as_str),
    }
}

fn intern(names: &mut HashMap<String, usize>, tallies: &mut Vec<Tally>, name: &str) -> usize {
    if let Some(&t) = names.get(name) {
        return t;
    }
    let t = tallies.len();
    names.insert(name.to_string(), t);
    tallies.push(Tally {
        name: name.to_string(),
        acc: Counters::default(),
    });
    t
}

/// Give each process that matched no group the group of its nearest
/// ancestor in the scan, when `takes_children` says that group takes them.
/// The chain is walked through `ppid`; a missing parent or a loop ends it.
fn inherit(
    procs: &[ProcessInfo],
    assigned: &mut [Option<(usize, usize)>],
    takes_children: impl Fn(usize) -> bool,
) {
    const OPEN: u8 = 0;
    const WALKING: u8 = 1;
    const DONE: u8 = 2;
    let by_pid: HashMap<u32, usize> = procs.iter().enumerate().map(|(i, p)| (p.pid, i)).collect();
    let mut state: Vec<u8> = assigned
        .iter()
        .map(|a| if a.is_some() { DONE } else { OPEN })
        .collect();
    let mut chain = Vec::new();
    for start in 0..procs.len() {
        if state[start] == DONE {
            continue;
        }
        chain.clear();
        let mut i = start;
        let found = loop {
            match state[i] {
                DONE => break assigned[i].filter(|(g, _)| takes_children(*g)),
                WALKING => break None,
                _ => {}
            }
            state[i] = WALKING;
            chain.push(i);
            match by_pid.get(&procs[i].ppid) {
                Some(&parent) if procs[i].ppid != 0 => i = parent,
                _ => break None,
            }
        };
        for &c in &chain {
            assigned[c] = found;
            state[c] = DONE;
        }
    }
}

fn declare_group_families(families: &mut Families, p: &str, cfg: &Config) -> GroupFamilies {
    let g = ["groupname"];
    let mut d = |kind, name: &str, help: &str, unit: &str, labels: &[&str]| {
        families.declare(kind, &format!("{p}_{name}"), help, unit, labels, &[])
    };
    GroupFamilies {
        num_procs: d(Kind::Gauge, "num_procs", "Processes in the group.", "", &g),
        cpu: d(
            Kind::Counter,
            "cpu_seconds_total",
            "CPU time used by the group's processes, including those that exited.",
            "seconds",
            &["groupname", "mode"],
        ),
        memory: d(
            Kind::Gauge,
            "memory_bytes",
            "Memory of the group's processes: resident set and virtual size.",
            "bytes",
            &["groupname", "memtype"],
        ),
        threads: d(Kind::Gauge, "num_threads", "Threads in the group's processes.", "", &g),
        oldest: d(
            Kind::Gauge,
            "oldest_start_time_seconds",
            "Start time of the group's oldest process, seconds since the epoch.",
            "seconds",
            &g,
        ),
        states: d(
            Kind::Gauge,
            "states",
            "The group's processes by state.",
            "",
            &["groupname", "state"],
        ),
        minflt: d(
            Kind::Counter,
            "minor_page_faults_total",
            "Minor page faults of the group's processes, including those that exited.",
            "",
            &g,
        ),
        majflt: d(
            Kind::Counter,
            "major_page_faults_total",
            "Major page faults of the group's processes, including those that exited.",
            "",
            &g,
        ),
        open_fds: cfg.fds.then(|| {
            d(Kind::Gauge, "open_filedesc", "Open file descriptors of the group's processes.", "", &g)
        }),
        worst_fd: cfg.fds.then(|| {
            d(
                Kind::Gauge,
                "worst_fd_ratio",
                "The highest ratio of open file descriptors to their limit among the group's processes.",
                "",
                &g,
            )
        }),
        read: cfg.io.then(|| {
            d(
                Kind::Counter,
                "read_bytes_total",
                "Bytes read from storage by the group's processes, including those that exited.",
                "bytes",
                &g,
            )
        }),
        write: cfg.io.then(|| {
            d(
                Kind::Counter,
                "write_bytes_total",
                "Bytes written to storage by the group's processes, including those that exited.",
                "bytes",
                &g,
            )
        }),
        ctx: cfg.context_switches.then(|| {
            d(
                Kind::Counter,
                "context_switches_total",
                "Context switches of the group's processes, including those that exited.",
                "",
                &["groupname", "ctxswitchtype"],
            )
        }),
    }
}

fn declare_service_families(families: &mut Families, p: &str, cfg: &Config) -> ServiceFamilies {
    let s = ["service"];
    let mut d = |kind, name: &str, help: &str, unit: &str, labels: &[&str]| {
        families.declare(kind, &format!("{p}_{name}"), help, unit, labels, &[])
    };
    ServiceFamilies {
        up: d(
            Kind::Gauge,
            "up",
            "1 when a process of the service runs, else 0.",
            "",
            &s,
        ),
        start: d(
            Kind::Gauge,
            "start_time_seconds",
            "Start time of the service's main process, seconds since the epoch.",
            "seconds",
            &s,
        ),
        uptime: d(
            Kind::Gauge,
            "uptime_seconds",
            "How long the service's main process has run, at the last scan.",
            "seconds",
            &s,
        ),
        cpu: d(
            Kind::Counter,
            "cpu_seconds_total",
            "CPU time used by the service's main process, across its restarts.",
            "seconds",
            &["service", "mode"],
        ),
        memory: d(
            Kind::Gauge,
            "memory_bytes",
            "Memory of the service's main process: resident set and virtual size.",
            "bytes",
            &["service", "memtype"],
        ),
        threads: d(
            Kind::Gauge,
            "num_threads",
            "Threads of the service's main process.",
            "",
            &s,
        ),
        open_fds: cfg.fds.then(|| {
            d(
                Kind::Gauge,
                "open_filedesc",
                "Open file descriptors of the service's main process.",
                "",
                &s,
            )
        }),
        max_fds: cfg.fds.then(|| {
            d(
                Kind::Gauge,
                "max_filedesc",
                "The open file descriptor limit of the service's main process.",
                "",
                &s,
            )
        }),
        read: cfg.io.then(|| {
            d(
                Kind::Counter,
                "read_bytes_total",
                "Bytes read from storage by the service's main process, across its restarts.",
                "bytes",
                &s,
            )
        }),
        write: cfg.io.then(|| {
            d(
                Kind::Counter,
                "write_bytes_total",
                "Bytes written to storage by the service's main process, across its restarts.",
                "bytes",
                &s,
            )
        }),
    }
}

impl ProcessPlugin for ProcessGroups {
    fn init(config: &str, families: &mut Families) -> Result<(Self, ProcessFields), String> {
        Self::from_config(config, families)
    }

    fn on_scan(&mut self, scan: &Scan, out: &mut Output) -> Result<(), String> {
        self.scan(scan, out);
        Ok(())
    }
}

weir_sdk::export_process_plugin!(ProcessGroups);

#[cfg(test)]
mod tests;
