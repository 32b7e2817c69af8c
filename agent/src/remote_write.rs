//! Pushing samples to Prometheus remote-write receivers (Prometheus,
//! Mimir, Thanos Receive, VictoriaMetrics, Grafana Cloud).
//!
//! Protocol 1.0: a snappy-compressed protobuf `WriteRequest` per POST.
//! At each interval the agent's exposition is turned into samples with one
//! timestamp and queued; the queue is bounded (oldest samples are dropped
//! past `max_queue_samples`, and counted). Requests are retried with
//! exponential back-off on 5xx, 429 and connection errors, and never on
//! other 4xx (the receiver refused the data; retrying would not help).
use crate::agent::Agent;
use crate::config::{Auth, Secret};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Settings of one target, as the config builds them.
pub use crate::config::RemoteWriteSettings;

/// Figures of one target; kept with the agent's other figures.
pub use crate::stats::RemoteWriteStats;

pub use crate::outputs::remote_write::{encode_write_request, Series};

/// The agent's series for remote write at `ts_ms`, from the same walk as
/// `/metrics`: histograms as their `_bucket`, `_sum` and `_count` series,
/// summaries as their quantile, `_sum` and `_count` series; `keep` and
/// `drop` filter by family name.
pub fn collect(agent: &Agent, s: &RemoteWriteSettings, ts_ms: i64) -> Vec<Series> {
    let keep = |name: &str| {
        (s.keep.is_empty() || s.keep.iter().any(|r| r.is_match(name)))
            && !s.drop.iter().any(|r| r.is_match(name))
    };
    let mut w = crate::outputs::remote_write::Writer::new(&keep, &s.external_labels, ts_ms);
    agent.write::<crate::outputs::remote_write::Rules>(&mut w);
    w.out
}

/// What a send did.
enum Sent {
    Ok,
    /// Refused for good (4xx other than 429).
    Refused(String),
    /// Try again later.
    Retry(String),
}

fn read_secret(s: &Secret) -> Result<String, String> {
    s.read()
}

fn send(client: &reqwest::blocking::Client, s: &RemoteWriteSettings, body: Vec<u8>) -> Sent {
    let mut req = client
        .post(&s.url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body);
    for (k, v) in &s.headers {
        req = req.header(k, v);
    }
    match &s.auth {
        Some(Auth::Basic { username, password }) => match read_secret(password) {
            Ok(p) => req = req.basic_auth(username, Some(p)),
            Err(e) => return Sent::Retry(e),
        },
        Some(Auth::Bearer(t)) => match read_secret(t) {
            Ok(t) => req = req.bearer_auth(t),
            Err(e) => return Sent::Retry(e),
        },
        None => {}
    }
    match req.send() {
        Ok(r) => {
            let st = r.status();
            if st.is_success() {
                Sent::Ok
            } else {
                let body: String = r.text().unwrap_or_default().chars().take(300).collect();
                let msg = format!("{st}: {}", body.trim());
                if st.is_server_error() || st.as_u16() == 429 {
                    Sent::Retry(msg)
                } else {
                    Sent::Refused(msg)
                }
            }
        }
        // The client's error names the URL: hide its secrets.
        Err(e) => Sent::Retry(crate::config::redact::text(&e.to_string(), &s.url)),
    }
}

/// Build a target's HTTP client; fails naming the `ca_file`.
pub fn client(s: &RemoteWriteSettings) -> Result<reqwest::blocking::Client, String> {
    let mut b = reqwest::blocking::Client::builder()
        .timeout(s.timeout)
        .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &s.ca_file {
        let pem =
            std::fs::read(ca).map_err(|e| format!("cannot read ca_file {}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| e.to_string())
}

/// Least time between two log lines about refused remote-write requests
/// of one target.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);

/// Samples waiting for a target; handed from a target's old settings to
/// its new ones at a reload when the receiver URL stays the same.
pub type Queue = VecDeque<Series>;

/// Run a target until `stop`: collect every interval, send from the
/// queue. Returns what is still queued.
pub fn run(
    agent: Arc<Agent>,
    s: RemoteWriteSettings,
    client: reqwest::blocking::Client,
    stats: Arc<RemoteWriteStats>,
    stop: Arc<AtomicBool>,
    mut queue: Queue,
) -> Queue {
    let mut queued_samples: usize = queue.iter().map(|x| x.samples.len()).sum();
    let mut next_collect = Instant::now();
    let mut backoff = Duration::from_millis(100);
    let mut retry_at: Option<Instant> = None;
    let mut retrying = false;
    // A receiver that refuses every request (a 400 for an out-of-order
    // sample, a 401) would otherwise log a line per push: the first refusal
    // is logged, then one line per REFUSAL_LOG_EVERY with how many more
    // there were. Every refused sample is counted in `failed` regardless.
    let mut last_refusal_log: Option<Instant> = None;
    let mut unlogged_refusals: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next_collect {
            next_collect = Instant::now() + s.interval;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            for series in collect(&agent, &s, now) {
                queued_samples += series.samples.len();
                queue.push_back(series);
            }
            while queued_samples > s.max_queue_samples {
                if let Some(old) = queue.pop_front() {
                    queued_samples -= old.samples.len();
                    stats
                        .dropped
                        .fetch_add(old.samples.len() as u64, Ordering::Relaxed);
                } else {
                    break;
                }
            }
        }
        stats.queued.store(queued_samples as u64, Ordering::Relaxed);
        let can_send = retry_at.is_none_or(|t| Instant::now() >= t);
        if queue.is_empty() || !can_send {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let n = queue.len().min(s.max_samples_per_send.max(1));
        let batch: Vec<Series> = queue.iter().take(n).cloned().collect();
        let samples: usize = batch.iter().map(|x| x.samples.len()).sum();
        let body = match snap::raw::Encoder::new().compress_vec(&encode_write_request(&batch)) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(target = %s.name, "remote write: snappy: {e}");
                queue.drain(..n);
                queued_samples -= samples;
                continue;
            }
        };
        if retrying {
            stats.retried.fetch_add(samples as u64, Ordering::Relaxed);
        }
        match send(&client, &s, body) {
            Sent::Ok => {
                queue.drain(..n);
                queued_samples -= samples;
                stats.sent.fetch_add(samples as u64, Ordering::Relaxed);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                stats.last_success.set(now);
                if retrying {
                    tracing::info!(target = %s.name, "remote write: receiver accepts again");
                }
                backoff = Duration::from_millis(100);
                retry_at = None;
                retrying = false;
            }
            Sent::Refused(msg) => {
                queue.drain(..n);
                queued_samples -= samples;
                stats.failed.fetch_add(samples as u64, Ordering::Relaxed);
                if last_refusal_log.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
                    let more = if unlogged_refusals > 0 {
                        format!(
                            " ({unlogged_refusals} more requests refused since the last such line)"
                        )
                    } else {
                        String::new()
                    };
                    tracing::warn!(target = %s.name, "remote write: {samples} samples refused, not retried: {msg}{more}");
                    last_refusal_log = Some(Instant::now());
                    unlogged_refusals = 0;
                } else {
                    unlogged_refusals += 1;
                }
            }
            Sent::Retry(msg) => {
                if !retrying {
                    tracing::warn!(target = %s.name, "remote write failed, retrying with back-off: {msg}");
                }
                retrying = true;
                retry_at = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        stats.queued.store(queued_samples as u64, Ordering::Relaxed);
    }
    queue
}

/// One running target.
struct Running {
    settings: RemoteWriteSettings,
    stats: Arc<RemoteWriteStats>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Queue>,
}

/// The running remote-write targets, changed by reloads.
pub struct Writers {
    agent: Arc<Agent>,
    running: parking_lot::Mutex<Vec<Running>>,
}

/// The targets a configuration asks for, their clients built; nothing
/// running is touched until [`Writers::commit`].
pub struct WritersPlan {
    targets: Vec<(RemoteWriteSettings, Option<reqwest::blocking::Client>)>,
    /// Targets started, by name.
    pub added: Vec<String>,
    /// Targets whose settings change, by name.
    pub changed: Vec<String>,
    /// Targets stopped, by name.
    pub removed: Vec<String>,
}

impl WritersPlan {
    /// Whether nothing changes.
    pub fn is_noop(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

impl Writers {
    /// No targets yet.
    pub fn new(agent: Arc<Agent>) -> Self {
        Writers {
            agent,
            running: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// Compare `targets` with the running ones and build the clients of
    /// new and changed ones. Errors name the target's `file:line`.
    pub fn plan(&self, cfg: &crate::config::AgentSettings) -> Result<WritersPlan, Vec<String>> {
        let running = self.running.lock();
        let mut plan = WritersPlan {
            targets: Vec::new(),
            added: Vec::new(),
            changed: Vec::new(),
            removed: Vec::new(),
        };
        let mut errors = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, s) in cfg.remote_write.iter().enumerate() {
            if !names.insert(s.name.clone()) {
                errors.push(
                    cfg.origin
                        .error(
                            &format!("remote_write[{i}].name"),
                            format!(
                                "two targets are named \"{}\"; give each a distinct name",
                                s.name
                            ),
                        )
                        .to_string(),
                );
                continue;
            }
            let old = running.iter().find(|r| r.settings.name == s.name);
            if old.is_some_and(|r| r.settings == *s) {
                plan.targets.push((s.clone(), None));
                continue;
            }
            match client(s) {
                Ok(c) => plan.targets.push((s.clone(), Some(c))),
                Err(e) => {
                    errors.push(
                        cfg.origin
                            .error(&format!("remote_write[{i}]"), e)
                            .to_string(),
                    );
                    continue;
                }
            }
            match old {
                Some(_) => plan.changed.push(s.name.clone()),
                None => plan.added.push(s.name.clone()),
            }
        }
        for r in running.iter() {
            if !cfg.remote_write.iter().any(|s| s.name == r.settings.name) {
                plan.removed.push(r.settings.name.clone());
            }
        }
        if errors.is_empty() {
            Ok(plan)
        } else {
            Err(errors)
        }
    }

    /// Apply a plan. A target whose receiver URL is unchanged keeps its
    /// queue and figures; one with a new URL starts empty (its queued
    /// samples were for the old receiver and are counted as dropped).
    pub fn commit(&self, plan: WritersPlan) {
        let mut running = self.running.lock();
        let mut old: Vec<Running> = std::mem::take(&mut *running);
        for (s, client) in plan.targets {
            let pos = old.iter().position(|r| r.settings.name == s.name);
            let Some(client) = client else {
                // Unchanged: keep it running.
                if let Some(p) = pos {
                    running.push(old.remove(p));
                }
                continue;
            };
            let (stats, queue) = match pos.map(|p| old.remove(p)) {
                Some(r) => {
                    let same_url = r.settings.url == s.url;
                    let (stats, queue) = stop(r);
                    if same_url {
                        (stats, queue)
                    } else {
                        let n: usize = queue.iter().map(|x| x.samples.len()).sum();
                        stats.dropped.fetch_add(n as u64, Ordering::Relaxed);
                        stats.queued.store(0, Ordering::Relaxed);
                        (Arc::new(RemoteWriteStats::default()), Queue::new())
                    }
                }
                None => (Arc::new(RemoteWriteStats::default()), Queue::new()),
            };
            match self.spawn(s.clone(), client, stats.clone(), queue) {
                Ok(r) => running.push(r),
                Err(e) => tracing::error!(target = %s.name, "remote write: cannot start: {e}"),
            }
        }
        for r in old {
            tracing::info!(target = %r.settings.name, "remote write stopped");
            stop(r);
        }
        *self.agent.remote_write.lock() = running
            .iter()
            .map(|r| (r.settings.name.clone(), r.stats.clone()))
            .collect();
    }

    fn spawn(
        &self,
        s: RemoteWriteSettings,
        client: reqwest::blocking::Client,
        stats: Arc<RemoteWriteStats>,
        queue: Queue,
    ) -> std::io::Result<Running> {
        let stop = Arc::new(AtomicBool::new(false));
        let (a, st, sp, set) = (self.agent.clone(), stats.clone(), stop.clone(), s.clone());
        tracing::info!(target = %s.name, url = %crate::config::redact::url(&s.url), "remote write enabled");
        let thread = std::thread::Builder::new()
            .name(format!("remote-write:{}", s.name))
            .spawn(move || run(a, set, client, st, sp, queue))?;
        Ok(Running {
            settings: s,
            stats,
            stop,
            thread,
        })
    }

    /// Tell every target to stop (at shutdown); does not wait for a
    /// request in flight, so a hung receiver cannot delay the exit.
    pub fn stop_all(&self) {
        for r in self.running.lock().iter() {
            r.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// Stop a target and wait for it (at most one request's timeout); its
/// figures and what it still held.
fn stop(r: Running) -> (Arc<RemoteWriteStats>, Queue) {
    r.stop.store(true, Ordering::Relaxed);
    let q = r.thread.join().unwrap_or_default();
    (r.stats, q)
}
