//! The status page at `/` and its JSON twin at `/api/v1/status`: what an
//! operator would otherwise read logs for. Every pipeline with its state,
//! plugin and hash, source, input rate, lag, rejected inputs, errors with
//! the last error's text and time, series against the cap; the last
//! configuration load with its errors; links to `/metrics`.
//!
//! Plain HTML with inline CSS, no script and no external asset: it works
//! in any browser, offline, behind the same authentication as `/metrics`.
//! It refreshes itself every 10 s with a `<meta http-equiv="refresh">`.
use crate::agent::Agent;
use crate::config::SourceSpec;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often input counts are sampled for the rates shown.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// The agent's status, as `/api/v1/status` serves it (JSON).
#[derive(Debug, Serialize)]
pub struct Status {
    /// weir version.
    pub version: String,
    /// Config directory as given.
    pub config_dir: String,
    /// Whether every pipeline has initialised once.
    pub ready: bool,
    /// The last configuration load; `null` before the first.
    pub last_reload: Option<crate::stats::ReloadRecord>,
    /// Pipelines by name.
    pub pipelines: Vec<PipelineStatus>,
}

/// One pipeline's figures.
#[derive(Debug, Serialize)]
pub struct PipelineStatus {
    /// Pipeline name.
    pub name: String,
    /// `up`, `source down` or `plugin restarting`.
    pub state: String,
    /// The pipeline file and line that define it.
    pub defined_at: String,
    /// Plugin: a built-in name or the `.wasm` path.
    pub plugin: String,
    /// First 12 hex digits of the SHA-256 of the plugin component.
    pub plugin_hash: String,
    /// Source kind (`file`, `exec`, `stdin`, `http`, `process`).
    pub source: String,
    /// What the source reads: paths, command, URL.
    pub source_detail: String,
    /// Lines read (log sources) or polls/scans made (snapshot sources).
    pub inputs_total: u64,
    /// What `inputs_total` counts: `lines` or `polls`.
    pub inputs_unit: &'static str,
    /// Inputs per second over the last sampling interval; `null` until two
    /// samples exist.
    pub inputs_per_second: Option<f64>,
    /// Bytes between the read position and the end of the followed files.
    pub lag_bytes: u64,
    /// Inputs the plugin could not read.
    pub rejected_inputs: u64,
    /// Updates the host refused (wrong labels, NaN, series cap...).
    pub refused_updates: u64,
    /// Plugin call errors and source errors.
    pub errors: u64,
    /// The last error's text, `null` when none.
    pub last_error: Option<String>,
    /// Unix time of the last error.
    pub last_error_time: Option<f64>,
    /// Series held.
    pub series: usize,
    /// The pipeline's `max_series`.
    pub series_limit: usize,
}

/// Input counts sampled every [`SAMPLE_EVERY`]: (when, count) per
/// pipeline, the last two.
#[derive(Default)]
pub struct Rates {
    samples: Mutex<HashMap<String, [(Instant, u64); 2]>>,
}

fn inputs(p: &crate::pipeline::Pipeline) -> (u64, &'static str) {
    match &p.spec.source {
        // Polls made: those handed to the plugin and those that failed.
        SourceSpec::Http(_) | SourceSpec::Process { .. } => (
            p.stats.calls.load(Ordering::Relaxed)
                + p.stats.source_errors.lock().values().sum::<u64>(),
            "polls",
        ),
        _ => (p.stats.lines_read.load(Ordering::Relaxed), "lines"),
    }
}

impl Rates {
    /// Take one sample of every pipeline.
    pub fn sample(&self, agent: &Agent) {
        let now = Instant::now();
        let mut s = self.samples.lock();
        let pipelines = agent.pipelines();
        s.retain(|name, _| pipelines.iter().any(|p| &p.spec.name == name));
        for p in pipelines {
            let (n, _) = inputs(&p);
            let e = s.entry(p.spec.name.clone()).or_insert([(now, n), (now, n)]);
            // A rebuilt pipeline starts its counts afresh.
            if n < e[1].1 {
                *e = [(now, n), (now, n)];
            } else {
                *e = [e[1], (now, n)];
            }
        }
    }

    fn rate(&self, name: &str) -> Option<f64> {
        let s = self.samples.lock();
        let [(t0, n0), (t1, n1)] = *s.get(name)?;
        let dt = t1.duration_since(t0).as_secs_f64();
        (dt > 0.0).then(|| (n1 - n0) as f64 / dt)
    }
}

/// The samples of this process (one endpoint per process).
pub fn rates() -> &'static Rates {
    static RATES: std::sync::OnceLock<Rates> = std::sync::OnceLock::new();
    RATES.get_or_init(Rates::default)
}

/// Sample rates until the process ends.
pub async fn sample_forever(agent: Arc<Agent>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        rates().sample(&agent);
    }
}

fn source_detail(s: &SourceSpec) -> String {
    match s {
        SourceSpec::File {
            paths,
            start_at,
            format,
            ..
        } => format!(
            "{} (start_at {}{})",
            paths.join(", "),
            match start_at {
                crate::config::StartAt::End => "end",
                crate::config::StartAt::Beginning => "beginning",
            },
            match format {
                crate::config::LineFormat::Plain => "",
                crate::config::LineFormat::Cri => ", format cri",
                crate::config::LineFormat::Docker => ", format docker",
            }
        ),
        SourceSpec::Stdin => "standard input".into(),
        // Shown to whoever may read /metrics: secrets hidden as in the log.
        SourceSpec::Exec { command, .. } => crate::config::redact::argv(command),
        SourceSpec::Journald {
            matches, directory, ..
        } => format!(
            "journal {}{}",
            directory.as_deref().unwrap_or("(system)"),
            if matches.is_empty() {
                String::new()
            } else {
                format!(", matches {}", matches.join(" "))
            }
        ),
        SourceSpec::Http(h) => crate::config::redact::url(&h.url),
        SourceSpec::Process { interval, .. } => format!("every {interval:?}"),
    }
}

/// The status now.
pub fn status(agent: &Agent, rates: &Rates) -> Status {
    let mut pipelines = Vec::new();
    for p in agent.pipelines() {
        let st = &p.stats;
        let (total, unit) = inputs(&p);
        let state = if !st.up.load(Ordering::Relaxed) {
            "plugin restarting"
        } else if !st.source_up.load(Ordering::Relaxed) {
            "source down"
        } else {
            "up"
        };
        let errors: u64 =
            st.errors.lock().values().sum::<u64>() + st.source_errors.lock().values().sum::<u64>();
        let last = st.last_error.lock().clone();
        let store = p.store.lock();
        pipelines.push(PipelineStatus {
            name: p.spec.name.clone(),
            state: state.into(),
            defined_at: format!("{}:{}", p.spec.file.display(), p.spec.line),
            plugin: p.spec.plugin.to_string(),
            plugin_hash: p.code_hash.clone(),
            source: p.spec.source.kind().into(),
            source_detail: source_detail(&p.spec.source),
            inputs_total: total,
            inputs_unit: unit,
            inputs_per_second: rates.rate(&p.spec.name),
            lag_bytes: st.files.lock().values().map(|f| f.lag_bytes).sum(),
            rejected_inputs: st.inputs_rejected.load(Ordering::Relaxed),
            refused_updates: st.updates_rejected.lock().values().sum(),
            errors,
            last_error_time: last.as_ref().map(|l| l.0),
            last_error: last.map(|l| l.1),
            series: store.series_count(),
            series_limit: p.spec.max_series,
        });
    }
    pipelines.sort_by(|a, b| a.name.cmp(&b.name));
    Status {
        version: crate::agent::VERSION.to_string(),
        config_dir: agent.config_dir().display().to_string(),
        ready: agent.is_ready(),
        last_reload: agent.stats.last_reload.lock().clone(),
        pipelines,
    }
}

/// The JSON twin.
pub fn json(s: &Status) -> String {
    serde_json::to_string_pretty(s).unwrap_or_else(|_| "{}".into()) + "\n"
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC` (civil-from-days, H. Hinnant's
/// algorithm; no time-zone database needed for UTC).
fn utc(t: f64) -> String {
    let secs = t.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// The HTML page.
pub fn html(s: &Status) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"10\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>weir status</title><style>\
body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}}\
table{{border-collapse:collapse;margin:.5em 0}}td,th{{padding:.3em .7em;text-align:left;border-bottom:1px solid #ddd;vertical-align:top}}\
th{{background:#f3f3f3}}td.n{{text-align:right;font-variant-numeric:tabular-nums}}\
.ok{{color:#11691d;font-weight:600}}.bad{{color:#b00020;font-weight:600}}\
.err{{font-family:monospace;white-space:pre-wrap;overflow-wrap:anywhere;color:#b00020}}td.last{{max-width:32em}}code{{font-size:.9em}}\
.box{{border:1px solid #ddd;padding:.5em 1em;margin:1em 0;max-width:70em}}</style></head><body>\
<h1>weir {}</h1><p><a href=\"/metrics\">/metrics</a> · <a href=\"/api/v1/status\">/api/v1/status</a> · \
<a href=\"/health\">/health</a> · <a href=\"/ready\">/ready</a> · config directory <code>{}</code> · {}</p>",
        esc(&s.version),
        esc(&s.config_dir),
        if s.ready {
            "<span class=\"ok\">ready</span>"
        } else {
            "<span class=\"bad\">starting</span>"
        }
    );
    h.push_str("<div class=\"box\" id=\"reload\"><h2>Last configuration load</h2>");
    match &s.last_reload {
        None => h.push_str("<p>none yet</p>"),
        Some(r) if r.ok => {
            let _ = write!(
                h,
                "<p><span class=\"ok\">applied</span> at {}: {} added, {} changed, {} removed</p>",
                utc(r.time),
                r.added.len(),
                r.changed.len(),
                r.removed.len()
            );
        }
        Some(r) => {
            let _ = write!(
                h,
                "<p><span class=\"bad\">failed</span> at {}; the pipelines below are the ones that ran before it. {} error(s):</p><ul>",
                utc(r.time),
                r.errors.len()
            );
            for e in &r.errors {
                let _ = write!(h, "<li class=\"err\">{}</li>", esc(e));
            }
            h.push_str("</ul>");
        }
    }
    h.push_str("</div><h2>Pipelines</h2>");
    if s.pipelines.is_empty() {
        h.push_str("<p>no pipelines</p>");
    }
    h.push_str(
        "<table id=\"pipelines\"><tr><th>pipeline</th><th>state</th><th>plugin</th><th>source</th>\
<th>inputs</th><th>per second</th><th>lag</th><th>rejected</th><th>refused</th><th>errors</th>\
<th>series / cap</th><th>last error</th></tr>",
    );
    for p in &s.pipelines {
        let class = if p.state == "up" { "ok" } else { "bad" };
        let rate = p
            .inputs_per_second
            .map(|r| format!("{r:.1}"))
            .unwrap_or_else(|| "–".into());
        let last = match (&p.last_error, p.last_error_time) {
            (Some(e), Some(t)) => format!("<span class=\"err\">{}</span><br>{}", esc(e), utc(t)),
            _ => "none".into(),
        };
        let short_hash: String = p.plugin_hash.chars().take(12).collect();
        let _ = write!(
            h,
            "<tr id=\"pipeline-{name}\"><td><b>{name}</b><br><small>{at}</small></td>\
<td class=\"{class}\">{state}</td><td>{plugin}<br><small title=\"{hash}\">{short}</small></td>\
<td>{source}<br><small>{detail}</small></td><td class=\"n\">{total} {unit}</td><td class=\"n\">{rate}</td>\
<td class=\"n\">{lag}</td><td class=\"n\">{rej}</td><td class=\"n\">{refused}</td><td class=\"n\">{errors}</td>\
<td class=\"n\">{series}&nbsp;/&nbsp;{cap}</td><td class=\"last\">{last}</td></tr>",
            name = esc(&p.name),
            at = esc(&p.defined_at),
            state = esc(&p.state),
            plugin = esc(&p.plugin),
            hash = esc(&p.plugin_hash),
            short = esc(&short_hash),
            source = esc(&p.source),
            detail = esc(&p.source_detail),
            total = p.inputs_total,
            unit = p.inputs_unit,
            lag = bytes(p.lag_bytes),
            rej = p.rejected_inputs,
            refused = p.refused_updates,
            errors = p.errors,
            series = p.series,
            cap = p.series_limit,
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        // `date -u -d @1795341609`
        assert_eq!(utc(1_795_341_609.5), "2026-11-22 10:00:09 UTC");
        assert_eq!(utc(951_868_800.0), "2000-03-01 00:00:00 UTC");
    }

    #[test]
    fn text_is_escaped() {
        let s = Status {
            version: "1".into(),
            config_dir: "<d>".into(),
            ready: false,
            last_reload: Some(crate::stats::ReloadRecord {
                ok: false,
                errors: vec!["a.toml:3: key \"x\": <bad>".into()],
                ..Default::default()
            }),
            pipelines: Vec::new(),
        };
        let h = html(&s);
        assert!(h.contains("&lt;bad&gt;") && !h.contains("<bad>"), "{h}");
        assert!(h.contains("failed") && !h.contains("<script"), "{h}");
    }
}
