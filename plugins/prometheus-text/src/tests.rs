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

const NODE_CONFIG: &str = r#"{
  "prefix": "edge",
  "labels": {"source": "node"},
  "drop": ["^go_goroutines$"],
  "families": [
    {"name": "node_cpu_seconds_total", "type": "counter", "labels": ["cpu", "mode"],
     "help": "Seconds the CPUs spent in each mode."},
    {"name": "node_filesystem_avail_bytes", "type": "gauge",
     "labels": ["device", "fstype", "mountpoint"]},
    {"name": "node_os_info", "type": "gauge", "labels": ["name", "pretty_name"]},
    {"name": "node_textfile_mtime_seconds", "type": "gauge", "labels": ["file"]},
    {"name": "go_gc_duration_seconds", "type": "summary"},
    {"name": "prometheus_http_request_duration_seconds", "type": "histogram",
     "labels": ["handler"]},
    {"name": "node_vmstat_pgfault", "type": "counter"}
  ]
}"#;

struct Run {
    families: Families,
    series: Vec<(String, Vec<String>, f64)>,
    rejected: u32,
}

impl Run {
    fn get(&self, name: &str, labels: &[&str]) -> Option<f64> {
        self.series
            .iter()
            .find(|(n, l, _)| n == name && l.iter().map(String::as_str).eq(labels.iter().copied()))
            .map(|(_, _, v)| *v)
    }

    fn family(&self, name: &str) -> Option<FamilyId> {
        (0..self.families.len() as u32)
            .map(FamilyId)
            .find(|&f| self.families.name(f) == Some(name))
    }

    fn names(&self) -> Vec<&str> {
        let mut n: Vec<&str> = self.series.iter().map(|(n, _, _)| n.as_str()).collect();
        n.dedup();
        n
    }
}

fn run(config: &str, text: &str) -> Run {
    let mut families = Families::default();
    let mut plugin = PrometheusText::from_config(config, &mut families).expect("config");
    let mut out = Output::new();
    plugin.exposition(text, &mut out);
    let series = out
        .updates()
        .iter()
        .map(|u| {
            let name = families
                .name(FamilyId(u.family))
                .expect("declared")
                .to_string();
            let Change::Set(v) = u.change else {
                panic!("{name}: snapshots are re-exposed with set")
            };
            (name, u.labels.clone(), v)
        })
        .collect();
    Run {
        families,
        series,
        rejected: out.rejected(),
    }
}

#[test]
fn re_exposes_listed_families_of_a_node_exporter_page() {
    let r = run(NODE_CONFIG, NODE);
    assert_eq!(
        r.get("edge_node_cpu_seconds_total", &["0", "idle", "node"]),
        Some(2_073_361.3)
    );
    assert_eq!(
        r.get("edge_node_cpu_seconds_total", &["0", "user", "node"]),
        Some(22791.36)
    );
    // An undeclared label with an empty value is no label at all.
    assert_eq!(
        r.get("edge_node_cpu_seconds_total", &["2", "user", "node"]),
        Some(5.0)
    );
    // With a value, it would merge series: rejected.
    assert_eq!(
        r.get("edge_node_cpu_seconds_total", &["1", "user", "node"]),
        None
    );
    assert_eq!(
        r.get(
            "edge_node_filesystem_avail_bytes",
            &["tmpfs", "tmpfs", "/run/user/1000", "node"]
        ),
        Some(1.6734208e9)
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
    // A summary: quantiles as a gauge, NaN skipped; _sum and _count.
    assert_eq!(
        r.get("edge_go_gc_duration_seconds", &["0.25", "node"]),
        Some(3.3631e-05)
    );
    assert_eq!(r.get("edge_go_gc_duration_seconds", &["1", "node"]), None);
    assert_eq!(
        r.get("edge_go_gc_duration_seconds_sum", &["node"]),
        Some(0.010356485)
    );
    assert_eq!(
        r.get("edge_go_gc_duration_seconds_count", &["node"]),
        Some(212.0)
    );
    // A histogram, whole: every bucket with le, +Inf included; timestamps ignored.
    let h = "edge_prometheus_http_request_duration_seconds";
    assert_eq!(
        r.get(&format!("{h}_bucket"), &["/metrics", "0.1", "node"]),
        Some(2.0)
    );
    assert_eq!(
        r.get(&format!("{h}_bucket"), &["/metrics", "0.2", "node"]),
        Some(3.0)
    );
    assert_eq!(
        r.get(&format!("{h}_bucket"), &["/metrics", "+Inf", "node"]),
        Some(4.0)
    );
    assert_eq!(
        r.get(&format!("{h}_sum"), &["/metrics", "node"]),
        Some(0.71)
    );
    assert_eq!(
        r.get(&format!("{h}_count"), &["/metrics", "node"]),
        Some(4.0)
    );
    let bucket = r.family(&format!("{h}_bucket")).expect("declared");
    assert_eq!(r.families.kind(bucket), Some(Kind::Gauge));
    assert_eq!(
        r.families.labels(bucket),
        Some(
            &[
                "handler".to_string(),
                "le".to_string(),
                "source".to_string()
            ][..]
        )
    );
    // No TYPE line: the listed type stands; a counter gets its _total.
    assert_eq!(
        r.get("edge_node_vmstat_pgfault_total", &["node"]),
        Some(123_456_789.0)
    );
    // What the host requires of every declaration.
    for f in (0..r.families.len() as u32).map(FamilyId) {
        let name = r.families.name(f).unwrap_or_default();
        if r.families.kind(f) == Some(Kind::Counter) {
            assert!(name.ends_with("_total"), "{name}");
        }
    }
    // Unlisted: node_uname_info and node_scrape_collector_success (once
    // each); dropped go_goroutines is not counted; the broken line and the
    // sample with an undeclared label are.
    assert_eq!(r.rejected, 4);
    assert_eq!(r.series.len(), 20);
    assert_eq!(
        r.names(),
        vec![
            "edge_go_gc_duration_seconds",
            "edge_go_gc_duration_seconds_sum",
            "edge_go_gc_duration_seconds_count",
            "edge_node_cpu_seconds_total",
            "edge_node_filesystem_avail_bytes",
            "edge_node_os_info",
            "edge_node_textfile_mtime_seconds",
            "edge_prometheus_http_request_duration_seconds_bucket",
            "edge_prometheus_http_request_duration_seconds_sum",
            "edge_prometheus_http_request_duration_seconds_count",
            "edge_node_vmstat_pgfault_total",
        ]
    );
}

#[test]
fn reads_openmetrics() {
    let text = "# TYPE http_requests counter\n\
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
                # EOF\n\
                after_eof 1\n";
    let r = run(
        r#"{"families": [
            {"name": "http_requests_total", "type": "counter", "labels": ["code"]},
            {"name": "latency_seconds", "type": "histogram"},
            {"name": "after_eof", "type": "gauge"}
        ]}"#,
        text,
    );
    assert_eq!(r.get("http_requests_total", &["200"]), Some(1027.0));
    assert_eq!(r.get("latency_seconds_bucket", &["0.5"]), Some(3.0));
    assert_eq!(r.get("latency_seconds_bucket", &["+Inf"]), Some(5.0));
    assert_eq!(r.get("latency_seconds_count", &[]), Some(5.0));
    assert_eq!(r.get("after_eof", &[]), None);
    assert_eq!(r.series.len(), 5);
    assert_eq!(r.rejected, 0);
}

#[test]
fn rejects_what_does_not_fit_the_listed_families() {
    let text = "# TYPE go_goroutines gauge\n\
                go_goroutines 8\n\
                # TYPE go_threads gauge\n\
                go_threads 12\n\
                # TYPE node_load1 gauge\n\
                node_load1 0.5\n\
                # TYPE c_total counter\n\
                c_total -3\n\
                c_total{x=\"1\"} 3\n\
                # TYPE h histogram\n\
                h_bucket{le=\"fast\"} 1\n\
                h_bucket 1\n\
                h_bucket{le=\"1\"} 1\n\
                h 7\n\
                go_memstats_ratio +Inf\n";
    let r = run(
        r#"{"keep": ["^go_", "^c_", "^h"],
            "families": [
              {"name": "go_goroutines", "type": "counter"},
              {"name": "c_total", "type": "counter", "labels": ["x"]},
              {"name": "h", "type": "histogram"},
              {"name": "go_memstats_ratio", "type": "gauge"}
            ]}"#,
        text,
    );
    // go_goroutines: TYPE contradicts the listing (1). go_threads:
    // unlisted but kept (1). node_load1: not kept, not counted. c_total -3:
    // negative counter (1). h: le not a number (1), no le (1), bare name
    // (1). go_memstats_ratio: infinite (1).
    assert_eq!(r.rejected, 7);
    assert_eq!(r.series.len(), 2);
    assert_eq!(r.get("c_total", &["1"]), Some(3.0));
    assert_eq!(r.get("h_bucket", &["1"]), Some(1.0));
}

#[test]
fn on_response_checks_status_and_format() {
    let mut families = Families::default();
    let mut plugin = PrometheusText::from_config(
        r#"{"families": [{"name": "up_total", "type": "counter"}]}"#,
        &mut families,
    )
    .expect("config");
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
        .on_response(&response(503, "text/plain", ""), &mut Output::new())
        .err()
        .unwrap_or_default();
    assert!(e.contains("9100/metrics") && e.contains("503"), "{e}");
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
    assert!(e.contains("protobuf"), "{e}");
}

#[test]
fn init_errors_name_the_entry() {
    let err = |cfg: &str| {
        let mut f = Families::default();
        PrometheusText::from_config(cfg, &mut f)
            .err()
            .unwrap_or_default()
    };
    let e = err("{}");
    assert!(e.contains("no families"), "{e}");
    let e =
        err(r#"{"families": [{"name": "a", "type": "gauge"}, {"name": "b", "type": "untyped"}]}"#);
    assert!(
        e.contains("families[1] \"b\"") && e.contains("unknown type"),
        "{e}"
    );
    let e = err(r#"{"families": [{"name": "h", "type": "histogram", "labels": ["le"]}]}"#);
    assert!(
        e.contains("families[0] \"h\"") && e.contains("implied"),
        "{e}"
    );
    let e = err(
        r#"{"families": [{"name": "h", "type": "histogram"}, {"name": "h_count", "type": "counter"}]}"#,
    );
    assert!(
        e.contains("families[1] \"h_count\"") && e.contains("families[0] \"h\""),
        "{e}"
    );
    let e = err(
        r#"{"families": [{"name": "a", "type": "counter"}, {"name": "a_total", "type": "counter"}]}"#,
    );
    assert!(
        e.contains("families[1] \"a_total\"") && e.contains("twice"),
        "{e}"
    );
    let e = err(r#"{"keep": ["^node_"], "families": [{"name": "go_threads", "type": "gauge"}]}"#);
    assert!(
        e.contains("families[0] \"go_threads\"") && e.contains("keep/drop"),
        "{e}"
    );
    let e = err(r#"{"drop": ["a", "("], "families": [{"name": "x", "type": "gauge"}]}"#);
    assert!(e.contains("drop[1]: invalid regex"), "{e}");
    let e = err(r#"{"families": [{"name": "weir_up", "type": "gauge"}]}"#);
    assert!(e.contains("reserved") && e.contains("set a prefix"), "{e}");
    let e = err(
        r#"{"labels": {"job": "x"}, "families": [{"name": "a", "type": "gauge", "labels": ["job"]}]}"#,
    );
    assert!(
        e.contains("families[0] \"a\"") && e.contains("\"job\""),
        "{e}"
    );
    let e = err(r#"{"families": [{"name": "a", "type": "gauge", "labels": ["bad-name"]}]}"#);
    assert!(e.contains("not a label name"), "{e}");
    let e = err(r#"{"families": [{"name": "a", "type": "gauge", "buckets": [1]}]}"#);
    assert!(e.contains("unknown field `buckets`"), "{e}");
    let e = err(r#"{"prefix": "my-app", "families": [{"name": "a", "type": "gauge"}]}"#);
    assert!(e.contains("prefix \"my-app\""), "{e}");
}
