//! Container logs with the real binary: CRI and docker json-file logs laid
//! out as the kubelet does (`pods/NAMESPACE_POD_UID/CONTAINER/0.log`),
//! long lines split into partial parts, lines of the other stream between
//! the parts, an invalid line, a restart (SIGTERM) between the parts of a
//! line, and the kubelet's rotation (`0.log` renamed to
//! `0.log.TIMESTAMP`, a new `0.log`). Every request is counted once, whole,
//! under the namespace, pod and container its path names.
use crate::support::*;
use std::path::Path;

fn cri(stream: &str, tag: &str, text: &str) -> String {
    format!("2026-12-03T10:00:00.123456789Z {stream} {tag} {text}\n")
}

fn docker(stream: &str, log: &str) -> String {
    format!(
        "{{\"log\":{},\"stream\":\"{stream}\",\"time\":\"2026-12-03T10:00:00.123456789Z\"}}\n",
        serde_json_string(log)
    )
}

/// A JSON string literal (the tests crate has no JSON encoder).
fn serde_json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn pipeline(name: &str, pods: &Path, format: &str, labels: &str) -> String {
    format!(
        r#"
[pipeline.{name}]
plugin = "regex-log"
source = {{ type = "file", paths = ["{}/*/*/*.log"], start_at = "beginning", format = "{format}"{labels} }}
[pipeline.{name}.config]
metrics = [
  {{ name = "{name}_requests_total", type = "counter", help = "Requests by status.", labels = ["status"] }},
  {{ name = "{name}_errors_total", type = "counter", help = "stderr lines." }},
]
[[pipeline.{name}.config.rules]]
regex = '^(GET|POST) \S+ (?P<status>\d{{3}})$'
emit = [{{ metric = "{name}_requests_total" }}]
[[pipeline.{name}.config.rules]]
regex = '^error: '
emit = [{{ metric = "{name}_errors_total" }}]
"#,
        pods.display()
    )
}

#[test]
fn cri_and_docker_partial_lines_restart_rotation_and_pod_labels() {
    let d = tempfile::tempdir().expect("tempdir");
    let (conf, state) = (d.path().join("conf"), d.path().join("state"));
    let (cri_pods, docker_pods) = (d.path().join("cri"), d.path().join("docker"));
    let web = cri_pods.join("shop_web-7d9f_0f3c1a2b-0000-1111-2222-333344445555/nginx");
    let api = docker_pods.join("billing_api-5c4b_9a8b7c6d-0000-1111-2222-333344445555/app");
    for p in [&conf, &web, &api] {
        std::fs::create_dir_all(p).expect("mkdir");
    }
    std::fs::write(
        conf.join("p.toml"),
        pipeline("cri", &cri_pods, "cri", "")
            + &pipeline(
                "docker",
                &docker_pods,
                "docker",
                ", labels = [\"namespace\", \"pod\", \"container\", \"pod_uid\"]",
            ),
    )
    .expect("config");
    let web_log = web.join("0.log");
    let api_log = api.join("0.log");
    let long = format!("/{}", "x".repeat(40_000));
    // CRI: whole lines, a long line in three parts with a stderr line
    // between them, an invalid line.
    append(
        &web_log,
        &[
            cri("stdout", "F", "GET /a 200"),
            cri("stdout", "P", "GET /lo"),
            cri("stderr", "F", "error: upstream slow"),
            cri("stdout", "P", "ng/path"),
            cri("stdout", "F", " 200"),
            "not a cri line\n".to_string(),
            cri("stdout", "F", "POST /b 500"),
        ]
        .concat(),
    );
    // Docker: a long line in parts (docker splits at 16 KiB), a stderr line.
    let (a, b) = long.split_at(16 * 1024);
    append(
        &api_log,
        &[
            docker("stdout", "GET /a 200\n"),
            docker("stdout", &format!("GET {a}")),
            docker("stdout", &format!("{b} 201\n")),
            docker("stderr", "error: disk\n"),
        ]
        .concat(),
    );
    let web_labels = [
        ("namespace", "shop"),
        ("pod", "web-7d9f"),
        ("container", "nginx"),
    ];
    let api_labels = [
        ("namespace", "billing"),
        ("pod", "api-5c4b"),
        ("container", "app"),
        ("pod_uid", "9a8b7c6d-0000-1111-2222-333344445555"),
    ];
    let with = |base: &[(&'static str, &'static str)], extra: &[(&'static str, &'static str)]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        v
    };
    let mut a1 = Agent::start(&conf, &state);
    let s = a1.wait_for(20, "first lines", |s| {
        s.get(
            "cri_requests_total",
            &with(&web_labels, &[("status", "500")]),
        ) == Some(1.0)
            && s.get("docker_errors_total", &api_labels) == Some(1.0)
    });
    assert_eq!(
        s.val(
            "cri_requests_total",
            &with(&web_labels, &[("status", "200")])
        ),
        2.0
    );
    assert_eq!(s.val("cri_errors_total", &web_labels), 1.0);
    assert_eq!(
        s.val("weir_source_lines_invalid_total", &[("pipeline", "cri")]),
        1.0
    );
    assert_eq!(
        s.val(
            "docker_requests_total",
            &with(&api_labels, &[("status", "200")])
        ),
        1.0
    );
    // The long docker line is cut at max_line_bytes (64 KiB would keep it;
    // it is 40 KiB): whole, so it matches.
    assert_eq!(
        s.val(
            "docker_requests_total",
            &with(&api_labels, &[("status", "201")])
        ),
        1.0
    );

    // The first part of a line, then a stop: the part is read again at the
    // next start, with the rest.
    // (In one write with a whole line, so that the batch of that line is
    // acknowledged while the part waits.)
    append(
        &web_log,
        &[
            cri("stdout", "F", "GET /before 302"),
            cri("stdout", "P", "GET /half"),
        ]
        .concat(),
    );
    a1.wait_for(10, "the part read", |s| {
        s.val("weir_source_lines_total", &[("pipeline", "cri")]) == 9.0
            && s.get(
                "cri_requests_total",
                &with(&web_labels, &[("status", "302")]),
            ) == Some(1.0)
    });
    let before = a1.scrape();
    assert_eq!(a1.stop().code(), Some(0));
    let mut a2 = Agent::start(&conf, &state);
    append(&web_log, &cri("stdout", "F", "/done 404"));
    // Kubelet rotation: the file renamed with a timestamp, a new 0.log.
    a2.wait_for(10, "the rest of the line", |s| {
        s.get(
            "cri_requests_total",
            &with(&web_labels, &[("status", "404")]),
        ) == Some(1.0)
    });
    std::fs::rename(&web_log, web.join("0.log.20261203-101010")).expect("rotate");
    append(
        &web_log,
        &[
            cri("stdout", "F", "GET /new 200"),
            cri("stdout", "P", "GET /"),
            cri("stdout", "F", "p 201"),
        ]
        .concat(),
    );
    std::fs::rename(&api_log, api.join("0.log.20261203-101010")).expect("rotate");
    append(&api_log, &docker("stdout", "POST /c 200\n"));
    let s = a2.wait_for(20, "after the rotation", |s| {
        s.get(
            "cri_requests_total",
            &with(&web_labels, &[("status", "201")]),
        ) == Some(1.0)
            && s.get(
                "docker_requests_total",
                &with(&api_labels, &[("status", "200")]),
            ) == Some(1.0)
    });
    // Run 2 counted only what came after the stop: the whole line once,
    // nothing of run 1 again.
    assert_eq!(
        s.val(
            "cri_requests_total",
            &with(&web_labels, &[("status", "200")])
        ),
        1.0
    );
    assert_eq!(
        s.get(
            "cri_requests_total",
            &with(&web_labels, &[("status", "500")])
        ),
        None
    );
    // (at 0: a counter without labels starts at 0 for each pod's log)
    assert_eq!(s.get("cri_errors_total", &web_labels), Some(0.0));
    assert_eq!(
        before.get(
            "cri_requests_total",
            &with(&web_labels, &[("status", "404")])
        ),
        None
    );
    // Run 2 read the first part again: the part, the rest, three new lines.
    assert_eq!(
        s.val("weir_source_lines_total", &[("pipeline", "cri")]),
        5.0
    );
    assert!(
        s.val(
            "weir_file_rotations_total",
            &[
                ("pipeline", "cri"),
                ("path", &web_log.display().to_string())
            ]
        ) >= 1.0
    );
    assert_eq!(a2.stop().code(), Some(0));
}
