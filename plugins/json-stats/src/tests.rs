use super::*;
use weir_sdk::__private::log_world::weir::plugin::types::Change;

const STATS: &str = r#"{"uptime_seconds":123,"memory_alloc_mb":12.5,"num_goroutines":40,"database":{"acquired_conns":3,"idle_conns":7,"max_conns":20},"realtime":{"connections":5}}"#;

const STATS_CONFIG: &str = r#"{"metrics": [
  {"name": "app_uptime_seconds", "unit": "seconds", "help": "Time since start.", "path": "uptime_seconds"},
  {"name": "app_memory_alloc_bytes", "unit": "bytes", "path": "memory_alloc_mb", "scale": 1048576},
  {"name": "app_goroutines", "path": "$.num_goroutines"},
  {"name": "app_db_connections", "help": "Pool connections by state.",
   "path": "database.acquired_conns", "labels": {"state": "acquired"}},
  {"name": "app_db_connections", "path": "database.idle_conns", "labels": {"state": "idle"}},
  {"name": "app_db_connections_max", "path": "database.max_conns"},
  {"name": "app_db_pool", "path": "database[?* =~ \"_conns$\" && * != \"max_conns\"]",
   "labels": {"state": "${*}"}},
  {"name": "app_realtime_connections", "path": "realtime.connections"},
  {"name": "app_missing", "path": "storage.total_files"}
]}"#;

const BACKENDS: &str = r#"{"cluster":"eu-1","backends":{
  "db1":{"state":"UP","latency_ms":3,"requests":100,"pools":[{"name":"read","active":2},{"name":"write","active":1}]},
  "db2":{"state":"DOWN","latency_ms":null,"requests":"7","pools":[]},
  "db3":{"state":"MAINTENANCE","latency_ms":"n/a","requests":-1,"pools":[{"active":4}]}}}"#;

const BACKENDS_CONFIG: &str = r#"{"metrics": [
  {"name": "backend_up", "path": "backends.*.state", "value_map": {"UP": 1, "DOWN": 0},
   "labels": {"backend": "${*}", "cluster": "${$.cluster}"}},
  {"name": "backend_latency_seconds", "unit": "seconds", "path": "backends.*",
   "value": "latency_ms", "scale": 0.001, "labels": {"backend": "${*}"}},
  {"name": "backend_requests_total", "type": "counter", "path": "backends.*",
   "value": "${requests}", "labels": {"backend": "${*}"}},
  {"name": "backend_pool_active", "path": "backends.*.pools[*]", "value": "active",
   "labels": {"backend": "${*1}", "pool": "${name:-default}", "state": "${^^.state}"}},
  {"name": "backend_healthy", "path": "backends[?state == 'UP'].pools", "value": 1,
   "labels": {"backend": "b_${*}$$"}}
]}"#;

fn plugin(cfg: &str) -> (JsonStats, Families) {
    let mut f = Families::default();
    let p = JsonStats::from_config(cfg, &mut f).expect("config");
    (p, f)
}

fn respond(p: &mut JsonStats, status: u16, body: &str) -> Output {
    let r = Response {
        url: "http://127.0.0.1:8080/stats".into(),
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
    };
    let mut out = Output::new();
    p.on_response(&r, &mut out).expect("on_response");
    out
}

/// The set value of a series, by family name.
fn get(f: &Families, out: &Output, name: &str, labels: &[&str]) -> Option<f64> {
    let id = (0..f.len() as u32).find(|i| f.name(FamilyId(*i)) == Some(name))?;
    let u = out
        .updates()
        .iter()
        .find(|u| u.family == id && u.labels == labels)?;
    match u.change {
        Change::Set(v) => Some(v),
        ref c => panic!("{name}: expected a set, got {c:?}"),
    }
}

#[test]
fn stats_page() {
    let (mut p, f) = plugin(STATS_CONFIG);
    // app_db_connections is declared once, with help from its first mapping.
    assert_eq!(f.len(), 8);
    let (_, again) = plugin(STATS_CONFIG);
    let helps: Vec<(String, String)> = again
        .into_wit()
        .into_iter()
        .map(|f| (f.name, f.help))
        .collect();
    assert!(helps.contains(&(
        "app_goroutines".into(),
        "Read from the JSON document at $.num_goroutines.".into()
    )));
    assert!(helps.contains(&("app_uptime_seconds".into(), "Time since start.".into())));
    let out = respond(&mut p, 200, STATS);
    assert_eq!(out.rejected(), 0);
    assert_eq!(get(&f, &out, "app_uptime_seconds", &[]), Some(123.0));
    assert_eq!(
        get(&f, &out, "app_memory_alloc_bytes", &[]),
        Some(12.5 * 1048576.0)
    );
    assert_eq!(get(&f, &out, "app_goroutines", &[]), Some(40.0));
    assert_eq!(
        get(&f, &out, "app_db_connections", &["acquired"]),
        Some(3.0)
    );
    assert_eq!(get(&f, &out, "app_db_connections", &["idle"]), Some(7.0));
    assert_eq!(get(&f, &out, "app_db_connections_max", &[]), Some(20.0));
    assert_eq!(get(&f, &out, "app_db_pool", &["acquired_conns"]), Some(3.0));
    assert_eq!(get(&f, &out, "app_db_pool", &["idle_conns"]), Some(7.0));
    assert_eq!(get(&f, &out, "app_realtime_connections", &[]), Some(5.0));
    // 9 series; nothing for the missing storage section.
    assert_eq!(out.len(), 9);
}

#[test]
fn map_of_backends() {
    let (mut p, f) = plugin(BACKENDS_CONFIG);
    assert_eq!(f.labels(FamilyId(0)).map(|l| l.len()), Some(2));
    assert_eq!(f.kind(FamilyId(2)), Some(Kind::Counter));
    let out = respond(&mut p, 200, BACKENDS);
    assert_eq!(get(&f, &out, "backend_up", &["db1", "eu-1"]), Some(1.0));
    assert_eq!(get(&f, &out, "backend_up", &["db2", "eu-1"]), Some(0.0));
    // MAINTENANCE is not in the value map; "n/a" is not a number; a negative counter.
    assert_eq!(get(&f, &out, "backend_up", &["db3", "eu-1"]), None);
    assert_eq!(out.rejected(), 3);
    assert_eq!(
        get(&f, &out, "backend_latency_seconds", &["db1"]),
        Some(0.003)
    );
    // null: no series, not rejected.
    assert_eq!(get(&f, &out, "backend_latency_seconds", &["db2"]), None);
    assert_eq!(
        get(&f, &out, "backend_requests_total", &["db1"]),
        Some(100.0)
    );
    assert_eq!(get(&f, &out, "backend_requests_total", &["db2"]), Some(7.0));
    assert_eq!(
        get(&f, &out, "backend_pool_active", &["db1", "read", "UP"]),
        Some(2.0)
    );
    assert_eq!(
        get(&f, &out, "backend_pool_active", &["db1", "write", "UP"]),
        Some(1.0)
    );
    assert_eq!(
        get(
            &f,
            &out,
            "backend_pool_active",
            &["db3", "default", "MAINTENANCE"]
        ),
        Some(4.0)
    );
    assert_eq!(get(&f, &out, "backend_healthy", &["b_db1$"]), Some(1.0));
    assert_eq!(out.len(), 9);
}

#[test]
fn array_filters_booleans_and_missing_labels() {
    let cfg = r#"{"metrics": [
      {"name": "server_conns", "path": "servers[?(@.state==\"up\")]", "value": "conns",
       "labels": {"server": "${name}", "zone": "${zone}"}},
      {"name": "server_enabled", "path": "servers[*].enabled", "labels": {"i": "${*}"}},
      {"name": "server_count", "path": "servers[?conns >= 1 && name !~ '^b']", "value": "${@.conns}",
       "labels": {"server": "${name}", "zone": "${zone:-}"}}
    ]}"#;
    let (mut p, f) = plugin(cfg);
    let out = respond(
        &mut p,
        204,
        r#"{"servers":[
          {"name":"a","state":"up","conns":3,"zone":"z1","enabled":true},
          {"name":"b","state":"up","conns":"5","zone":"z1","enabled":false},
          {"name":"c","state":"down","conns":1,"zone":"z2","enabled":true},
          {"name":"d","state":"up","conns":2,"enabled":"yes"}
        ]}"#,
    );
    assert_eq!(get(&f, &out, "server_conns", &["a", "z1"]), Some(3.0));
    assert_eq!(get(&f, &out, "server_conns", &["b", "z1"]), Some(5.0));
    // d has no zone and the template has no default: no series.
    assert_eq!(out.updates().iter().filter(|u| u.family == 0).count(), 2);
    assert_eq!(get(&f, &out, "server_enabled", &["0"]), Some(1.0));
    assert_eq!(get(&f, &out, "server_enabled", &["1"]), Some(0.0));
    assert_eq!(get(&f, &out, "server_enabled", &["3"]), None);
    assert_eq!(get(&f, &out, "server_count", &["c", "z2"]), Some(1.0));
    assert_eq!(get(&f, &out, "server_count", &["d", ""]), Some(2.0));
    assert_eq!(get(&f, &out, "server_count", &["a", "z1"]), Some(3.0));
    assert_eq!(out.rejected(), 1);
}

#[test]
fn a_body_that_is_not_json_is_an_error() {
    let (mut p, _) = plugin(STATS_CONFIG);
    for body in ["<html>oops</html>", "", r#"{"uptime_seconds":1"#] {
        let r = Response {
            url: "http://127.0.0.1:8080/stats".into(),
            status: 200,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        };
        let e = p
            .on_response(&r, &mut Output::new())
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("127.0.0.1:8080/stats (HTTP 200): the body is not JSON: "),
            "{body}: {e}"
        );
    }
    let with_bom = format!("\u{feff}{STATS}");
    let out = respond(&mut p, 200, &with_bom);
    assert_eq!(out.rejected(), 0);
    assert_eq!(out.len(), 9);
    // The source decides which statuses are handed over (accept_status).
    let out = respond(&mut p, 503, STATS);
    assert_eq!(out.len(), 9);
    // A document of another shape: no series, nothing rejected.
    let out = respond(&mut p, 200, "[1,2,3]");
    assert!(out.is_empty() && out.rejected() == 0);
}

/// HAProxy's `/stats;json`, trimmed: rows of typed field objects.
const HAPROXY: &str = r#"[
 [{"objType":"Frontend","proxyId":2,"id":0,"field":{"pos":0,"name":"pxname"},"value":{"type":"str","value":"web"}},
  {"objType":"Frontend","proxyId":2,"id":0,"field":{"pos":1,"name":"svname"},"value":{"type":"str","value":"FRONTEND"}},
  {"objType":"Frontend","proxyId":2,"id":0,"field":{"pos":8,"name":"bin"},"value":{"type":"u64","value":840}},
  {"objType":"Frontend","proxyId":2,"id":0,"field":{"pos":39,"name":"hrsp_2xx"},"value":{"type":"u64","value":5}},
  {"objType":"Frontend","proxyId":2,"id":0,"field":{"pos":41,"name":"hrsp_4xx"},"value":{"type":"u64","value":3}},
  {"objType":"Frontend","proxyId":2,"id":0,"field":{"pos":17,"name":"status"},"value":{"type":"str","value":"OPEN"}}],
 [{"objType":"Server","proxyId":3,"id":1,"field":{"pos":0,"name":"pxname"},"value":{"type":"str","value":"app"}},
  {"objType":"Server","proxyId":3,"id":1,"field":{"pos":1,"name":"svname"},"value":{"type":"str","value":"s1"}},
  {"objType":"Server","proxyId":3,"id":1,"field":{"pos":8,"name":"bin"},"value":{"type":"u64","value":700}}],
 [{"objType":"Backend","proxyId":3,"id":0,"field":{"pos":0,"name":"pxname"},"value":{"type":"str","value":"app"}},
  {"objType":"Backend","proxyId":3,"id":0,"field":{"pos":1,"name":"svname"},"value":{"type":"str","value":"BACKEND"}},
  {"objType":"Backend","proxyId":3,"id":0,"field":{"pos":8,"name":"bin"},"value":{"type":"u64","value":700}},
  {"objType":"Backend","proxyId":3,"id":0,"field":{"pos":39,"name":"hrsp_2xx"},"value":{"type":"u64","value":4}}]
]"#;

#[test]
fn filters_in_references_and_stripped_labels_map_haproxy_rows() {
    let cfg = r#"{"metrics": [
      {"name": "haproxy_frontend_bytes_in_total", "type": "counter",
       "path": "[*][?objType == 'Frontend' && field.name == 'bin']", "value": "value.value",
       "labels": {"proxy": "${^[?field.name == 'pxname'].value.value}"}},
      {"name": "haproxy_frontend_http_responses_total", "type": "counter",
       "path": "[*][?objType == 'Frontend' && field.name =~ '^hrsp_']", "value": "value.value",
       "labels": {"proxy": "${^[?field.name == 'pxname'].value.value}", "code": "${field.name#hrsp_}"}},
      {"name": "haproxy_server_bytes_in_total", "type": "counter",
       "path": "[*][?objType == 'Server' && field.name == 'bin']", "value": "value.value",
       "labels": {"proxy": "${^[?field.name == 'pxname'].value.value}",
                  "server": "${^[?field.name == \"svname\"].value.value}"}},
      {"name": "haproxy_up", "path": "[?[0].objType != 'Server']",
       "value": "[?field.name == 'status'].value.value", "value_map": {"OPEN": 1, "UP": 1},
       "labels": {"row": "${*}", "kind": "${[0].objType%end}", "missing": "${[?field.name == 'nope'].value:-none}"}}
    ]}"#;
    let (mut p, f) = plugin(cfg);
    let out = respond(&mut p, 200, HAPROXY);
    assert_eq!(
        get(&f, &out, "haproxy_frontend_bytes_in_total", &["web"]),
        Some(840.0)
    );
    let code = |c: &str| {
        get(
            &f,
            &out,
            "haproxy_frontend_http_responses_total",
            &[c, "web"],
        )
    };
    assert_eq!((code("2xx"), code("4xx")), (Some(5.0), Some(3.0)));
    assert_eq!(
        get(&f, &out, "haproxy_server_bytes_in_total", &["app", "s1"]),
        Some(700.0)
    );
    // The frontend row has a status; the backend row has none: no series.
    assert_eq!(
        get(&f, &out, "haproxy_up", &["Front", "none", "0"]),
        Some(1.0)
    );
    assert_eq!(out.len(), 5);
    assert_eq!(out.rejected(), 0);
}

#[test]
fn template_operators() {
    let cfg = r#"{"metrics": [
      {"name": "m", "path": "items[*]", "value": "n",
       "labels": {"a": "${name#x_}", "b": "${name%_y}", "c": "<${tag:-}>", "d": "${name#zz}"}}
    ]}"#;
    let (mut p, f) = plugin(cfg);
    let out = respond(
        &mut p,
        200,
        r#"{"items":[{"name":"x_1_y","n":1,"tag":"t"},{"name":"q","n":2}]}"#,
    );
    assert_eq!(
        get(&f, &out, "m", &["1_y", "x_1", "<t>", "x_1_y"]),
        Some(1.0)
    );
    assert_eq!(get(&f, &out, "m", &["q", "q", "<>", "q"]), Some(2.0));
}

#[test]
fn duplicate_label_sets_last_wins() {
    let cfg = r#"{"metrics": [
      {"name": "queue_depth", "path": "queues[*]", "value": "depth", "labels": {"queue": "${name}"}}
    ]}"#;
    let (mut p, f) = plugin(cfg);
    let r = Response {
        url: "http://127.0.0.1:8080/stats".into(),
        status: 200,
        headers: vec![],
        body:
            br#"{"queues":[{"name":"q","depth":1},{"name":"q","depth":9},{"name":"r","depth":2}]}"#
                .to_vec(),
    };
    // The export glue's Output knows the kinds: gauge sets merge.
    let mut out = Output::for_families(&f);
    p.on_response(&r, &mut out).expect("on_response");
    assert_eq!(out.len(), 2);
    assert_eq!(get(&f, &out, "queue_depth", &["q"]), Some(9.0));
}

#[test]
fn init_errors_name_the_mapping() {
    let err = |cfg: &str| {
        let mut f = Families::default();
        JsonStats::from_config(cfg, &mut f)
            .err()
            .unwrap_or_default()
    };
    let cases = [
        (
            r#"{"metrics":[{"name":"a","path":"x"},{"name":"b","path":"a..b"}]}"#,
            "metrics[1] \"b\": path:",
        ),
        (
            r#"{"metrics":[{"name":"a","type":"histogram","path":"x"}]}"#,
            "not histogram",
        ),
        (
            r#"{"metrics":[{"name":"a","type":"summary","path":"x"}]}"#,
            "metrics[0] \"a\": unknown type \"summary\"",
        ),
        (
            r#"{"metrics":[{"name":"a","path":"x"},{"name":"a","type":"counter","path":"y"}]}"#,
            "metrics[1] \"a\": type differs from metrics[0]",
        ),
        (
            r#"{"metrics":[{"name":"a","path":"x","labels":{"k":"1"}},{"name":"a","path":"y"}]}"#,
            "labels [] differ from metrics[0]",
        ),
        (
            r#"{"metrics":[{"name":"a","path":"x","help":"one"},{"name":"a","path":"y","help":"two"}]}"#,
            "help differs",
        ),
        (
            r#"{"metrics":[{"name":"a","path":"x.*","labels":{"k":"${^^^.y}"}}]}"#,
            "metrics[0] \"a\" label \"k\": \"^^^\" goes above the document",
        ),
        (
            r#"{"metrics":[{"name":"a","path":"x","labels":{"k":"${*}"}}]}"#,
            "label \"k\": \"*\" names the key",
        ),
        (
            r#"{"metrics":[{"name":"a","path":"x.*","labels":{"k":"${*2}"}}]}"#,
            "only 1 wildcard",
        ),
        (
            r#"{"metrics":[{"name":"a","path":"x","labels":{"k":"${y"}}]}"#,
            "unclosed",
        ),
        (
            r#"{"metrics":[{"name":"a","path":"x","value":"a.*"}]}"#,
            "metrics[0] \"a\": value:",
        ),
        (
            r#"{"metrics":[{"name":"a","path":"x","labels":{"k":"${y#p"}}]}"#,
            "unclosed",
        ),
        (
            r#"{"metrics":[{"name":"a","path":"x","labels":{"k":"${[?*2 == 'a'].v}"}}]}"#,
            "only 1 wildcard",
        ),
        (
            r#"{"metrics":[{"name":"a","path":"x[?y =~ '(']"}]}"#,
            "invalid regex",
        ),
        (
            r#"{"metrics":[{"name":"a","path":"x","bogus":1}]}"#,
            "unknown field `bogus`",
        ),
        (r#"{"metrics":[{"name":"a"}]}"#, "missing field `path`"),
        (r#"{"metrics":[]}"#, "no metrics"),
    ];
    for (cfg, want) in cases {
        let e = err(cfg);
        assert!(e.contains(want), "{cfg}\n -> {e}");
    }
}

#[test]
fn a_lone_surrogate_is_kept_as_the_replacement_character() {
    // Issue 13: serde_json refuses `\ud800`; the body must not be lost.
    let cfg = r#"{"metrics": [
      {"name": "reqs", "path": "backends.*.requests", "labels": {"backend": "${*}"}},
      {"name": "info", "path": "version", "value": 1, "labels": {"version": "${@}"}}
    ]}"#;
    let (mut p, f) = plugin(cfg);
    let out = respond(
        &mut p,
        200,
        r#"{"version":"1.2\ud800-beta","backends":{"web\udfff1":{"requests":5},"web2":{"requests":7}}}"#,
    );
    assert_eq!(get(&f, &out, "reqs", &["web\u{fffd}1"]), Some(5.0));
    assert_eq!(get(&f, &out, "reqs", &["web2"]), Some(7.0));
    assert_eq!(get(&f, &out, "info", &["1.2\u{fffd}-beta"]), Some(1.0));
}

#[test]
fn scale_is_exact_at_decimal_values() {
    // Issue 13: 350 * 0.001 is 0.35000000000000003 in binary.
    let cfg = r#"{"metrics": [{"name": "lat_seconds", "path": "ms", "scale": 0.001}]}"#;
    let (mut p, f) = plugin(cfg);
    for (ms, want) in [
        ("350", 0.35),
        ("700", 0.7),
        ("950", 0.95),
        ("0.35", 0.00035),
    ] {
        let out = respond(&mut p, 200, &format!(r#"{{"ms":{ms}}}"#));
        assert_eq!(get(&f, &out, "lat_seconds", &[]), Some(want), "{ms}");
    }
}
