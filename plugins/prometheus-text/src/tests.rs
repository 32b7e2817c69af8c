use super::*;
use weir_sdk::__private::log_world::weir::plugin::types::Change;

/// A node_exporter page, trimmed, with a Prometheus server's histogram.
const NODE: &str = r##"# HELP go_gc_duration_seconds A summary of the pause duration of garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.3468e-05
go_gc_duration_seconds{quantile="0.25"} 3.3631e-05
go_gc_duration_seconds{quantile="0.5"} 4.0525e-05
go_gc_duration_seconds{quantile="1"} NaN
go_gc_duration_seconds_sum 0.010356485
go_gc_duration_seconds_count 212
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 8
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 2.0733613e+06
node_cpu_seconds_total{cpu="0",mode="system"} 6843.51
node_cpu_seconds_total{cpu="0",mode="user"} 22791.36
node_cpu_seconds_total{cpu="1",mode="idle"} 2.07409875e+06
node_cpu_seconds_total{cpu="1",mode="user",extra="surprise"} 22108.4
node_cpu_seconds_total{cpu="2",mode="user",extra=""} 5
# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.
# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 4.1532932096e+10
node_filesystem_avail_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run/user/1000"} 1.6734208e+09
# HELP node_os_info A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, name, pretty_name, variant, variant_id, version, version_codename, version_id.
# TYPE node_os_info gauge
node_os_info{name="Debian \"stable\"\nedition",pretty_name="Debian GNU/Linux 12 (bookworm)"} 1
# HELP node_textfile_mtime_seconds Unixtime mtime of textfiles successfully read.
# TYPE node_textfile_mtime_seconds gauge
node_textfile_mtime_seconds{file="C:\\exporter\\job.prom"} 1.712345678e+09
# HELP node_uname_info Labeled system information as provided by the uname system call.
# TYPE node_uname_info gauge
node_uname_info{domainname="(none)",machine="x86_64",nodename="web-1",release="6.1.0-18-amd64",sysname="Linux",version="#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)"} 1
# HELP node_scrape_collector_success node_exporter: Whether a collector succeeded.
# TYPE node_scrape_collector_success gauge
node_scrape_collector_success{collector="cpu"} 1
node_scrape_collector_success{collector="diskstats"} 1
# HELP prometheus_http_request_duration_seconds Histogram of latencies for HTTP requests.
# TYPE prometheus_http_request_duration_seconds histogram
prometheus_http_request_duration_seconds_bucket{handler="/metrics",le="0.1"} 2 1712345678000
prometheus_http_request_duration_seconds_bucket{handler="/metrics",le="0.2"} 3 1712345678000
prometheus_http_request_duration_seconds_bucket{handler="/metrics",le="+Inf"} 4 1712345678000
prometheus_http_request_duration_seconds_sum{handler="/metrics"} 0.71 1712345678000
prometheus_http_request_duration_seconds_count{handler="/metrics"} 4 1712345678000
node_vmstat_pgfault 1.23456789e+08
node_broken{cpu="0" 1
"##;

type WitFamily = weir_sdk::__private::log_world::weir::plugin::types::Family;

/// A plugin instance fed response after response, keeping the families it
/// declared the way the host does: in order, ids following each other.
struct Harness {
    plugin: PrometheusText,
    families: Vec<WitFamily>,
}

/// What one response produced: series by family name.
struct Fed {
    series: Vec<(String, Vec<String>, Change)>,
    rejected: u32,
    declared: Vec<String>,
}

impl Fed {
    fn change(&self, name: &str, labels: &[&str]) -> Option<&Change> {
        self.series
            .iter()
            .find(|(n, l, _)| n == name && l.iter().map(String::as_str).eq(labels.iter().copied()))
            .map(|(_, _, c)| c)
    }

    fn get(&self, name: &str, labels: &[&str]) -> Option<f64> {
        match self.change(name, labels)? {
            Change::Set(v) => Some(*v),
            c => panic!("{name}: expected a set, got {c:?}"),
        }
    }

    fn count(&self, name: &str) -> usize {
        self.series.iter().filter(|(n, _, _)| n == name).count()
    }
}

impl Harness {
    fn new(config: &str) -> Harness {
        let mut f = Families::default();
        let plugin = PrometheusText::init(config, &mut f).expect("config");
        assert!(f.is_empty(), "nothing is declared at init");
        Harness {
            plugin,
            families: Vec::new(),
        }
    }

    fn feed(&mut self, text: &str) -> Fed {
        let mut out = Output::new();
        self.plugin.exposition(text, &mut out);
        let w = out.finish();
        let declared = w.declare.iter().map(|f| f.name.clone()).collect();
        self.families.extend(w.declare);
        let series = w
            .updates
            .into_iter()
            .map(|u| {
                let f = self
                    .families
                    .get(u.family as usize)
                    .unwrap_or_else(|| panic!("update of undeclared family {}", u.family));
                assert_eq!(
                    u.labels.len(),
                    f.labels.len(),
                    "{}: one value per label name",
                    f.name
                );
                (f.name.clone(), u.labels, u.change)
            })
            .collect();
        Fed {
            series,
            rejected: w.rejected,
            declared,
        }
    }

    fn family(&self, name: &str) -> &WitFamily {
        self.families
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} not declared"))
    }
}

/// What the host requires of every declaration (agent/src/store.rs).
fn host_accepts(f: &WitFamily) {
    let name_ok = |n: &str| {
        let mut c = n.chars();
        c.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    assert!(name_ok(&f.name), "{}", f.name);
    assert!(!f.name.starts_with("weir_"), "{}", f.name);
    if f.kind == Kind::Counter {
        assert!(f.name.ends_with("_total"), "{}", f.name);
    }
    for (i, l) in f.labels.iter().enumerate() {
        assert!(name_ok(l) && !l.starts_with("__"), "{}: {l}", f.name);
        assert!(!f.labels[..i].contains(l), "{}: {l} twice", f.name);
    }
    match f.kind {
        Kind::Histogram => {
            assert!(!f.labels.iter().any(|l| l == "le"), "{}", f.name);
            assert!(!f.buckets.is_empty(), "{}", f.name);
            assert!(f.buckets.windows(2).all(|w| w[0] < w[1]), "{}", f.name);
            // A trailing +Inf is dropped by the host: [+Inf] alone is a
            // histogram with only the +Inf bucket.
            let bounds = f
                .buckets
                .strip_suffix(&[f64::INFINITY])
                .unwrap_or(&f.buckets);
            assert!(bounds.iter().all(|b| b.is_finite()), "{}", f.name);
        }
        Kind::Summary => assert!(!f.labels.iter().any(|l| l == "quantile")),
        _ => assert!(f.buckets.is_empty()),
    }
}

#[test]
fn re_exposes_every_family_of_a_node_exporter_page() {
    let mut h = Harness::new(
        r#"{"prefix": "edge", "labels": {"source": "node"}, "drop": ["^go_goroutines$"]}"#,
    );
    let r = h.feed(NODE);
    assert_eq!(
        r.declared,
        vec![
            "edge_go_gc_duration_seconds",
            "edge_node_cpu_seconds_total",
            "edge_node_filesystem_avail_bytes",
            "edge_node_os_info",
            "edge_node_textfile_mtime_seconds",
            "edge_node_uname_info",
            "edge_node_scrape_collector_success",
            "edge_prometheus_http_request_duration_seconds",
            "edge_node_vmstat_pgfault",
        ]
    );
    for f in &h.families {
        host_accepts(f);
    }
    // Kinds kept; untyped becomes a gauge; HELP from the exposition.
    let cpu = h.family("edge_node_cpu_seconds_total");
    assert_eq!(cpu.kind, Kind::Counter);
    assert_eq!(cpu.help, "Seconds the CPUs spent in each mode.");
    // The union of the label names of the first response, in order.
    assert_eq!(cpu.labels, ["cpu", "mode", "extra", "source"]);
    assert_eq!(h.family("edge_go_gc_duration_seconds").kind, Kind::Summary);
    assert_eq!(h.family("edge_node_vmstat_pgfault").kind, Kind::Gauge);
    assert_eq!(h.family("edge_node_vmstat_pgfault").help, DEFAULT_HELP);
    let hist = h.family("edge_prometheus_http_request_duration_seconds");
    assert_eq!(hist.kind, Kind::Histogram);
    assert_eq!(hist.labels, ["handler", "source"]);
    assert_eq!(hist.buckets, [0.1, 0.2]);

    assert_eq!(
        r.get("edge_node_cpu_seconds_total", &["0", "idle", "", "node"]),
        Some(2_073_361.3)
    );
    assert_eq!(
        r.get(
            "edge_node_cpu_seconds_total",
            &["1", "user", "surprise", "node"]
        ),
        Some(22108.4)
    );
    assert_eq!(
        r.get("edge_node_cpu_seconds_total", &["2", "user", "", "node"]),
        Some(5.0)
    );
    // Escapes are undone: \" \n \\.
    assert_eq!(
        r.get(
            "edge_node_os_info",
            &[
                "Debian \"stable\"\nedition",
                "Debian GNU/Linux 12 (bookworm)",
                "node"
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        r.get(
            "edge_node_textfile_mtime_seconds",
            &[r"C:\exporter\job.prom", "node"]
        ),
        Some(1.712345678e9)
    );
    assert_eq!(
        r.get("edge_node_scrape_collector_success", &["diskstats", "node"]),
        Some(1.0)
    );
    assert_eq!(
        r.get("edge_node_vmstat_pgfault", &["node"]),
        Some(1.23456789e8)
    );
    // A summary, whole, NaN quantile included.
    match r.change("edge_go_gc_duration_seconds", &["node"]) {
        Some(Change::SetSummary(s)) => {
            assert_eq!(s.count, 212);
            assert_eq!(s.sum, 0.010356485);
            assert_eq!(s.quantiles.len(), 4);
            assert_eq!(s.quantiles[1], (0.25, 3.3631e-05));
            assert!(s.quantiles[3].0 == 1.0 && s.quantiles[3].1.is_nan());
        }
        c => panic!("summary: {c:?}"),
    }
    // A histogram, whole: cumulative 2, 3, 4 -> 2, 1, 1; timestamps ignored.
    match r.change(
        "edge_prometheus_http_request_duration_seconds",
        &["/metrics", "node"],
    ) {
        Some(Change::SetHistogram(hr)) => {
            assert_eq!(hr.counts, [2, 1, 1]);
            assert_eq!(hr.sum, 0.71);
        }
        c => panic!("histogram: {c:?}"),
    }
    // Only the broken line is rejected; dropped go_goroutines is not counted.
    assert_eq!(r.rejected, 1);
    assert_eq!(r.series.len(), 16);
}

#[test]
fn later_responses_reuse_and_extend_the_declarations() {
    let mut h = Harness::new("{}");
    let first = "# TYPE a_total counter\n\
                 a_total{x=\"1\"} 5\n\
                 a_total{y=\"2\"} 6\n\
                 # TYPE g gauge\n\
                 g 1\n";
    let r = h.feed(first);
    assert_eq!(r.declared, ["a_total", "g"]);
    assert_eq!(h.family("a_total").labels, ["x", "y"]);
    assert_eq!(r.get("a_total", &["1", ""]), Some(5.0));
    assert_eq!(r.get("a_total", &["", "2"]), Some(6.0));
    // The same page again: nothing declared, same series.
    let r = h.feed(first);
    assert!(r.declared.is_empty());
    assert_eq!(r.series.len(), 3);
    // A new label (rejected, with a value; absent when empty), a new family
    // (declared with the next id), a family gone (no series), a family
    // whose type changed (rejected).
    let r = h.feed(
        "# TYPE a_total counter\n\
         a_total{x=\"1\"} 7\n\
         a_total{x=\"1\",z=\"new\"} 8\n\
         a_total{x=\"3\",z=\"\"} 9\n\
         # TYPE g histogram\n\
         g_bucket{le=\"+Inf\"} 1\n\
         g_sum 1\n\
         g_count 1\n\
         # TYPE late gauge\n\
         late{k=\"v\"} 3\n",
    );
    assert_eq!(r.declared, ["late"]);
    assert_eq!(h.families.len(), 3);
    assert_eq!(r.get("a_total", &["1", ""]), Some(7.0));
    assert_eq!(r.get("a_total", &["3", ""]), Some(9.0));
    assert_eq!(r.get("late", &["v"]), Some(3.0));
    assert_eq!(r.count("g"), 0);
    assert_eq!(r.series.len(), 3);
    assert_eq!(r.rejected, 1 + 3);
}

#[test]
fn reads_openmetrics() {
    let mut h = Harness::new("{}");
    let r = h.feed(
        "# TYPE http_requests counter\n\
         # HELP http_requests Requests.\n\
         http_requests_total{code=\"200\"} 1027 1712345678.123\n\
         http_requests_created{code=\"200\"} 1.7e9\n\
         # TYPE latency_seconds histogram\n\
         # UNIT latency_seconds seconds\n\
         latency_seconds_bucket{le=\"0.5\"} 3 # {trace_id=\"kjh\"} 0.3\n\
         latency_seconds_bucket{le=\"+Inf\"} 5\n\
         latency_seconds_sum 2.5\n\
         latency_seconds_count 5\n\
         latency_seconds_created 1.7e9\n\
         # TYPE build info\n\
         build_info{version=\"1.2\"} 1\n\
         # TYPE state stateset\n\
         state{state=\"a\"} 1\n\
         state{state=\"b\"} 0\n\
         # EOF\n\
         after_eof 1\n",
    );
    assert_eq!(
        r.declared,
        [
            "http_requests_total",
            "latency_seconds",
            "build_info",
            "state"
        ]
    );
    assert_eq!(h.family("http_requests_total").kind, Kind::Counter);
    assert_eq!(h.family("http_requests_total").help, "Requests.");
    assert_eq!(r.get("http_requests_total", &["200"]), Some(1027.0));
    match r.change("latency_seconds", &[]) {
        Some(Change::SetHistogram(hr)) => {
            assert_eq!((hr.counts.clone(), hr.sum), (vec![3, 2], 2.5))
        }
        c => panic!("{c:?}"),
    }
    assert_eq!(r.get("build_info", &["1.2"]), Some(1.0));
    assert_eq!(r.get("state", &["b"]), Some(0.0));
    assert_eq!(r.rejected, 0);
}

#[test]
fn histograms_are_read_exactly_or_rejected() {
    let mut h = Harness::new("{}");
    // Series share 0.1 and 1 (the second also has 0.5: still exact, its
    // count at 0.5 folds into the bucket up to 1); +Inf missing in the
    // third: its _count stands in.
    let r = h.feed(
        "# TYPE d histogram\n\
         d_bucket{p=\"a\",le=\"0.1\"} 1\n\
         d_bucket{p=\"a\",le=\"1.0\"} 4\n\
         d_bucket{p=\"a\",le=\"+Inf\"} 4\n\
         d_sum{p=\"a\"} 2\n\
         d_count{p=\"a\"} 4\n\
         d_bucket{p=\"b\",le=\"0.1\"} 0\n\
         d_bucket{p=\"b\",le=\"0.5\"} 1\n\
         d_bucket{p=\"b\",le=\"1\"} 2\n\
         d_bucket{p=\"b\",le=\"+Inf\"} 9\n\
         d_sum{p=\"b\"} 20\n\
         d_count{p=\"b\"} 9\n\
         d_bucket{p=\"c\",le=\"0.1\"} 0\n\
         d_bucket{p=\"c\",le=\"1\"} 0\n\
         d_sum{p=\"c\"} 3\n\
         d_count{p=\"c\"} 1\n",
    );
    assert_eq!(h.family("d").buckets, [0.1, 1.0]);
    let counts = |r: &Fed, p: &str| match r.change("d", &[p]) {
        Some(Change::SetHistogram(hr)) => Some(hr.counts.clone()),
        None => None,
        c => panic!("{c:?}"),
    };
    assert_eq!(counts(&r, "a"), Some(vec![1, 3, 0]));
    assert_eq!(counts(&r, "b"), Some(vec![0, 2, 7]));
    assert_eq!(counts(&r, "c"), Some(vec![0, 0, 1]));
    assert_eq!(r.rejected, 0);
    // Counts going down, not whole, a declared bound missing: each series
    // rejected with all its samples. No _sum is valid: kept, sum NaN.
    let r = h.feed(
        "# TYPE d histogram\n\
         d_bucket{p=\"a\",le=\"0.1\"} 5\n\
         d_bucket{p=\"a\",le=\"1\"} 4\n\
         d_bucket{p=\"a\",le=\"+Inf\"} 4\n\
         d_sum{p=\"a\"} 2\n\
         d_bucket{p=\"b\",le=\"0.1\"} 0.5\n\
         d_bucket{p=\"b\",le=\"1\"} 1\n\
         d_bucket{p=\"b\",le=\"+Inf\"} 1\n\
         d_sum{p=\"b\"} 2\n\
         d_bucket{p=\"c\",le=\"1\"} 1\n\
         d_bucket{p=\"c\",le=\"+Inf\"} 1\n\
         d_sum{p=\"c\"} 2\n\
         d_bucket{p=\"e\",le=\"0.1\"} 1\n\
         d_bucket{p=\"e\",le=\"1\"} 1\n\
         d_bucket{p=\"e\",le=\"+Inf\"} 1\n\
         d_bucket{p=\"f\",le=\"0.1\"} 1\n\
         d_bucket{p=\"f\",le=\"1\"} 1\n\
         d_bucket{p=\"f\",le=\"+Inf\"} 1\n\
         d_sum{p=\"f\"} 0.01\n",
    );
    assert!(r.declared.is_empty());
    assert_eq!(r.series.len(), 2);
    assert_eq!(counts(&r, "f"), Some(vec![1, 0, 0]));
    assert_eq!(counts(&r, "e"), Some(vec![1, 0, 0]));
    assert!(matches!(r.change("d", &["e"]), Some(Change::SetHistogram(hr)) if hr.sum.is_nan()));
    assert_eq!(r.rejected, 4 + 4 + 3);
}

#[test]
fn families_that_cannot_be_re_exposed_are_refused_and_counted() {
    let mut h = Harness::new(r#"{"labels": {"job": "edge"}}"#);
    let text = "# TYPE job:rate5m gauge\n\
                job:rate5m 1\n\
                # TYPE weir_up gauge\n\
                weir_up 1\n\
                # TYPE h histogram\n\
                h_bucket{le=\"+Inf\"} 1\n\
                h_sum 1\n\
                h_count 1\n\
                # TYPE s summary\n\
                s_sum 1\n\
                s_count 2\n\
                # TYPE s_count gauge\n\
                s_count{x=\"1\"} 3\n\
                # TYPE gh gaugehistogram\n\
                gh_bucket{le=\"+Inf\"} 1\n\
                # TYPE odd gauge\n\
                odd{__meta=\"x\"} 1\n\
                # TYPE requests counter\n\
                requests{job=\"api\"} 12\n";
    let r = h.feed(text);
    // s is declared (from s_sum) but incomplete: the TYPE line of the
    // gauge s_count takes its _count, and that gauge clashes with it.
    // requests: a counter without _total is a gauge under its own name; the
    // upstream job label is renamed, as a Prometheus server would.
    // h, with only the +Inf bucket, is a valid histogram.
    assert_eq!(r.declared, ["h", "s", "requests"]);
    for f in &h.families {
        host_accepts(f);
    }
    assert_eq!(h.family("requests").kind, Kind::Gauge);
    assert_eq!(h.family("requests").labels, ["exported_job", "job"]);
    assert_eq!(r.get("requests", &["api", "edge"]), Some(12.0));
    assert_eq!(h.family("h").buckets, [f64::INFINITY]);
    assert!(matches!(r.change("h", &["edge"]), Some(Change::SetHistogram(hr)) if hr.counts == [1]));
    assert_eq!(r.series.len(), 2);
    // job:rate5m, weir_up, s_sum, s_count gauge (2), gh, odd.
    assert_eq!(r.rejected, 1 + 1 + 1 + 2 + 1 + 1);
    // Refused families stay refused, counted each time.
    let r = h.feed(text);
    assert!(r.declared.is_empty());
    assert_eq!(r.rejected, 7);
    // With a prefix, weir_up can be re-exposed.
    let r = Harness::new(r#"{"prefix": "up"}"#).feed("weir_up 1\n");
    assert_eq!(r.get("up_weir_up", &[]), Some(1.0));
}

#[test]
fn values_that_cannot_be_stored_are_rejected() {
    let mut h = Harness::new(r#"{"keep": ["^c_", "^g"]}"#);
    let r = h.feed(
        "# TYPE c_total counter\n\
         c_total{x=\"a\"} -3\n\
         c_total{x=\"b\"} 3\n\
         c_total{x=\"c\"} NaN\n\
         # TYPE g gauge\n\
         g{x=\"a\"} +Inf\n\
         g{x=\"b\"} -2.5\n\
         g{x=\"c\"} 1\"\n\
         # TYPE other gauge\n\
         other 1\n",
    );
    assert_eq!(r.get("c_total", &["b"]), Some(3.0));
    assert_eq!(r.get("g", &["b"]), Some(-2.5));
    // Gauges may be infinite (or NaN); counters may not.
    assert_eq!(r.get("g", &["a"]), Some(f64::INFINITY));
    assert_eq!(r.series.len(), 3);
    assert_eq!(r.rejected, 3);
}

#[test]
fn on_response_reads_text_and_refuses_protobuf() {
    let mut families = Families::default();
    let mut plugin = PrometheusText::init("{}", &mut families).expect("config");
    let response = |status: u16, content_type: &str, body: &str| Response {
        url: "http://127.0.0.1:9100/metrics".into(),
        status,
        headers: vec![("content-type".into(), content_type.into())],
        body: body.as_bytes().to_vec(),
    };
    let mut out = Output::new();
    plugin
        .on_response(
            &response(200, "text/plain; version=0.0.4", "up_total 3\n"),
            &mut out,
        )
        .expect("ok");
    assert!(matches!(out.updates()[0].change, Change::Set(v) if v == 3.0));
    let e = plugin
        .on_response(
            &response(
                200,
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily",
                "",
            ),
            &mut Output::new(),
        )
        .err()
        .unwrap_or_default();
    assert!(e.contains("protobuf") && e.contains("9100/metrics"), "{e}");
}

#[test]
fn init_errors() {
    let err = |cfg: &str| {
        let mut f = Families::default();
        PrometheusText::init(cfg, &mut f).err().unwrap_or_default()
    };
    assert!(PrometheusText::init("", &mut Families::default()).is_ok());
    let e = err(r#"{"drop": ["a", "("]}"#);
    assert!(e.contains("drop[1]: invalid regex"), "{e}");
    let e = err(r#"{"prefix": "my-app"}"#);
    assert!(e.contains("prefix \"my-app\""), "{e}");
    let e = err(r#"{"prefix": "weir"}"#);
    assert!(e.contains("reserved"), "{e}");
    let e = err(r#"{"labels": {"le": "x"}}"#);
    assert!(e.contains("\"le\""), "{e}");
    let e = err(r#"{"labels": {"bad-name": "x"}}"#);
    assert!(e.contains("not a label name"), "{e}");
    let e = err(r#"{"families": []}"#);
    assert!(e.contains("unknown field `families`"), "{e}");
}
