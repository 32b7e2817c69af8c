use super::*;
use weir_sdk::__private::log_world::weir::plugin::types::Change;

fn proc(pid: u32, ppid: u32, comm: &str, start: f64) -> ProcessInfo {
    ProcessInfo {
        pid,
        ppid,
        comm: comm.to_string(),
        exe: String::new(),
        cmdline: Vec::new(),
        state: "S".to_string(),
        uid: 0,
        start_time: start,
        cpu_user_seconds: 0.0,
        cpu_system_seconds: 0.0,
        resident_bytes: 0,
        virtual_bytes: 0,
        threads: 1,
        minor_faults: 0,
        major_faults: 0,
        open_fds: None,
        max_fds: None,
        read_bytes: None,
        write_bytes: None,
        voluntary_ctxt_switches: None,
        nonvoluntary_ctxt_switches: None,
    }
}

fn with_cmdline(mut p: ProcessInfo, cmdline: &str) -> ProcessInfo {
    p.cmdline = cmdline.split(' ').map(str::to_string).collect();
    p
}

fn with_cpu(mut p: ProcessInfo, user: f64, system: f64) -> ProcessInfo {
    p.cpu_user_seconds = user;
    p.cpu_system_seconds = system;
    p
}

struct Harness {
    plugin: ProcessGroups,
    families: Families,
    fields: ProcessFields,
}

impl Harness {
    /// An instance that has been running since long before the scans of the
    /// test (an empty scan at time 0), so that processes count from their
    /// start.
    fn new(config: &str) -> Self {
        let mut h = Self::fresh(config);
        h.scan(0.0, Vec::new());
        h
    }

    /// An instance that has not scanned yet.
    fn fresh(config: &str) -> Self {
        let mut families = Families::default();
        let (plugin, fields) = ProcessGroups::from_config(config, &mut families).expect("config");
        Harness {
            plugin,
            families,
            fields,
        }
    }

    fn scan(&mut self, time: f64, processes: Vec<ProcessInfo>) -> Scan2 {
        let mut out = Output::new();
        self.plugin.scan(&Scan { time, processes }, &mut out);
        let mut values = Vec::new();
        for u in out.updates() {
            let name = self
                .families
                .name(FamilyId(u.family))
                .expect("declared family")
                .to_string();
            let v = match u.change {
                Change::Set(v) => v,
                _ => panic!("process plugins only set"),
            };
            values.push((name, u.labels.clone(), v));
        }
        Scan2 {
            values,
            rejected: out.rejected(),
        }
    }

    fn declares(&self, name: &str) -> bool {
        (0..self.families.len()).any(|i| self.families.name(FamilyId(i as u32)) == Some(name))
    }
}

/// What one scan emitted, by family name.
struct Scan2 {
    values: Vec<(String, Vec<String>, f64)>,
    rejected: u32,
}

impl Scan2 {
    fn get(&self, name: &str, labels: &[&str]) -> Option<f64> {
        self.values
            .iter()
            .find(|(n, l, _)| n == name && l.iter().map(String::as_str).eq(labels.iter().copied()))
            .map(|(_, _, v)| *v)
    }

    fn procs(&self, group: &str) -> Option<f64> {
        self.get("namedprocess_namegroup_num_procs", &[group])
    }

    fn cpu(&self, group: &str, mode: &str) -> f64 {
        self.get("namedprocess_namegroup_cpu_seconds_total", &[group, mode])
            .unwrap_or_else(|| panic!("no cpu for {group}"))
    }

    fn groups(&self) -> Vec<String> {
        let mut g: Vec<String> = self
            .values
            .iter()
            .filter(|(n, _, _)| n == "namedprocess_namegroup_num_procs")
            .map(|(_, l, _)| l[0].clone())
            .collect();
        g.sort();
        g
    }
}

#[test]
fn first_matching_group_wins_and_names_come_from_templates() {
    let mut h = Harness::new(
        r#"{"groups": [
            {"name": "web-${comm}", "comm": "^(nginx|httpd)$"},
            {"name": "pg ${db}", "comm": "^postgres$", "cmdline": "^postgres: \\w+ (?P<db>\\w+)"},
            {"name": "${exebase}", "exe": "^/opt/app/bin/"},
            {"name": "java-${1}", "cmdline": "-jar \\S*/(\\w+)\\.jar"},
            {"name": "mode ${m}", "cmdline": "^tool(?: --mode=(?P<m>\\w+))?"},
            {"name": "tools", "comm": "^tool$"},
            {"name": "nginx again", "comm": "nginx"}
        ], "fds": false, "io": false, "context_switches": false}"#,
    );
    assert_eq!(h.fields, ProcessFields::CMDLINE | ProcessFields::EXE);
    let mut worker = proc(30, 1, "worker", 10.0);
    worker.exe = "/opt/app/bin/worker".into();
    let s = h.scan(
        100.0,
        vec![
            proc(10, 1, "nginx", 10.0),
            proc(11, 10, "nginx", 10.0),
            proc(12, 1, "httpd", 10.0),
            with_cmdline(proc(20, 1, "postgres", 10.0), "postgres: app orders idle"),
            with_cmdline(
                proc(21, 1, "postgres", 10.0),
                "postgres: app billing SELECT",
            ),
            worker,
            with_cmdline(proc(40, 1, "java", 10.0), "java -Xmx1g -jar /srv/shop.jar"),
            with_cmdline(proc(50, 1, "tool", 10.0), "tool --mode=fast"),
            // The optional capture does not take part: the name is empty,
            // so the next group gets the process.
            with_cmdline(proc(51, 1, "tool", 10.0), "tool"),
            proc(60, 1, "bash", 10.0),
        ],
    );
    assert_eq!(s.procs("web-nginx"), Some(2.0));
    assert_eq!(s.procs("web-httpd"), Some(1.0));
    assert_eq!(s.procs("pg orders"), Some(1.0));
    assert_eq!(s.procs("pg billing"), Some(1.0));
    assert_eq!(s.procs("worker"), Some(1.0));
    assert_eq!(s.procs("java-shop"), Some(1.0));
    assert_eq!(s.procs("mode fast"), Some(1.0));
    assert_eq!(s.procs("tools"), Some(1.0));
    // A fixed name is reported from the start, even with nothing in it.
    assert_eq!(s.procs("nginx again"), Some(0.0));
    assert_eq!(
        s.groups(),
        vec![
            "java-shop",
            "mode fast",
            "nginx again",
            "pg billing",
            "pg orders",
            "tools",
            "web-httpd",
            "web-nginx",
            "worker"
        ]
    );
    assert!(!h.declares("namedprocess_namegroup_open_filedesc"));
    assert!(!h.declares("namedprocess_namegroup_read_bytes_total"));
    assert!(h.declares("namedprocess_namegroup_cpu_seconds_total"));
}

#[test]
fn children_join_the_group_of_their_nearest_grouped_ancestor() {
    let cfg = |children: bool| {
        format!(
            r#"{{"children": {children}, "groups": [
                {{"name": "sshd", "comm": "^sshd$", "children": true}},
                {{"name": "shells", "comm": "^bash$"}}
            ]}}"#
        )
    };
    let procs = || {
        vec![
            // Order does not matter: a grandchild before its ancestors.
            proc(105, 104, "cat", 10.0),
            proc(1, 0, "init", 1.0),
            proc(100, 1, "sshd", 5.0),
            proc(101, 100, "sshd", 9.0),
            proc(102, 101, "bash", 9.0),
            proc(103, 102, "vim", 9.5),
            proc(104, 101, "scp", 9.5),
            // Loops and self-parents end the walk.
            proc(200, 201, "x", 9.0),
            proc(201, 200, "y", 9.0),
            proc(300, 300, "z", 9.0),
            // Parent not in the scan.
            proc(400, 399, "orphan", 9.0),
        ]
    };
    let mut h = Harness::new(&cfg(false));
    let s = h.scan(100.0, procs());
    // 100 and 101 match; 104 (child) and 105 (grandchild) inherit.
    assert_eq!(s.procs("sshd"), Some(4.0));
    // bash matches its own group; vim's parent's group takes no children.
    assert_eq!(s.procs("shells"), Some(1.0));

    let mut h = Harness::new(&cfg(true));
    let s = h.scan(100.0, procs());
    assert_eq!(s.procs("sshd"), Some(4.0));
    assert_eq!(s.procs("shells"), Some(2.0));
    assert_eq!(s.groups(), vec!["shells", "sshd"]);
}

#[test]
fn group_counters_never_go_down_through_churn() {
    let mut h = Harness::new(
        r#"{"groups": [{"name": "app", "comm": "^app$"}], "context_switches": false}"#,
    );
    let app = |pid: u32, start: f64, user: f64, read: Option<u64>| {
        let mut p = with_cpu(proc(pid, 1, "app", start), user, user / 10.0);
        p.minor_faults = (user * 100.0) as u64;
        p.read_bytes = read;
        p
    };
    let scans = [
        // Two processes.
        vec![
            app(10, 1000.0, 5.0, Some(500)),
            app(11, 1000.0, 3.0, Some(300)),
        ],
        // 11 exited; 10 went on; its io was unreadable this time.
        vec![app(10, 1000.0, 6.0, None)],
        // A new process took pid 11.
        vec![
            app(10, 1000.0, 6.0, Some(600)),
            app(11, 3001.5, 0.5, Some(50)),
        ],
        // 10 exited, and pid 11 was reused once more between scans.
        vec![app(11, 3002.5, 0.2, Some(20))],
        // Nothing left.
        vec![],
    ];
    let want_user = [8.0, 9.0, 9.5, 9.7, 9.7];
    let want_procs = [2.0, 1.0, 2.0, 1.0, 0.0];
    let want_read = [800.0, 800.0, 950.0, 970.0, 970.0];
    let mut previous: Vec<(String, Vec<String>, f64)> = Vec::new();
    for (i, procs) in scans.into_iter().enumerate() {
        let s = h.scan(3000.0 + i as f64, procs);
        assert!(
            (s.cpu("app", "user") - want_user[i]).abs() < 1e-9,
            "scan {i}"
        );
        assert!(
            (s.cpu("app", "system") - want_user[i] / 10.0).abs() < 1e-9,
            "scan {i}"
        );
        assert_eq!(s.procs("app"), Some(want_procs[i]), "scan {i}");
        assert_eq!(
            s.get("namedprocess_namegroup_read_bytes_total", &["app"]),
            Some(want_read[i]),
            "scan {i}"
        );
        // Every counter series is at least where it was.
        for (name, labels, v) in &s.values {
            if !name.ends_with("_total") {
                continue;
            }
            if let Some((_, _, old)) = previous.iter().find(|(n, l, _)| n == name && l == labels) {
                assert!(
                    v >= old,
                    "scan {i}: {name}{labels:?} went from {old} to {v}"
                );
            }
        }
        previous = s.values;
    }
    // Gauges follow the live processes only.
    let s = h.scan(4000.0, vec![app(12, 3999.5, 1.0, None)]);
    assert_eq!(
        s.get("namedprocess_namegroup_oldest_start_time_seconds", &["app"]),
        Some(3999.5)
    );
    assert!((s.cpu("app", "user") - 10.7).abs() < 1e-9);
    for t in 0..FORGET_AFTER {
        h.scan(4001.0 + t as f64, vec![app(12, 3999.5, 1.0, None)]);
    }
    assert_eq!(h.plugin.seen.len(), 1, "exited processes are forgotten");
}

#[test]
fn a_process_missing_from_one_scan_is_not_counted_twice() {
    let mut h = Harness::new(
        r#"{"groups": [{"name": "app", "comm": "^app$"}],
            "services": [{"name": "app", "comm": "^app$"}]}"#,
    );
    let app = |user: f64| with_cpu(proc(10, 1, "app", 1000.0), user, 0.0);
    let svc = |s: &Scan2| {
        s.get("namedprocess_service_cpu_seconds_total", &["app", "user"])
            .expect("service cpu")
    };
    let s = h.scan(1100.0, vec![app(5.0)]);
    assert_eq!((s.cpu("app", "user"), svc(&s)), (5.0, 5.0));
    let s = h.scan(1101.0, vec![]);
    assert_eq!((s.cpu("app", "user"), svc(&s)), (5.0, 5.0));
    assert_eq!(s.procs("app"), Some(0.0));
    let s = h.scan(1102.0, vec![app(6.0)]);
    assert_eq!((s.cpu("app", "user"), svc(&s)), (6.0, 6.0));
    assert_eq!(s.procs("app"), Some(1.0));
}

#[test]
fn a_process_that_changes_group_is_counted_once() {
    // postgres rewrites its command line: the group follows it.
    let mut h = Harness::new(
        r#"{"groups": [{"name": "pg-${state}", "cmdline": "^postgres: (?P<state>\\w+)"}]}"#,
    );
    let pg = |state: &str, user: f64| {
        with_cpu(
            with_cmdline(proc(7, 1, "postgres", 50.0), &format!("postgres: {state}")),
            user,
            0.0,
        )
    };
    let s = h.scan(100.0, vec![pg("idle", 10.0)]);
    assert_eq!(s.cpu("pg-idle", "user"), 10.0);
    let s = h.scan(101.0, vec![pg("active", 12.0)]);
    assert_eq!(s.cpu("pg-idle", "user"), 10.0);
    assert_eq!(s.cpu("pg-active", "user"), 2.0);
    assert_eq!(s.procs("pg-idle"), Some(0.0));
    let s = h.scan(102.0, vec![pg("idle", 15.0)]);
    assert_eq!(s.cpu("pg-idle", "user"), 13.0);
    assert_eq!(s.cpu("pg-active", "user"), 2.0);
    assert_eq!(s.cpu("pg-idle", "user") + s.cpu("pg-active", "user"), 15.0);
}

#[test]
fn gauges_sum_over_live_members() {
    let mut h = Harness::new(r#"{"groups": [{"name": "db", "comm": "^db"}]}"#);
    let member = |pid: u32, state: &str, start: f64, fds: Option<(u32, u64)>| {
        let mut p = proc(pid, 1, "dbd", start);
        p.state = state.into();
        p.resident_bytes = 1000 * u64::from(pid);
        p.virtual_bytes = 5000 * u64::from(pid);
        p.threads = pid;
        p.open_fds = fds.map(|f| f.0);
        p.max_fds = fds.map(|f| f.1);
        p.voluntary_ctxt_switches = Some(u64::from(pid) * 10);
        p.nonvoluntary_ctxt_switches = Some(u64::from(pid));
        p
    };
    let s = h.scan(
        100.0,
        vec![
            member(1, "R", 30.0, Some((10, 100))),
            member(2, "I", 20.0, Some((50, 64))),
            member(3, "D", 40.0, None),
            member(4, "T", 50.0, Some((1, 0))),
            member(5, "Z", 60.0, None),
        ],
    );
    let g = |name: &str, labels: &[&str]| s.get(&format!("namedprocess_namegroup_{name}"), labels);
    assert_eq!(g("num_procs", &["db"]), Some(5.0));
    assert_eq!(g("memory_bytes", &["db", "resident"]), Some(15_000.0));
    assert_eq!(g("memory_bytes", &["db", "virtual"]), Some(75_000.0));
    assert_eq!(g("num_threads", &["db"]), Some(15.0));
    assert_eq!(g("open_filedesc", &["db"]), Some(61.0));
    assert_eq!(g("worst_fd_ratio", &["db"]), Some(50.0 / 64.0));
    assert_eq!(g("oldest_start_time_seconds", &["db"]), Some(20.0));
    assert_eq!(g("states", &["db", "Running"]), Some(1.0));
    assert_eq!(g("states", &["db", "Sleeping"]), Some(1.0));
    assert_eq!(g("states", &["db", "Waiting"]), Some(1.0));
    assert_eq!(g("states", &["db", "Zombie"]), Some(1.0));
    assert_eq!(g("states", &["db", "Other"]), Some(1.0));
    assert_eq!(
        g("context_switches_total", &["db", "voluntary"]),
        Some(150.0)
    );
    assert_eq!(
        g("context_switches_total", &["db", "nonvoluntary"]),
        Some(15.0)
    );

    // A duplicate pid in one scan is rejected, not counted twice.
    let s = h.scan(
        101.0,
        vec![member(1, "R", 30.0, None), member(1, "R", 30.0, None)],
    );
    assert_eq!(s.rejected, 1);
    assert_eq!(s.procs("db"), Some(1.0));
}

#[test]
fn services_follow_their_main_process_across_restarts() {
    let mut h = Harness::new(
        r#"{"services": [{"name": "nginx", "exe": "^/usr/sbin/nginx$"}], "io": false}"#,
    );
    assert_eq!(h.fields, ProcessFields::EXE | ProcessFields::FDS);
    assert!(!h.declares("namedprocess_namegroup_num_procs"));
    let nginx = |pid: u32, start: f64, user: f64| {
        let mut p = with_cpu(proc(pid, 1, "nginx", start), user, 0.0);
        p.exe = "/usr/sbin/nginx".into();
        p.resident_bytes = 4096;
        p.open_fds = Some(12);
        p.max_fds = Some(1024);
        p
    };
    let v = |s: &Scan2, name: &str, labels: &[&str]| {
        s.get(&format!("namedprocess_service_{name}"), labels)
    };
    // The oldest matching process is the service; workers are not.
    let s = h.scan(
        1100.0,
        vec![
            nginx(51, 1001.0, 10.0),
            nginx(50, 1000.0, 2.0),
            proc(9, 1, "bash", 1.0),
        ],
    );
    assert_eq!(v(&s, "up", &["nginx"]), Some(1.0));
    assert_eq!(v(&s, "start_time_seconds", &["nginx"]), Some(1000.0));
    assert_eq!(v(&s, "uptime_seconds", &["nginx"]), Some(100.0));
    assert_eq!(v(&s, "cpu_seconds_total", &["nginx", "user"]), Some(2.0));
    assert_eq!(v(&s, "memory_bytes", &["nginx", "resident"]), Some(4096.0));
    assert_eq!(v(&s, "open_filedesc", &["nginx"]), Some(12.0));
    assert_eq!(v(&s, "max_filedesc", &["nginx"]), Some(1024.0));

    let s = h.scan(1110.0, vec![nginx(50, 1000.0, 3.0)]);
    assert_eq!(v(&s, "cpu_seconds_total", &["nginx", "user"]), Some(3.0));

    // Stopped: up 0, the counter holds, the per-process gauges go away.
    let s = h.scan(1120.0, vec![proc(9, 1, "bash", 1.0)]);
    assert_eq!(v(&s, "up", &["nginx"]), Some(0.0));
    assert_eq!(v(&s, "cpu_seconds_total", &["nginx", "user"]), Some(3.0));
    assert_eq!(v(&s, "start_time_seconds", &["nginx"]), None);

    // Restarted with the same pid: a new process all the same.
    let s = h.scan(1300.0, vec![nginx(50, 1200.0, 0.5)]);
    assert_eq!(v(&s, "up", &["nginx"]), Some(1.0));
    assert_eq!(v(&s, "cpu_seconds_total", &["nginx", "user"]), Some(3.5));
    assert_eq!(v(&s, "uptime_seconds", &["nginx"]), Some(100.0));
}

#[test]
fn fields_and_families_follow_the_config() {
    let h =
        Harness::new(r#"{"groups": [{"name": "${comm}", "comm": "."}], "prefix": "host_procs_"}"#);
    assert_eq!(
        h.fields,
        ProcessFields::FDS | ProcessFields::IO | ProcessFields::CONTEXT_SWITCHES
    );
    assert!(h.declares("host_procs_open_filedesc"));
    assert!(h.declares("host_procs_context_switches_total"));

    let h = Harness::new(
        r#"{"groups": [{"name": "${exe}", "comm": "."}],
            "fds": false, "io": false, "context_switches": false}"#,
    );
    assert_eq!(h.fields, ProcessFields::EXE);
    assert!(!h.declares("namedprocess_namegroup_worst_fd_ratio"));
    assert!(!h.declares("namedprocess_namegroup_context_switches_total"));
    assert!(!h.declares("namedprocess_namegroup_write_bytes_total"));
}

#[test]
fn declarations_follow_the_host_rules() {
    let h = Harness::new(
        r#"{"groups": [{"name": "${comm}", "comm": "."}],
            "services": [{"name": "db", "comm": "^db$"}]}"#,
    );
    assert_eq!(h.families.len(), 13 + 10);
    for f in (0..h.families.len() as u32).map(FamilyId) {
        let name = h.families.name(f).unwrap_or_default();
        assert!(!name.starts_with("weir_"), "{name}");
        assert_eq!(
            h.families.kind(f) == Some(Kind::Counter),
            name.ends_with("_total"),
            "{name}"
        );
    }
}

#[test]
fn init_errors_name_the_entry() {
    let err = |cfg: &str| {
        let mut f = Families::default();
        ProcessGroups::from_config(cfg, &mut f)
            .err()
            .unwrap_or_default()
    };
    let e = err(r#"{"groups": [{"name": "x", "comm": "("}]}"#);
    assert!(
        e.contains("groups[0] \"x\"") && e.contains("invalid comm regex"),
        "{e}"
    );
    let e = err(
        r#"{"groups": [{"name": "a", "comm": "a"}, {"name": "${nope}", "comm": "(?P<yes>b)"}]}"#,
    );
    assert!(e.contains("groups[1]") && e.contains("${nope}"), "{e}");
    let e = err(r#"{"groups": [{"name": "${1}", "comm": "(a)", "exe": "(b)"}]}"#);
    assert!(e.contains("groups[0]") && e.contains("ambiguous"), "{e}");
    let e = err(r#"{"groups": [{"name": "${2}", "comm": "(a)"}]}"#);
    assert!(
        e.contains("capture 2") && e.contains("1 capture group"),
        "{e}"
    );
    let e = err(r#"{"groups": [{"name": "x"}]}"#);
    assert!(
        e.contains("groups[0]") && e.contains("at least one of comm, exe or cmdline"),
        "{e}"
    );
    let e = err(r#"{"groups": [{"name": "${comm}", "comm": "(?P<comm>.)"}]}"#);
    assert!(e.contains("reserved"), "{e}");
    let e = err(r#"{"groups": [{"name": "x", "comm": "x"}], "prefix": "weir_procs"}"#);
    assert!(
        e.contains("prefix \"weir_procs\"") && e.contains("reserved"),
        "{e}"
    );
    let e = err(r#"{"services": [{"name": "db", "pidfile": "/run/db.pid"}]}"#);
    assert!(e.contains("unknown field `pidfile`"), "{e}");
    let e = err(r#"{"services": [{"name": "db", "comm": "a"}, {"name": "db", "comm": "b"}]}"#);
    assert!(
        e.contains("services[1] \"db\"") && e.contains("twice"),
        "{e}"
    );
    let e = err("{}");
    assert!(e.contains("nothing to report"), "{e}");
}

/// The host's rule for a counter `set` from a snapshot source: a reading
/// below the last one from a new plugin instance is that instance
/// starting over, and what was counted so far is kept; one from the same
/// instance would be passed through as an upstream reset, which this
/// plugin must never make.
#[derive(Default)]
struct HostCounter {
    offset: f64,
    raw: f64,
    instance: u32,
}

impl HostCounter {
    fn set(&mut self, v: f64, instance: u32) -> f64 {
        if v < self.raw {
            assert_ne!(instance, self.instance, "went down within one instance");
            self.offset += self.raw;
        }
        self.raw = v;
        self.instance = instance;
        self.offset + self.raw
    }
}

#[test]
fn running_processes_count_from_the_first_scan_and_new_ones_from_their_start() {
    let cfg = r#"{"groups": [{"name": "app", "comm": "^app$"}],
                  "services": [{"name": "app", "comm": "^app$"}]}"#;
    let mut h = Harness::fresh(cfg);
    let app = |pid: u32, start: f64, user: f64| with_cpu(proc(pid, 1, "app", start), user, 0.0);
    let svc = |s: &Scan2| {
        s.get("namedprocess_service_cpu_seconds_total", &["app", "user"])
            .expect("service cpu")
    };
    // Running for a while before the plugin started: from now on.
    let s = h.scan(100.0, vec![app(10, 50.0, 10.0)]);
    assert_eq!((s.cpu("app", "user"), svc(&s)), (0.0, 0.0));
    // A process started since the last scan: all it used.
    let s = h.scan(101.0, vec![app(10, 50.0, 12.0), app(11, 100.5, 1.0)]);
    assert_eq!((s.cpu("app", "user"), svc(&s)), (3.0, 2.0));
    // The service's main process exits; the next oldest was running before
    // the last scan: it counts from now, not from its start.
    let s = h.scan(102.0, vec![app(11, 100.5, 1.5)]);
    assert_eq!((s.cpu("app", "user"), svc(&s)), (3.5, 2.0));
    let s = h.scan(103.0, vec![app(11, 100.5, 2.5)]);
    assert_eq!((s.cpu("app", "user"), svc(&s)), (4.5, 3.0));
}

#[test]
fn a_new_instance_neither_lowers_nor_doubles_the_exposed_counters() {
    let cfg = r#"{"groups": [{"name": "app", "comm": "^app$"}],
                  "services": [{"name": "app", "comm": "^app$"}]}"#;
    let app = |pid: u32, start: f64, user: f64| with_cpu(proc(pid, 1, "app", start), user, 0.0);
    let scans = [
        (100.0, vec![app(10, 50.0, 10.0)]),
        (101.0, vec![app(10, 50.0, 12.0), app(11, 100.5, 1.0)]),
        (102.0, vec![app(10, 50.0, 13.0)]),
        // A reload or a restart: a new instance from here on.
        (103.0, vec![app(10, 50.0, 14.0)]),
        (104.0, vec![app(10, 50.0, 15.0), app(12, 103.5, 0.5)]),
    ];
    let mut h = Harness::fresh(cfg);
    let mut group = HostCounter::default();
    let mut service = HostCounter::default();
    let mut exposed = Vec::new();
    let mut instance = 1;
    for (i, (time, procs)) in scans.into_iter().enumerate() {
        if i == 3 {
            h = Harness::fresh(cfg);
            instance += 1;
        }
        let s = h.scan(time, procs);
        let g = group.set(s.cpu("app", "user"), instance);
        let v = service.set(
            s.get("namedprocess_service_cpu_seconds_total", &["app", "user"])
                .expect("service cpu"),
            instance,
        );
        exposed.push((g, v));
    }
    // Used while watched: pid 10 from 10 to 15, pid 11 1, pid 12 0.5; the
    // second between the two instances' scans (13 to 14) is not counted.
    assert_eq!(
        exposed,
        vec![(0.0, 0.0), (3.0, 2.0), (4.0, 3.0), (4.0, 3.0), (5.5, 4.0)]
    );
}
