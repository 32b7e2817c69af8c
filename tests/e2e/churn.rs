//! Per-file self-metrics under churn of file names (issue 13, fault 6):
//! 1,000 dated log files created, read and rotated away (deleted, or
//! moved out of the glob); the `weir_file_*` series of a file the source
//! let go of stay a while (its last lines are counted), then go, so the
//! number of series stays bounded while the pipeline totals stay exact.
use crate::support::*;

/// Let-go files whose figures are kept at most (agent's stats.rs).
const KEPT: usize = 64;

fn dated(i: usize) -> String {
    format!(
        "app-{}-{:02}-{:02}.log",
        2024 + i / 360,
        (i / 30) % 12 + 1,
        i % 30 + 1
    )
}

fn file_series(s: &Scrape) -> usize {
    s.text
        .lines()
        .filter(|l| l.starts_with("weir_file_lines_total{"))
        .count()
}

#[test]
fn a_thousand_dated_files_rotated_away_leave_bounded_series() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("conf");
    let logs = tmp.path().join("logs");
    let archive = tmp.path().join("archive");
    for d in [&dir, &logs, &archive] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(
        dir.join("p.toml"),
        format!(
            "[pipeline.dated]\nplugin = \"{}\"\nsource = {{ type = \"file\", paths = [\"{}/app-*.log\"], start_at = \"beginning\" }}\n",
            test_plugin("misbehave").display(),
            logs.display()
        ),
    )
    .expect("write");
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let p = [("pipeline", "dated")];
    let rounds = 10;
    let per_round = 100;
    for r in 0..rounds {
        let names: Vec<String> = (0..per_round).map(|i| dated(r * per_round + i)).collect();
        for n in &names {
            std::fs::write(logs.join(n), "line one\nline two, no newline").expect("write");
        }
        agent.wait_for(30, "the round's first lines", |s| {
            names.iter().all(|n| {
                let path = logs.join(n).display().to_string();
                s.val(
                    "weir_file_lines_total",
                    &[("pipeline", "dated"), ("path", &path)],
                ) >= 1.0
            })
        });
        // Rotated away: half deleted, half moved out of the glob.
        for (i, n) in names.iter().enumerate() {
            if i % 2 == 0 {
                std::fs::remove_file(logs.join(n)).expect("rm");
            } else {
                std::fs::rename(logs.join(n), archive.join(n)).expect("mv");
            }
        }
    }
    // Each file's last line (no newline) is counted when it is let go,
    // and the series go down to the let-go files kept.
    let total = (rounds * per_round * 2) as f64;
    let s = agent.wait_for(60, "every file let go, its series bounded", |s| {
        s.val("weir_source_lines_total", &p) == total && file_series(s) <= KEPT
    });
    assert_eq!(s.val("test_lines_total", &[]), total);
    // The most recent let-go files are still there, with their last line.
    let last = logs.join(dated(rounds * per_round - 1));
    assert_eq!(
        s.val(
            "weir_file_lines_total",
            &[("pipeline", "dated"), ("path", &last.display().to_string())]
        ),
        2.0,
        "{}",
        s.text
    );
}
