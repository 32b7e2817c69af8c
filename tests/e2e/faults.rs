//! Plugins that trap, loop forever or allocate without bound: each is
//! contained, counted under its reason, and recovers, while a healthy
//! pipeline beside them keeps counting.
use crate::support::*;
use std::path::Path;

fn pipeline(name: &str, plugin: &Path, extra: &str) -> String {
    format!(
        "[pipeline.{name}]\nplugin = \"{}\"\nsource = {{ type = \"file\", paths = [\"{name}.log\"], start_at = \"beginning\" }}\n{extra}\n",
        plugin.display()
    )
}

fn lines(n: usize, tag: &str) -> String {
    (0..n).map(|i| format!("{tag} line {i}\n")).collect()
}

#[test]
fn faulty_plugins_are_contained_counted_and_recover() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let p = test_plugin("misbehave");
    let mut cfg = String::new();
    cfg += &pipeline("healthy", &p, "");
    cfg += &pipeline("trap", &p, "");
    cfg += &pipeline("spin", &p, "call_timeout = \"200ms\"");
    cfg += &pipeline("hog", &p, "memory_limit = \"16MiB\"");
    std::fs::write(dir.join("faults.toml"), cfg).expect("write");
    for n in ["healthy", "trap", "spin", "hog"] {
        std::fs::write(dir.join(format!("{n}.log")), "").expect("touch");
    }
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let counted = |s: &Scrape, n: &str| s.val("test_lines_total", &[]) + 0.0 * n.len() as f64;
    let _ = counted;

    // Each faulty pipeline: some lines, the trigger alone, more lines.
    let cases = [
        ("trap", "TRAP", "trap"),
        ("spin", "LOOP", "timeout"),
        ("hog", "ALLOC", "memory_limit"),
    ];
    append(&dir.join("healthy.log"), &lines(100, "ok"));
    for (name, _, _) in cases {
        append(&dir.join(format!("{name}.log")), &lines(10, "before"));
    }
    agent.wait_for(20, "first lines", |s| {
        s.val("weir_source_lines_total", &[("pipeline", "healthy")]) == 100.0
            && cases
                .iter()
                .all(|(n, _, _)| s.val("weir_source_lines_total", &[("pipeline", n)]) == 10.0)
    });
    for (name, trigger, _) in cases {
        append(&dir.join(format!("{name}.log")), &format!("{trigger}\n"));
    }
    let s = agent.wait_for(30, "each fault counted under its reason", |s| {
        cases.iter().all(|(n, _, reason)| {
            s.val(
                "weir_plugin_errors_total",
                &[("pipeline", n), ("reason", reason)],
            ) >= 1.0
        })
    });
    // Only the expected reason, once each.
    for (name, _, reason) in cases {
        for r in ["trap", "timeout", "memory_limit"] {
            let want = if r == reason { 1.0 } else { 0.0 };
            assert_eq!(
                s.val(
                    "weir_plugin_errors_total",
                    &[("pipeline", name), ("reason", r)]
                ),
                want,
                "{name} {r}"
            );
        }
        assert_eq!(
            s.val("weir_plugin_restarts_total", &[("pipeline", name)]),
            1.0,
            "{name}"
        );
        assert_eq!(
            s.val("weir_pipeline_inputs_dropped_total", &[("pipeline", name)]),
            1.0,
            "{name}"
        );
    }
    // The healthy pipeline kept counting meanwhile, and keeps counting.
    append(&dir.join("healthy.log"), &lines(50, "ok"));
    for (name, _, _) in cases {
        append(&dir.join(format!("{name}.log")), &lines(7, "after"));
    }
    // Every pipeline shares the family test_lines_total, with no labels:
    // read each one's own progress from its self-metrics, and the total
    // from the family. 150 healthy + 3 * (10 + 7) faulty lines counted.
    let s = agent.wait_for(30, "recovery", |s| {
        cases.iter().all(|(n, _, _)| {
            s.val("weir_source_lines_total", &[("pipeline", n)]) == 18.0
                && s.val(
                    "weir_pipeline_up",
                    &[("pipeline", n), ("plugin", &p.display().to_string())],
                ) == 1.0
        }) && s.val("weir_plugin_calls_total", &[("pipeline", "healthy")]) >= 2.0
    });
    assert_eq!(
        s.val(
            "weir_pipeline_up",
            &[
                ("pipeline", "healthy"),
                ("plugin", &p.display().to_string())
            ]
        ),
        1.0
    );
    assert!(s.val("weir_plugin_memory_bytes", &[("pipeline", "hog")]) < (16 << 20) as f64);
    // The log names the pipeline and the plugin for each fault.
    let log = agent.log_text();
    for (name, _, _) in cases {
        assert!(
            log.contains(&format!("pipeline \"{name}\", plugin {}", p.display())),
            "log lacks {name}:\n{log}"
        );
    }
    assert!(
        log.contains("exceeded its deadline")
            && log.contains("memory limit")
            && log.contains("trapped"),
        "{log}"
    );
}
