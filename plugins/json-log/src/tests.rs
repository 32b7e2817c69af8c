use super::*;
use weir_sdk::__private::log_world::weir::plugin::types::{Change, Update};

const ZEROLOG: &str = r#"{
  "metrics": [
    {"name": "app_http_requests_total", "type": "counter", "labels": ["method", "route", "status"]},
    {"name": "app_http_request_duration_seconds", "type": "histogram", "unit": "seconds",
     "labels": ["method"], "buckets": [0.005, 0.1, 1]},
    {"name": "app_log_messages_total", "type": "counter", "labels": ["level"]}
  ],
  "rules": [
    {"name": "requests",
     "match": [{"field": "message", "equals": "HTTP request"},
               {"field": "path", "regex": "^/health", "not": true}],
     "emit": [{"metric": "app_http_requests_total", "labels": {"route": "${path}"}},
              {"metric": "app_http_request_duration_seconds", "value": "duration_ms", "scale": 0.001}]},
    {"name": "levels",
     "emit": [{"metric": "app_log_messages_total", "labels": {"level": "${level:-none}"}}]}
  ]
}"#;

fn run(cfg: &str, lines: &[&str]) -> Output {
    let mut f = Families::default();
    let p = JsonLog::from_config(cfg, &mut f).expect("config");
    let mut out = Output::for_families(&f);
    let mut slots = Vec::new();
    for l in lines {
        p.line(l, &mut slots, &mut out);
    }
    out
}

fn init_err(cfg: &str) -> String {
    let mut f = Families::default();
    JsonLog::from_config(cfg, &mut f).err().unwrap_or_default()
}

fn find<'o>(out: &'o Output, family: u32, labels: &[&str]) -> Option<&'o Update> {
    out.updates()
        .iter()
        .find(|u| u.family == family && u.labels == labels)
}

fn added(out: &Output, family: u32, labels: &[&str]) -> f64 {
    match find(out, family, labels).map(|u| &u.change) {
        Some(Change::Add(v)) => *v,
        other => panic!("no add for {labels:?}: {other:?}"),
    }
}

fn observed(out: &Output, family: u32, labels: &[&str]) -> Vec<f64> {
    match find(out, family, labels).map(|u| &u.change) {
        Some(Change::Observe(v)) => vec![*v],
        Some(Change::ObserveMany(vs)) => vs.clone(),
        other => panic!("no observation for {labels:?}: {other:?}"),
    }
}

#[test]
fn zerolog_requests_and_levels() {
    let out = run(
        ZEROLOG,
        &[
            r#"{"level":"info","message":"HTTP request","method":"POST","path":"/api/v1/tables/users","status":200,"duration_ms":25.5}"#,
            r#"{"level":"info","message":"HTTP request","method":"POST","path":"/api/v1/tables/users","status":200,"duration_ms":4.5}"#,
            r#"{"level":"warn","message":"HTTP request","method":"GET","path":"/api/v1/x","status":"404","duration_ms":"1"}"#,
            r#"{"level":"info","message":"HTTP request","method":"GET","path":"/health/ready","status":200,"duration_ms":0.1}"#,
            r#"{"message":"started"}"#,
            "",
            "\u{feff}{\"message\":\"after a byte-order mark\"}",
            "plain text line",
            r#"["not","an","object"]"#,
        ],
    );
    assert_eq!(out.rejected(), 2);
    assert_eq!(
        added(&out, 0, &["POST", "/api/v1/tables/users", "200"]),
        2.0
    );
    // A numeric string keeps its text as a label.
    assert_eq!(added(&out, 0, &["GET", "/api/v1/x", "404"]), 1.0);
    // Health checks are excluded by the negated regex.
    assert!(find(&out, 0, &["GET", "/health/ready", "200"]).is_none());
    let post = observed(&out, 1, &["POST"]);
    assert_eq!(post.len(), 2);
    assert!((post[0] - 0.0255).abs() < 1e-12 && (post[1] - 0.0045).abs() < 1e-12);
    assert_eq!(observed(&out, 1, &["GET"]), vec![0.001]);
    assert_eq!(added(&out, 2, &["info"]), 3.0);
    assert_eq!(added(&out, 2, &["warn"]), 1.0);
    assert_eq!(added(&out, 2, &["none"]), 2.0);
    assert_eq!(out.len(), 7);
}

#[test]
fn nested_fields_templates_and_constants() {
    // Caddy-style nested access log.
    let cfg = r#"{
      "metrics": [{"name": "caddy_requests_total", "type": "counter", "labels": ["host", "method", "code", "proto"]}],
      "rules": [{"match": [{"field": "logger", "equals": "http.log.access"}],
        "emit": [{"metric": "caddy_requests_total",
                  "labels": {"host": "${request.host}", "method": "${request.method}",
                             "code": "${status}xx$$", "proto": "HTTP"}}]}]
    }"#;
    let out = run(
        cfg,
        &[
            r#"{"level":"info","logger":"http.log.access","request":{"host":"a.example","method":"GET","headers":{"User-Agent":["curl"]}},"status":301}"#,
            r#"{"level":"info","logger":"http.log.error","request":{"host":"a.example","method":"GET"},"status":500}"#,
        ],
    );
    assert_eq!(out.rejected(), 0);
    assert_eq!(out.len(), 1);
    assert_eq!(added(&out, 0, &["a.example", "GET", "301xx$", "HTTP"]), 1.0);
}

#[test]
fn conditions_equals_exists_and_ranges() {
    let cfg = r#"{
      "metrics": [{"name": "errors_total", "type": "counter", "labels": []},
                  {"name": "slow_total", "type": "counter", "labels": []},
                  {"name": "no_user_total", "type": "counter", "labels": []},
                  {"name": "flagged_total", "type": "counter", "labels": []}],
      "rules": [
        {"match": [{"field": "status", "ge": 500, "lt": 600}], "emit": [{"metric": "errors_total"}]},
        {"match": [{"field": "latency", "gt": 1}, {"field": "status", "equals": 200}],
         "emit": [{"metric": "slow_total"}]},
        {"match": [{"field": "user.id", "exists": false}], "emit": [{"metric": "no_user_total"}]},
        {"match": [{"field": "flag", "equals": true}], "emit": [{"metric": "flagged_total"}]}
      ]
    }"#;
    let out = run(
        cfg,
        &[
            r#"{"status":503,"latency":2,"user":{"id":7}}"#,
            r#"{"status":"502","latency":0.5,"user":{"id":null}}"#,
            r#"{"status":600,"user":{}}"#,
            r#"{"status":200,"latency":"1.5","flag":true,"user":{"id":"x"}}"#,
            r#"{"status":200,"latency":1,"flag":"true","user":{"id":"y"}}"#,
            r#"{"status":"abc","latency":true,"flag":false,"user":{"id":"z"}}"#,
        ],
    );
    assert_eq!(added(&out, 0, &[]), 2.0);
    assert_eq!(added(&out, 1, &[]), 1.0);
    assert_eq!(added(&out, 2, &[]), 2.0);
    assert_eq!(added(&out, 3, &[]), 2.0);
    assert_eq!(out.rejected(), 0);
}

#[test]
fn missing_and_bad_values() {
    let cfg = r#"{
      "metrics": [{"name": "bytes_total", "type": "counter", "labels": ["route"]},
                  {"name": "queue_depth", "type": "gauge", "labels": []},
                  {"name": "sent_total", "type": "counter", "labels": []}],
      "rules": [{"emit": [
        {"metric": "bytes_total", "value": "bytes"},
        {"metric": "queue_depth", "value": "${queue.depth}"},
        {"metric": "sent_total", "value": "${sent:-0}"}
      ]}]
    }"#;
    let out = run(
        cfg,
        &[
            // route absent: bytes skipped quietly; depth absent: rejected; sent defaults to 0.
            r#"{"bytes":10}"#,
            // bytes not numeric: rejected.
            r#"{"route":"/a","bytes":"ten","queue":{"depth":4},"sent":2}"#,
            // negative counter add: rejected; NaN string: rejected.
            r#"{"route":"/a","bytes":-5,"queue":{"depth":"NaN"},"sent":1}"#,
            r#"{"route":"/a","bytes":7,"queue":{"depth":9},"sent":true}"#,
        ],
    );
    assert_eq!(out.rejected(), 4);
    assert_eq!(added(&out, 0, &["/a"]), 7.0);
    match &find(&out, 1, &[]).expect("gauge").change {
        Change::Set(v) => assert_eq!(*v, 9.0),
        c => panic!("{c:?}"),
    }
    assert_eq!(added(&out, 2, &[]), 4.0);
}

#[test]
fn stop_and_durations() {
    let cfg = r#"{
      "metrics": [{"name": "job_seconds", "type": "histogram", "labels": ["job"]},
                  {"name": "lines_total", "type": "counter", "labels": []}],
      "rules": [
        {"name": "jobs", "match": [{"field": "elapsed", "exists": true}], "stop": true,
         "emit": [{"metric": "job_seconds", "value": "elapsed", "parse": "duration"}]},
        {"emit": [{"metric": "lines_total"}]}
      ]
    }"#;
    let out = run(
        cfg,
        &[
            r#"{"job":"backup","elapsed":"1m30.5s"}"#,
            r#"{"job":"backup","elapsed":"250ms"}"#,
            r#"{"job":"backup","elapsed":2}"#,
            r#"{"job":"backup","elapsed":"soon"}"#,
            r#"{"job":"other"}"#,
        ],
    );
    let vs = observed(&out, 0, &["backup"]);
    assert_eq!(vs, vec![90.5, 0.25, 2.0]);
    assert_eq!(out.rejected(), 1);
    // Only the line without `elapsed` reaches the second rule.
    assert_eq!(added(&out, 1, &[]), 1.0);
}

#[test]
fn go_durations() {
    assert_eq!(parse_go_duration("1h2m3s"), Some(3723.0));
    assert_eq!(parse_go_duration("150µs"), Some(150e-6));
    assert_eq!(parse_go_duration("-1.5s"), Some(-1.5));
    assert_eq!(parse_go_duration("3ns"), Some(3e-9));
    assert_eq!(parse_go_duration("5"), None);
    assert_eq!(parse_go_duration("5x"), None);
    assert_eq!(parse_go_duration("-"), None);
    // Exact in decimal (issue 13): summed in nanoseconds, rounded once.
    assert_eq!(parse_go_duration("350ms"), Some(0.35));
    assert_eq!(parse_go_duration("0.35ms"), Some(0.00035));
    assert_eq!(parse_go_duration("1h0.35s"), Some(3600.35));
    assert_eq!(parse_go_duration("1m0.7s"), Some(60.7));
    assert_eq!(parse_go_duration("0"), Some(0.0));
    assert_eq!(parse_go_duration("1.2.3s"), None);
}

#[test]
fn init_errors_name_the_rule() {
    let e = init_err(
        r#"{"metrics":[{"name":"a_total","type":"counter"}],
            "rules":[{"name":"broken","match":[{"field":"m","regex":"("}],"emit":[{"metric":"a_total"}]}]}"#,
    );
    assert!(
        e.contains("rule \"broken\" (rules[0]) match[0]") && e.contains("invalid regex"),
        "{e}"
    );

    let e = init_err(
        r#"{"metrics":[{"name":"a_total","type":"counter"}],
            "rules":[{"match":[{"field":"m","equals":"x","exists":true}],"emit":[{"metric":"a_total"}]}]}"#,
    );
    assert!(
        e.contains("rules[0] match[0]") && e.contains("exactly one test"),
        "{e}"
    );

    let e = init_err(
        r#"{"metrics":[{"name":"a_total","type":"counter","labels":["x"]}],
            "rules":[{"emit":[{"metric":"a_total"}]},{"name":"r2","emit":[{"metric":"a_total","labels":{"y":"1"}}]}]}"#,
    );
    assert!(
        e.contains("rule \"r2\" (rules[1]) emit[0]") && e.contains("no label \"y\""),
        "{e}"
    );

    let e = init_err(
        r#"{"metrics":[{"name":"a_total","type":"counter","labels":["x"]}],
            "rules":[{"emit":[{"metric":"a_total","labels":{"x":"${a..b}"}}]}]}"#,
    );
    assert!(e.contains("label \"x\"") && e.contains("empty part"), "{e}");

    let e = init_err(
        r#"{"metrics":[{"name":"a_total","type":"counter","labels":["x"]}],
            "rules":[{"emit":[{"metric":"a_total","labels":{"x":"${x"}}]}]}"#,
    );
    assert!(e.contains("unclosed"), "{e}");

    let e = init_err(
        r#"{"metrics":[{"name":"g","type":"gauge"}],"rules":[{"emit":[{"metric":"g"}]}]}"#,
    );
    assert!(e.contains("needs a value to set"), "{e}");

    let e = init_err(
        r#"{"metrics":[{"name":"a_total","type":"counter"}],"rules":[{"emit":[{"metric":"a_total","op":"set"}]}]}"#,
    );
    assert!(e.contains("op \"set\" does not apply to counter"), "{e}");

    let e = init_err(r#"{"metrics":[],"rules":[{"emit":[{"metric":"nope"}]}]}"#);
    assert!(e.contains("\"nope\" is not declared"), "{e}");

    let e = init_err(r#"{"rules":[{"emit":[]}], "bogus": 1}"#);
    assert!(e.contains("invalid settings") && e.contains("bogus"), "{e}");

    let e = init_err(r#"{"metrics":[{"name":"a","type":"summary"}],"rules":[{"emit":[]}]}"#);
    assert!(
        e.contains("metrics[0] \"a\"") && e.contains("summary"),
        "{e}"
    );

    assert!(init_err(r#"{"rules":[]}"#).contains("no rules"));
}

#[test]
fn families_are_declared_in_order() {
    let mut f = Families::default();
    JsonLog::from_config(ZEROLOG, &mut f).expect("config");
    assert_eq!(f.len(), 3);
    assert_eq!(
        f.name(FamilyId(1)),
        Some("app_http_request_duration_seconds")
    );
    assert_eq!(f.kind(FamilyId(1)), Some(Kind::Histogram));
    assert_eq!(
        f.labels(FamilyId(0)).map(|l| l.to_vec()),
        Some(vec![
            "method".to_string(),
            "route".to_string(),
            "status".to_string()
        ])
    );
}

/// Rough throughput check: `cargo test --release -p json-log -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput() {
    let mut f = Families::default();
    let p = JsonLog::from_config(ZEROLOG, &mut f).expect("config");
    let line = r#"{"level":"info","time":"2026-11-22T10:00:00Z","caller":"server/http.go:88","message":"HTTP request","method":"POST","path":"/api/v1/tables/users","status":200,"duration_ms":25.5,"request_id":"c4f1a2b3","user_agent":"Mozilla/5.0 (X11; Linux x86_64)"}"#;
    let n = 500_000;
    let start = std::time::Instant::now();
    let mut out = Output::new();
    let mut slots = Vec::new();
    for _ in 0..n {
        p.line(line, &mut slots, &mut out);
    }
    let el = start.elapsed();
    eprintln!(
        "{n} lines in {el:?}: {:.0} ns/line, {:.0} lines/s",
        el.as_nanos() as f64 / n as f64,
        n as f64 / el.as_secs_f64()
    );
    assert_eq!(out.rejected(), 0);
}

#[test]
fn a_lone_surrogate_keeps_its_field_with_the_replacement_character() {
    // Issue 13: `{"host":"bad\ud800x"}` was counted under the default, as if
    // `host` were absent.
    let cfg = r#"{"metrics":[{"name":"r_total","type":"counter","labels":["host"]}],
        "rules":[{"match":[{"field":"host","regex":"^bad"}],
                  "emit":[{"metric":"r_total","labels":{"host":"${host:-none}"}}]}]}"#;
    let mut f = Families::default();
    let mut p = JsonLog::from_config(cfg, &mut f).expect("config");
    let mut out = Output::new();
    let batch = Batch {
        origin: "t".into(),
        lines: vec![
            r#"{"host":"bad\ud800x"}"#.into(),
            r#"{"host":"bad\udc00\ud83d\ude00"}"#.into(),
            r#"{"bad\ud800key":1,"host":"bad"}"#.into(),
        ],
    };
    p.on_lines(&batch, &mut out).expect("lines");
    assert_eq!(added(&out, 0, &["bad\u{fffd}x"]), 1.0);
    assert_eq!(added(&out, 0, &["bad\u{fffd}\u{1f600}"]), 1.0);
    assert_eq!(added(&out, 0, &["bad"]), 1.0);
    assert!(find(&out, 0, &["none"]).is_none());
    assert_eq!(out.rejected(), 0);
}

const LOGFMT: &str = r#"{
  "format": "logfmt",
  "metrics": [
    {"name": "http_requests_total", "type": "counter", "labels": ["method", "path", "status"]},
    {"name": "http_request_duration_seconds", "type": "histogram", "labels": ["method"],
     "buckets": [0.001, 0.1, 1, 10, 100, 10000]},
    {"name": "log_messages_total", "type": "counter", "labels": ["level", "msg"]},
    {"name": "flags_total", "type": "counter", "labels": ["flag"]}
  ],
  "rules": [
    {"name": "requests", "match": [{"field": "status", "ge": 100}],
     "emit": [{"metric": "http_requests_total"},
              {"metric": "http_request_duration_seconds", "value": "duration", "parse": "duration",
               "labels": {"method": "${method:-none}"}}]},
    {"name": "cached", "match": [{"field": "cached", "equals": true}],
     "emit": [{"metric": "flags_total", "labels": {"flag": "cached"}}]},
    {"name": "empty-user", "match": [{"field": "user", "equals": ""}],
     "emit": [{"metric": "flags_total", "labels": {"flag": "empty_user"}}]},
    {"name": "levels", "emit": [{"metric": "log_messages_total",
     "labels": {"level": "${level:-none}", "msg": "${msg:-}"}}]}
  ]
}"#;

#[test]
fn logfmt_lines_with_the_json_rules() {
    let out = run(
        LOGFMT,
        &[
            r#"level=info msg="HTTP request" method=GET path=/api status=200 duration=1.2s"#,
            r#"level=info msg="HTTP request" method=GET path=/api status=200 duration=850ms"#,
            r#"level=info msg="HTTP request" method=POST path="/api/v1/a b" status=201 duration=1m2.5s"#,
            r#"level=warn msg="said \"slow\"" method=POST path=/x status=504 duration=1h2m"#,
            "level=info method=GET path=/u status=200 duration=150µs cached",
            "level=info method=GET path=/u status=200 duration=150us user=",
            "level=info method=GET path=/n status=200 duration=3ns",
            r#"level=debug msg="no status""#,
            "",
            r#"level=error msg="unterminated"#,
            "plain text, not logfmt",
            r#"level=info msg=bad"quote"#,
            r#"level=info msg="bad \q escape""#,
            "=nokey level=info",
        ],
    );
    // The last five lines are malformed.
    assert_eq!(out.rejected(), 5);
    assert_eq!(added(&out, 0, &["GET", "/api", "200"]), 2.0);
    assert_eq!(added(&out, 0, &["POST", "/api/v1/a b", "201"]), 1.0);
    assert_eq!(added(&out, 0, &["POST", "/x", "504"]), 1.0);
    assert_eq!(added(&out, 0, &["GET", "/u", "200"]), 2.0);
    assert_eq!(
        observed(&out, 1, &["GET"]),
        vec![1.2, 0.85, 150e-6, 150e-6, 3e-9]
    );
    assert_eq!(observed(&out, 1, &["POST"]), vec![62.5, 3720.0]);
    assert_eq!(added(&out, 2, &["warn", "said \"slow\""]), 1.0);
    assert_eq!(added(&out, 2, &["info", "HTTP request"]), 3.0);
    assert_eq!(added(&out, 2, &["info", ""]), 3.0);
    assert_eq!(added(&out, 2, &["debug", "no status"]), 1.0);
    // A bare key is `true`; `key=` is present and empty.
    assert_eq!(added(&out, 3, &["cached"]), 1.0);
    assert_eq!(added(&out, 3, &["empty_user"]), 1.0);
}

#[test]
fn logfmt_format_errors() {
    let e = init_err(r#"{"format": "xml", "rules": [{"emit": []}]}"#);
    assert!(e.starts_with("format: \"xml\" is not a format"), "{e}");
    // A JSON line is not logfmt.
    let out = run(LOGFMT, &[r#"{"level":"info","status":200}"#]);
    assert_eq!(out.rejected(), 1);
}
