//! Hot reload while a scraper polls without pause: no failed scrape, no
//! counter of an unchanged pipeline or family going down, and the final
//! state matching the directory.
use crate::support::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Appends numbered lines to a file at a steady pace until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<u64>>,
}

impl Writer {
    fn start(path: PathBuf) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                let chunk: String = (0..20).map(|i| format!("line {}\n", n + i)).collect();
                append(&path, &chunk);
                n += 20;
                std::thread::sleep(Duration::from_millis(10));
            }
            n
        });
        Writer {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .map(|h| h.join().expect("writer"))
            .unwrap_or(0)
    }
}

/// A pipeline counting every line of `NAME.log` into `NAME_lines_total`.
fn counting_pipeline(name: &str, plugin: &str, extra: &str) -> String {
    format!(
        r#"[pipeline.{name}]
plugin = "{plugin}"
source = {{ type = "file", paths = ["{name}.log"], start_at = "beginning" }}
{extra}
[[pipeline.{name}.config.metrics]]
name = "{name}_lines_total"
type = "counter"
help = "Lines."
[[pipeline.{name}.config.rules]]
regex = '^line'
[[pipeline.{name}.config.rules.emit]]
metric = "{name}_lines_total"
"#
    )
}

fn write_atomic(path: &Path, text: &[u8]) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).expect("write tmp");
    std::fs::rename(&tmp, path).expect("rename");
}

fn conf_dir(tmp: &Path) -> PathBuf {
    let d = tmp.join("conf");
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

#[test]
fn fifty_rapid_edits_lose_and_double_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = conf_dir(tmp.path());
    std::fs::write(
        dir.join("stable.toml"),
        counting_pipeline("stable", "regex-log", ""),
    )
    .expect("w");
    std::fs::write(
        dir.join("edited.toml"),
        counting_pipeline("edited", "regex-log", ""),
    )
    .expect("w");
    for n in ["stable", "edited"] {
        std::fs::write(dir.join(format!("{n}.log")), "").expect("touch");
    }
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let scraper = Scraper::start(
        agent.url("/metrics"),
        prefixes(&["stable_lines_total", "edited_lines_total"]),
    );
    let w1 = Writer::start(dir.join("stable.log"));
    let w2 = Writer::start(dir.join("edited.log"));
    // 50 edits that change the pipeline but not its families: it is
    // rebuilt each time, and must keep its counter and its file offset.
    for i in 0..50 {
        let extra = format!("batch_lines = {}", 100 + i);
        write_atomic(
            &dir.join("edited.toml"),
            counting_pipeline("edited", "regex-log", &extra).as_bytes(),
        );
        std::thread::sleep(Duration::from_millis(if i % 10 == 0 { 300 } else { 15 }));
    }
    std::thread::sleep(Duration::from_millis(1200));
    let (n1, n2) = (w1.finish() as f64, w2.finish() as f64);
    let s = agent.wait_for(20, "every line counted once", |s| {
        s.val("stable_lines_total", &[]) == n1 && s.val("edited_lines_total", &[]) == n2
    });
    scraper.finish();
    assert!(s.val("weir_config_reloads_total", &[("result", "success")]) >= 3.0);
    assert_eq!(
        s.val("weir_config_reloads_total", &[("result", "failure")]),
        0.0
    );
    // Unchanged pipeline was never rebuilt.
    let log = agent.log_text();
    assert_eq!(
        log.matches("pipeline started pipeline=stable").count(),
        1,
        "{log}"
    );
    assert!(
        log.matches("pipeline started pipeline=edited").count() >= 3,
        "{log}"
    );
}

#[test]
fn replaced_plugin_keeps_counters_and_half_written_never_loads() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = conf_dir(tmp.path());
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("mkdir");
    let wasm = plugins.join("custom.wasm");
    let original = std::fs::read(test_plugin("regex_log")).expect("read plugin");
    std::fs::write(&wasm, &original).expect("copy plugin");
    std::fs::write(
        dir.join("custom.toml"),
        counting_pipeline("custom", &wasm.display().to_string(), ""),
    )
    .expect("w");
    std::fs::write(
        dir.join("other.toml"),
        counting_pipeline("other", "regex-log", ""),
    )
    .expect("w");
    for n in ["custom", "other"] {
        std::fs::write(dir.join(format!("{n}.log")), "").expect("touch");
    }
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let scraper = Scraper::start(
        agent.url("/metrics"),
        prefixes(&["custom_lines_total", "other_lines_total"]),
    );
    let w1 = Writer::start(dir.join("custom.log"));
    let w2 = Writer::start(dir.join("other.log"));
    std::thread::sleep(Duration::from_millis(300));

    // A new build: same code, one more custom section, so a new hash.
    let mut rebuilt = original.clone();
    let name = b"weir-test-build";
    let payload = b"2";
    let size = 1 + name.len() + payload.len();
    rebuilt.extend_from_slice(&[0, size as u8, name.len() as u8]);
    rebuilt.extend_from_slice(name);
    rebuilt.extend_from_slice(payload);

    // First, written in place and slowly: the half-written file must not load.
    {
        let mut f = std::fs::File::create(&wasm).expect("truncate plugin");
        std::io::Write::write_all(&mut f, &rebuilt[..rebuilt.len() / 2]).expect("half");
        std::io::Write::flush(&mut f).expect("flush");
        agent.wait_for(10, "the half-written plugin refused", |s| {
            s.val("weir_config_last_reload_successful", &[]) == 0.0
        });
        std::io::Write::write_all(&mut f, &rebuilt[rebuilt.len() / 2..]).expect("rest");
    }
    agent.wait_for(10, "the complete plugin loaded", |s| {
        s.val("weir_config_last_reload_successful", &[]) == 1.0
    });
    // Then the usual way: an atomic rename of the original build back.
    let before = agent
        .scrape()
        .val("weir_config_reloads_total", &[("result", "success")]);
    write_atomic(&wasm, &original);
    agent.wait_for(20, "the renamed plugin loaded", |s| {
        s.val("weir_config_reloads_total", &[("result", "success")]) > before
    });
    let (n1, n2) = (w1.finish() as f64, w2.finish() as f64);
    let s = agent.wait_for(20, "every line counted once", |s| {
        s.val("custom_lines_total", &[]) == n1 && s.val("other_lines_total", &[]) == n2
    });
    scraper.finish();
    assert!(s.val("weir_config_reloads_total", &[("result", "failure")]) >= 1.0);
    let log = agent.log_text();
    // Three builds ran: original, rebuilt, original again.
    assert_eq!(
        log.matches("pipeline started pipeline=custom").count(),
        3,
        "{log}"
    );
    assert_eq!(
        log.matches("pipeline started pipeline=other").count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("custom.wasm"),
        "the failure names the plugin: {log}"
    );
}

#[test]
fn invalid_file_keeps_old_pipelines_until_fixed_and_removal_drops_series() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = conf_dir(tmp.path());
    std::fs::write(
        dir.join("stable.toml"),
        counting_pipeline("stable", "regex-log", ""),
    )
    .expect("w");
    std::fs::write(
        dir.join("gone.toml"),
        counting_pipeline("gone", "regex-log", ""),
    )
    .expect("w");
    for n in ["stable", "gone", "late"] {
        std::fs::write(dir.join(format!("{n}.log")), "line 0\n").expect("touch");
    }
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let scraper = Scraper::start(agent.url("/metrics"), prefixes(&["stable_lines_total"]));
    let w = Writer::start(dir.join("stable.log"));
    agent.wait_for(10, "gone counted", |s| {
        s.val("gone_lines_total", &[]) == 1.0
    });

    // An invalid file appears: nothing changes but the reload metrics.
    std::fs::write(dir.join("late.toml"), "[pipeline.late]\nplugin = \"regex-log\"\nsource = { type = \"file\", paths = [\"late.log\"] \n").expect("w");
    let s = agent.wait_for(10, "failed reload reported", |s| {
        s.val("weir_config_last_reload_successful", &[]) == 0.0
    });
    assert!(s.val("weir_config_reloads_total", &[("result", "failure")]) >= 1.0);
    assert_eq!(s.val("gone_lines_total", &[]), 1.0);
    assert!(
        agent.log_text().contains("late.toml:3"),
        "{}",
        agent.log_text()
    );
    // Fixed: it loads.
    write_atomic(
        &dir.join("late.toml"),
        counting_pipeline("late", "regex-log", "").as_bytes(),
    );
    agent.wait_for(10, "fixed file loaded", |s| {
        s.val("weir_config_last_reload_successful", &[]) == 1.0
            && s.val("late_lines_total", &[]) == 1.0
    });
    // Removed: its series and self-metrics leave /metrics.
    std::fs::remove_file(dir.join("gone.toml")).expect("rm");
    let s = agent.wait_for(10, "removed pipeline gone", |s| {
        s.get("gone_lines_total", &[]).is_none()
    });
    assert!(!s.text.contains("pipeline=\"gone\""), "{}", s.text);
    let n = w.finish() as f64 + 1.0;
    agent.wait_for(10, "stable counted everything", |s| {
        s.val("stable_lines_total", &[]) == n
    });
    scraper.finish();
}

#[test]
fn configmap_symlink_swap_applies_the_new_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = conf_dir(tmp.path());
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).expect("mkdir");
    let pipe = |name: &str, extra: &str| {
        counting_pipeline(name, "regex-log", extra).replace(
            &format!("paths = [\"{name}.log\"]"),
            &format!(
                "paths = [\"{}\"]",
                logs.join(format!("{name}.log")).display()
            ),
        )
    };
    for n in ["keep", "change", "drop", "add"] {
        std::fs::write(logs.join(format!("{n}.log")), "line 0\n").expect("touch");
    }
    // Kubernetes' layout: files are symlinks through ..data to a
    // timestamped folder; an update swaps ..data atomically.
    let v1 = dir.join("..2026_11_22_01");
    std::fs::create_dir_all(&v1).expect("mkdir");
    std::fs::write(v1.join("keep.toml"), pipe("keep", "")).expect("w");
    std::fs::write(v1.join("change.toml"), pipe("change", "")).expect("w");
    std::fs::write(v1.join("drop.toml"), pipe("drop", "")).expect("w");
    std::os::unix::fs::symlink("..2026_11_22_01", dir.join("..data")).expect("symlink");
    for f in ["keep.toml", "change.toml", "drop.toml", "add.toml"] {
        std::os::unix::fs::symlink(format!("..data/{f}"), dir.join(f)).expect("symlink");
    }
    let agent = Agent::start(&dir, &tmp.path().join("state"));
    let scraper = Scraper::start(
        agent.url("/metrics"),
        prefixes(&["keep_lines_total", "change_lines_total"]),
    );
    let w = Writer::start(logs.join("keep.log"));
    agent.wait_for(10, "v1 running", |s| {
        s.val("drop_lines_total", &[]) == 1.0 && s.val("change_lines_total", &[]) == 1.0
    });

    let v2 = dir.join("..2026_11_22_02");
    std::fs::create_dir_all(&v2).expect("mkdir");
    std::fs::write(v2.join("keep.toml"), pipe("keep", "")).expect("w");
    std::fs::write(v2.join("change.toml"), pipe("change", "batch_lines = 7")).expect("w");
    std::fs::write(v2.join("add.toml"), pipe("add", "")).expect("w");
    std::os::unix::fs::symlink("..2026_11_22_02", dir.join("..data_tmp")).expect("symlink");
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap");
    std::fs::remove_dir_all(&v1).expect("rm old");

    let n = w.finish() as f64 + 1.0;
    let s = agent.wait_for(10, "v2 applied", |s| {
        s.val("weir_config_reloads_total", &[("result", "success")]) >= 2.0
            && s.val("add_lines_total", &[]) == 1.0
            && s.get("drop_lines_total", &[]).is_none()
            && s.val("keep_lines_total", &[]) == n
    });
    assert_eq!(s.val("change_lines_total", &[]), 1.0);
    scraper.finish();
    let log = agent.log_text();
    assert_eq!(
        log.matches("pipeline started pipeline=keep").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("pipeline started pipeline=change").count(),
        2,
        "{log}"
    );
}

/// Where a pipeline is written is not one of its settings: a comment or a
/// `[server]` table added above it leaves it running untouched (its own
/// figures too). With `--state-dir`, adding `[agent] state_dir` changes
/// nothing and is not refused.
#[test]
fn moving_a_pipeline_down_a_file_or_setting_an_overridden_key_changes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = conf_dir(tmp.path());
    std::fs::write(dir.join("app.log"), "line 1\nline 2\nline 3\n").expect("log");
    let body = counting_pipeline("app", "regex-log", "");
    let file = dir.join("app.toml");
    std::fs::write(&file, &body).expect("write");
    let mut a = Agent::start(&dir, &tmp.path().join("state"));
    let read = |s: &Scrape| s.val("weir_source_lines_total", &[("pipeline", "app")]);
    a.wait_for(20, "three lines", |s| read(s) == 3.0);
    let reloads = |s: &Scrape| s.val("weir_config_reloads_total", &[("result", "success")]);
    let before = reloads(&a.scrape());
    write_atomic(
        &file,
        format!("# a comment, then a blank line\n\n[server]\nmax_connections = 64\n\n{body}")
            .as_bytes(),
    );
    let s = a.wait_for(20, "the reload", |s| reloads(s) > before);
    assert_eq!(read(&s), 3.0, "the pipeline's own figures are kept");
    let log = a.log_text();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("configuration loaded") || l.contains("reloaded"))
        .unwrap_or_default()
        .to_string();
    assert!(!line.contains("changed=[\"app\"]"), "{line}\n{log}");

    // --state-dir was given (the test harness passes it): the key cannot
    // change anything, so it does not fail the reload.
    let before = reloads(&a.scrape());
    write_atomic(
        &file,
        format!("[agent]\nstate_dir = \"elsewhere\"\n\n{body}").as_bytes(),
    );
    let s = a.wait_for(20, "the reload", |s| reloads(s) > before);
    assert_eq!(
        s.val("weir_config_last_reload_successful", &[]),
        1.0,
        "{}",
        a.log_text()
    );
    assert_eq!(read(&s), 3.0);
    a.stop();
}
