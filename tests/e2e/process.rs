//! The process source and the process-groups plugin against real
//! processes: hundreds of sleeps, a CPU burner and short-lived children,
//! each run from a copy of its binary with a name no other process on the
//! machine has, so that counts can be exact while other tests run.
//!
//! Every process a test starts is killed and reaped when the test ends,
//! passing or not (a guard's `Drop`).
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const G: &str = "namedprocess_namegroup";
const S: &str = "namedprocess_service";

/// The CPU burner's script: user time only.
const BUSY: &str = "while :; do :; done";

fn getconf(var: &str) -> u64 {
    let out = Command::new("getconf").arg(var).output().expect("getconf");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("getconf prints a number")
}

/// The first of `paths` that exists.
fn find_bin(paths: &[&str]) -> PathBuf {
    paths
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("none of {paths:?} exists"))
}

/// Copies of system binaries under names unique to one test: their `comm`
/// (15 bytes at most) tells them apart from every other process.
struct Bins {
    /// `w<pid><letter>`: prefix of every name.
    tag: String,
    dir: PathBuf,
}

impl Bins {
    fn new(tmp: &Path, letter: char) -> Bins {
        let tag = format!("w{}{letter}", std::process::id() % 100_000);
        let dir = tmp.join("bin");
        std::fs::create_dir_all(&dir).expect("mkdir bin");
        let b = Bins { tag, dir };
        b.copy("/usr/bin/sleep", "sl");
        let sh = find_bin(&["/bin/dash", "/usr/bin/dash", "/bin/sh"]);
        b.copy(&sh.display().to_string(), "cpu");
        b.copy(&sh.display().to_string(), "ch");
        b.copy(&sh.display().to_string(), "drv");
        b
    }

    fn copy(&self, from: &str, role: &str) {
        let from = find_bin(&[
            from,
            &format!("/bin/{}", from.rsplit('/').next().unwrap_or(from)),
        ]);
        std::fs::copy(&from, self.path(role)).expect("copy binary");
    }

    /// The comm of the copy for `role` (sl, cpu, ch, drv).
    fn comm(&self, role: &str) -> String {
        format!("{}{role}", self.tag)
    }

    fn path(&self, role: &str) -> PathBuf {
        self.dir.join(self.comm(role))
    }
}

/// Processes started by a test; killed and reaped when dropped.
#[derive(Default)]
struct Procs {
    children: Vec<Child>,
    /// Drivers asked to stop by creating this file, then waited for.
    stop_file: Option<PathBuf>,
    drivers: Vec<Child>,
    /// Comms of processes that may outlive a killed parent.
    orphan_comms: Vec<String>,
}

impl Procs {
    fn spawn(&mut self, cmd: &mut Command) -> u32 {
        let c = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let pid = c.id();
        self.children.push(c);
        pid
    }

    /// Kill and reap the child `pid`.
    fn kill(&mut self, pid: u32) {
        if let Some(i) = self.children.iter().position(|c| c.id() == pid) {
            let mut c = self.children.swap_remove(i);
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        if let Some(f) = &self.stop_file {
            let _ = std::fs::write(f, "");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for d in &mut self.drivers {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = d.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        for c in &mut self.children {
            let _ = c.kill();
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
        // Children of a driver killed above are not ours to wait for.
        for comm in &self.orphan_comms {
            for pid in pids_with_comm(comm) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

fn pids_with_comm(comm: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(c) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            if c.trim_end() == comm {
                out.push(pid);
            }
        }
    }
    out
}

/// Fields of `/proc/PID/stat` after the name, from `state` (index 0).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// utime + stime of `pid`, in seconds.
fn cpu_of(pid: u32, tick: f64) -> f64 {
    stat_fields(pid).map_or(0.0, |f| (f[11] + f[12]) as f64 / tick)
}

/// cutime + cstime of `pid`: what its reaped children used, in seconds.
fn children_cpu_of(pid: u32, tick: f64) -> f64 {
    stat_fields(pid).map_or(0.0, |f| (f[13] + f[14]) as f64 / tick)
}

/// Resident bytes of `pid` from `/proc/PID/statm` (second field, pages).
fn rss_of(pid: u32, page: u64) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|t| t.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .map_or(0, |pages: u64| pages * page)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

fn group(s: &Scrape, name: &str, g: &str) -> Option<f64> {
    s.get(&format!("{G}_{name}"), &[("groupname", g)])
}

fn group_cpu(s: &Scrape, g: &str) -> f64 {
    let f = format!("{G}_cpu_seconds_total");
    s.val(&f, &[("groupname", g), ("mode", "user")])
        + s.val(&f, &[("groupname", g), ("mode", "system")])
}

fn service_cpu(s: &Scrape, svc: &str) -> f64 {
    let f = format!("{S}_cpu_seconds_total");
    s.val(&f, &[("service", svc), ("mode", "user")])
        + s.val(&f, &[("service", svc), ("mode", "system")])
}

/// Groups `sleepers`, then `burner` and `churn`, or with `work` the
/// burner and the short-lived children together in group `work`.
fn pipeline_toml(bins: &Bins, plugin: &str, interval: &str, work: bool) -> String {
    let groups = if work {
        "{ name = \"work\", comm = '^(CPU|CH)$' },"
    } else {
        "{ name = \"burner\", comm = '^CPU$' },\n  { name = \"churn\", comm = '^CH$' },"
    }
    .replace("CPU", &bins.comm("cpu"))
    .replace("CH", &bins.comm("ch"));
    format!(
        r#"[pipeline.procs]
plugin = "{plugin}"
source = {{ type = "process", interval = "{interval}" }}

[pipeline.procs.config]
groups = [
  {{ name = "sleepers", comm = '^{sl}$' }},
  {groups}
]
services = [
  {{ name = "burner", exe = '/{cpu}$' }},
  {{ name = "marked", cmdline = '^\S*/{sl} 3601$' }},
]
"#,
        sl = bins.comm("sl"),
        cpu = bins.comm("cpu"),
    )
}

/// Start the agent and wait for its first scan (fixed group names are
/// reported from the first scan on), so that every process the test starts
/// afterwards counts from its start.
fn start_agent(dir: &Path, state: &Path) -> Agent {
    let agent = Agent::start(dir, state);
    agent.wait_for(30, "the first scan", |s| {
        group(s, "num_procs", "sleepers").is_some()
    });
    agent
}

#[test]
fn groups_count_exactly_and_match_proc() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bins = Bins::new(tmp.path(), 'a');
    let (page, tick) = (getconf("PAGESIZE"), getconf("CLK_TCK") as f64);
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("procs.toml"),
        pipeline_toml(&bins, "process-groups", "200ms", false),
    )
    .expect("write config");
    let agent = start_agent(&dir, &tmp.path().join("state"));

    let mut procs = Procs::default();
    let mut sleeps = Vec::new();
    for i in 0..300 {
        let arg = if i == 150 { "3601" } else { "3600" };
        sleeps.push(procs.spawn(Command::new(bins.path("sl")).arg(arg)));
    }
    let marked = sleeps[150];
    let burner_started = now();
    let burner = procs.spawn(Command::new(bins.path("cpu")).args(["-c", BUSY]));

    // All asleep: just started, a few may still be running.
    let sleeping = |s: &Scrape| {
        s.get(
            &format!("{G}_states"),
            &[("groupname", "sleepers"), ("state", "Sleeping")],
        )
    };
    let s = agent.wait_for(30, "300 sleepers asleep and 1 burner", |s| {
        group(s, "num_procs", "sleepers") == Some(300.0)
            && sleeping(s) == Some(300.0)
            && group(s, "num_procs", "burner") == Some(1.0)
    });
    assert_eq!(group(&s, "num_procs", "churn"), Some(0.0));
    assert_eq!(group(&s, "num_threads", "sleepers"), Some(300.0));
    // stdin, stdout, stderr, and what the test runner leaves open (cargo's
    // jobserver): counted here from /proc/PID/fd.
    let fds: usize = sleeps
        .iter()
        .map(|p| std::fs::read_dir(format!("/proc/{p}/fd")).map_or(0, |d| d.count()))
        .sum();
    assert!(fds >= 900);
    assert_eq!(group(&s, "open_filedesc", "sleepers"), Some(fds as f64));

    // Resident memory: the sum of /proc/PID/statm, read here. Sleeps do
    // not change their memory, so the scan and this read agree.
    let resident = |s: &Scrape| {
        s.get(
            &format!("{G}_memory_bytes"),
            &[("groupname", "sleepers"), ("memtype", "resident")],
        )
        .expect("resident memory")
    };
    let by_proc: u64 = sleeps.iter().map(|&p| rss_of(p, page)).sum();
    let s = agent.scrape();
    let exposed = resident(&s);
    assert!(
        (exposed - by_proc as f64).abs() <= by_proc as f64 * 0.01,
        "resident memory {exposed} vs {by_proc} summed from /proc"
    );

    // The burner's CPU grows, and matches /proc: the scan was taken at most
    // one interval before the scrape.
    let first = group_cpu(&agent.scrape(), "burner");
    std::thread::sleep(Duration::from_millis(1500));
    let before = cpu_of(burner, tick);
    let s = agent.scrape();
    let after = cpu_of(burner, tick);
    let cpu = group_cpu(&s, "burner");
    assert!(cpu - first >= 0.2, "burner CPU went from {first} to {cpu}");
    assert!(
        cpu <= after + 0.02 && cpu >= before - 0.5,
        "burner group CPU {cpu}, /proc says {before}..{after}"
    );

    // Services: the burner chosen by its executable, one sleep by its
    // command line.
    let up = |s: &Scrape, svc: &str| s.get(&format!("{S}_up"), &[("service", svc)]);
    assert_eq!(up(&s, "burner"), Some(1.0));
    assert_eq!(service_cpu(&s, "burner"), cpu, "the same process");
    let start = s
        .get(&format!("{S}_start_time_seconds"), &[("service", "burner")])
        .expect("start time");
    assert!(
        (start - burner_started).abs() < 0.5,
        "start time {start}, spawned at {burner_started}"
    );
    assert_eq!(up(&s, "marked"), Some(1.0));
    let mem = |s: &Scrape, svc: &str| {
        s.get(
            &format!("{S}_memory_bytes"),
            &[("service", svc), ("memtype", "resident")],
        )
    };
    assert_eq!(mem(&s, "marked"), Some(rss_of(marked, page) as f64));
    let marked_start = s
        .get(&format!("{S}_start_time_seconds"), &[("service", "marked")])
        .expect("marked start");

    // Half the sleeps go: counts follow, memory roughly halves, the
    // counters hold.
    for &p in sleeps.iter().skip(150) {
        procs.kill(p);
    }
    let s = agent.wait_for(10, "150 sleepers", |s| {
        group(s, "num_procs", "sleepers") == Some(150.0)
    });
    let left: u64 = sleeps.iter().take(150).map(|&p| rss_of(p, page)).sum();
    assert!((resident(&s) - left as f64).abs() <= left as f64 * 0.01);
    assert!(group_cpu(&s, "burner") >= cpu);
    // The marked sleep was among them: the service is down, then a new
    // one starts.
    assert_eq!(up(&s, "marked"), Some(0.0));
    let new_marked = procs.spawn(Command::new(bins.path("sl")).arg("3601"));
    let s = agent.wait_for(10, "the marked service back", |s| {
        up(s, "marked") == Some(1.0)
    });
    let restarted = s
        .get(&format!("{S}_start_time_seconds"), &[("service", "marked")])
        .expect("start");
    assert!(restarted > marked_start, "{restarted} vs {marked_start}");
    assert_eq!(mem(&s, "marked"), Some(rss_of(new_marked, page) as f64));
    assert_eq!(group(&s, "num_procs", "sleepers"), Some(151.0));

    // Nothing of ours is left once the guard has run.
    let sl = bins.comm("sl");
    drop(procs);
    assert!(pids_with_comm(&sl).is_empty());
    let s = agent.wait_for(10, "no sleepers", |s| {
        group(s, "num_procs", "sleepers") == Some(0.0)
    });
    assert_eq!(up(&s, "burner"), Some(0.0));
    // Depends on who runs the test (another user's exe, fd/ and io are
    // refused unless root); it is there.
    assert!(s
        .get("weir_process_scan_denied_total", &[("pipeline", "procs")])
        .is_some());
}

fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, bytes).expect("write tmp");
    std::fs::rename(&tmp, path).expect("rename");
}

/// The same component with one more custom section: same code, new hash.
fn rebuilt(wasm: &[u8]) -> Vec<u8> {
    let mut out = wasm.to_vec();
    let (name, payload) = (b"weir-test-build", b"2");
    out.extend_from_slice(&[0, (1 + name.len() + payload.len()) as u8, name.len() as u8]);
    out.extend_from_slice(name);
    out.extend_from_slice(payload);
    out
}

fn reload_and_wait(agent: &Agent, change: impl FnOnce()) {
    let ok = |s: &Scrape| s.val("weir_config_reloads_total", &[("result", "success")]);
    let before = ok(&agent.scrape());
    let started = agent
        .log_text()
        .matches("pipeline started pipeline=procs")
        .count();
    change();
    agent.wait_for(20, "the reload", |s| ok(s) > before);
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent
        .log_text()
        .matches("pipeline started pipeline=procs")
        .count()
        == started
    {
        assert!(
            Instant::now() < deadline,
            "the pipeline was not rebuilt: {}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn counters_never_go_down_or_double_through_churn_and_reloads() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bins = Bins::new(tmp.path(), 'b');
    let tick = getconf("CLK_TCK") as f64;
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("mkdir");
    // The plugin from a file, so that replacing the file reloads it.
    let wasm = tmp.path().join("process-groups.wasm");
    let original = std::fs::read(test_plugin("process_groups")).expect("read plugin");
    std::fs::write(&wasm, &original).expect("copy plugin");
    let plugin = wasm.display().to_string();
    let conf = dir.join("procs.toml");
    std::fs::write(&conf, pipeline_toml(&bins, &plugin, "150ms", true)).expect("write config");
    let agent = start_agent(&dir, &tmp.path().join("state"));

    let mut procs = Procs::default();
    for _ in 0..20 {
        procs.spawn(Command::new(bins.path("sl")).arg("3600"));
    }
    let burner = procs.spawn(Command::new(bins.path("cpu")).args(["-c", BUSY]));
    // Short-lived children, one after the other, each busy for a few
    // scans: their driver's cutime + cstime is what they used.
    let stop = tmp.path().join("stop");
    let script = format!(
        "while [ ! -e '{}' ]; do '{}' -c 'i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done'; done",
        stop.display(),
        bins.path("ch").display()
    );
    let driver = Command::new(bins.path("drv"))
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn driver");
    let drv = driver.id();
    procs.drivers.push(driver);
    procs.stop_file = Some(stop);
    procs.orphan_comms.push(bins.comm("ch"));

    agent.wait_for(30, "the processes grouped", |s| {
        group(s, "num_procs", "sleepers") == Some(20.0)
            && group(s, "num_procs", "work").unwrap_or(0.0) >= 1.0
    });
    // Some children have come and gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    while children_cpu_of(drv, tick) < 0.5 {
        assert!(Instant::now() < deadline, "the children do not run");
        std::thread::sleep(Duration::from_millis(50));
    }
    let scraper = Scraper::start(agent.url("/metrics"), |k: &str| {
        let name = k.split('{').next().unwrap_or(k);
        name.starts_with("namedprocess_") && name.ends_with("_total")
    });

    // Exposed CPU against /proc: never more than the processes used, and
    // not much less: each reload loses what was used between the old
    // instance's last scan and the new one's first. Group `work` holds the
    // burner and the children, some exited: a new instance whose first
    // reading of a long-running process counted its whole past would
    // count the burner twice.
    let check = |what: &str, reloads: f64| {
        let burner_before = cpu_of(burner, tick);
        let s = agent.scrape();
        let burner_after = cpu_of(burner, tick);
        let churn_after = children_cpu_of(drv, tick);
        let live_child: f64 = pids_with_comm(&bins.comm("ch"))
            .into_iter()
            .map(|p| cpu_of(p, tick))
            .sum();
        let work = group_cpu(&s, "work");
        let used = burner_after + churn_after + live_child;
        assert!(
            work <= used + 0.05 && work >= burner_before - 0.5 - 1.0 * reloads,
            "{what}: group CPU {work}; the burner used {burner_before}..{burner_after}, \
             the children {churn_after} + {live_child}"
        );
        let svc = service_cpu(&s, "burner");
        assert!(
            svc <= burner_after + 0.02 && svc >= burner_before - 0.5 - 1.0 * reloads,
            "{what}: burner service CPU {svc}, /proc says {burner_before}..{burner_after}"
        );
        assert_eq!(group(&s, "num_procs", "sleepers"), Some(20.0), "{what}");
        (work, churn_after)
    };

    std::thread::sleep(Duration::from_secs(2));
    let (b0, c0) = check("before reloads", 0.0);

    // A reload that rebuilds the pipeline and keeps its families: another
    // interval. A new plugin instance starts from nothing.
    reload_and_wait(&agent, || {
        write_atomic(
            &conf,
            pipeline_toml(&bins, &plugin, "200ms", true).as_bytes(),
        )
    });
    std::thread::sleep(Duration::from_millis(1500));
    let (b1, c1) = check("after the config edit", 1.0);

    // The plugin file replaced by a new build.
    reload_and_wait(&agent, || write_atomic(&wasm, &rebuilt(&original)));
    std::thread::sleep(Duration::from_millis(1500));
    let (b2, c2) = check("after the plugin replaced", 2.0);

    assert!(b0 < b1 && b1 < b2, "group CPU grows: {b0} {b1} {b2}");
    assert!(c0 < c1 && c1 < c2, "children exit: {c0} {c1} {c2}");
    let n = scraper.finish();
    eprintln!("{n} scrapes; work {b0} {b1} {b2}; reaped children {c0} {c1} {c2}");
    let log = agent.log_text();
    assert_eq!(
        log.matches("pipeline started pipeline=procs").count(),
        3,
        "{log}"
    );
}

/// The effective user of this test process.
fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[test]
fn an_unprivileged_agent_counts_what_it_may_not_read() {
    // The agent as `nobody` (65534) needs root to start it that way.
    if euid() != Some(0) || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let bins = Bins::new(tmp.path(), 'c');
    let dir = tmp.path().join("conf");
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::create_dir_all(&state).expect("mkdir");
    std::fs::write(
        dir.join("procs.toml"),
        pipeline_toml(&bins, "process-groups", "200ms", false),
    )
    .expect("write config");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).expect("chown");

    // Root's processes: a burner (its exe names the service) and sleeps.
    let mut procs = Procs::default();
    let burner = procs.spawn(Command::new(bins.path("cpu")).args(["-c", BUSY]));
    for i in 0..5 {
        let arg = if i == 0 { "3601" } else { "3600" };
        procs.spawn(Command::new(bins.path("sl")).arg(arg));
    }
    let port = free_port();
    let log = state.join("agent.log");
    let child = Command::new("/usr/bin/setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            WEIR,
            "run",
        ])
        .arg("--config-dir")
        .arg(&dir)
        .arg("--state-dir")
        .arg(&state)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn weir as nobody");
    let agent = Agent {
        child: Some(child),
        port,
        dir: dir.clone(),
        state: state.clone(),
        log,
    };
    agent.wait_ready();
    // What /proc/PID/stat, statm and status tell anyone is there.
    let s = agent.wait_for(30, "the processes grouped, the burner's CPU", |s| {
        group(s, "num_procs", "sleepers") == Some(5.0)
            && group(s, "num_procs", "burner") == Some(1.0)
            && group_cpu(s, "burner") > 0.0
    });
    assert!(group_cpu(&s, "burner") <= cpu_of(burner, getconf("CLK_TCK") as f64) + 0.02);
    assert!(
        s.get(
            &format!("{G}_memory_bytes"),
            &[("groupname", "sleepers"), ("memtype", "resident")]
        )
        .unwrap_or(0.0)
            > 0.0
    );
    // The number of open files too (the size of fd/), and the limit from
    // /proc/PID/limits.
    assert!(group(&s, "open_filedesc", "sleepers").unwrap_or(0.0) >= 15.0);
    assert!(group(&s, "worst_fd_ratio", "sleepers").unwrap_or(0.0) > 0.0);
    // Not their I/O or their executable: refusals are counted, the I/O
    // counters stay at 0, and a service chosen by executable is not found.
    assert!(
        s.val("weir_process_scan_denied_total", &[("pipeline", "procs")]) > 0.0,
        "{}",
        s.text
    );
    assert_eq!(
        s.get(&format!("{G}_read_bytes_total"), &[("groupname", "burner")]),
        Some(0.0)
    );
    assert_eq!(
        s.get(&format!("{S}_up"), &[("service", "burner")]),
        Some(0.0)
    );
    // The one chosen by command line is: anyone may read a command line.
    assert_eq!(
        s.get(&format!("{S}_up"), &[("service", "marked")]),
        Some(1.0)
    );
    drop(procs);
    drop(agent);
}
