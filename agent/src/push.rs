//! What every push target shares: Prometheus remote write (the
//! `remote_write` module) and OTLP/HTTP (the `otlp` module).
//!
//! A target collects the agent's series every `interval` into a bounded
//! queue of items (a remote-write series, an OTLP metric), each carrying a
//! number of points (samples, data points). Past the queue's bound the
//! oldest items are dropped and their points counted. Items are sent in
//! order, at most `max_per_send` points a request (at least one item).
//! Requests are retried with exponential back-off (100 ms doubling to
//! 30 s) on 5xx, 429 and connection errors, waiting at least what a
//! `Retry-After` header asks (at most [`MAX_RETRY_AFTER`]); any other 4xx
//! is a refusal that is counted and never retried (the receiver refused
//! the data; sending it again would not help). Reloads keep a target's
//! queue and figures while its URL stays the same.
use crate::agent::Agent;
use crate::config::{AgentSettings, Auth, Secret};
use crate::stats::RemoteWriteStats;
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Figures of one push target (either kind).
pub type PushStats = RemoteWriteStats;

/// Longest wait a receiver's `Retry-After` is honoured for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Least time between two log lines about refused requests of one target.
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);

/// A request body and its headers (Content-Type, Content-Encoding, ...).
pub type Body = (Vec<u8>, Vec<(&'static str, String)>);

/// One kind of push target, implemented by its settings.
pub trait Target: Clone + PartialEq + Send + Sync + 'static {
    /// What is queued.
    type Item: Clone + Send + 'static;
    /// For log lines: "remote write", "OTLP".
    const WHAT: &'static str;
    /// The config key: `remote_write`, `otlp`.
    const KEY: &'static str;
    /// Name for figures and logs.
    fn name(&self) -> &str;
    /// Where requests go.
    fn url(&self) -> &str;
    /// Time between collections.
    fn interval(&self) -> Duration;
    /// Request timeout.
    fn timeout(&self) -> Duration;
    /// Extra root certificates.
    fn ca_file(&self) -> Option<&Path>;
    /// Extra headers.
    fn headers(&self) -> &BTreeMap<String, String>;
    /// Basic or bearer auth.
    fn auth(&self) -> Option<&Auth>;
    /// Most points queued.
    fn max_queue(&self) -> usize;
    /// Most points per request.
    fn max_per_send(&self) -> usize;
    /// Points of one item.
    fn points(item: &Self::Item) -> usize;
    /// The agent's series now, as items.
    fn collect(&self, agent: &Agent, now: SystemTime) -> Vec<Self::Item>;
    /// A request body for `batch`, and its headers (Content-Type, ...).
    fn encode(&self, batch: &[Self::Item]) -> Result<Body, String>;
    /// Points a 2xx answer says were rejected, and why (OTLP's
    /// `partial_success`); none by default.
    fn rejected(&self, _content_type: Option<&str>, _body: &[u8]) -> Option<(u64, String)> {
        None
    }
    /// The queue as bytes, for the file that keeps it across restarts.
    fn save_items(items: &VecDeque<Self::Item>) -> Vec<u8>;
    /// The queue from [`Target::save_items`]'s bytes, or why they cannot
    /// be read.
    fn load_items(bytes: &[u8]) -> Result<Vec<Self::Item>, String>;
    /// The targets of this kind a configuration asks for.
    fn of(cfg: &AgentSettings) -> &[Self];
    /// Publish the running targets' figures on the agent.
    fn publish(agent: &Agent, figures: Vec<(String, Arc<PushStats>)>);
}

/// What a send did.
enum Sent {
    /// Accepted; some points may have been rejected (count, why).
    Ok(Option<(u64, String)>),
    /// Refused for good (4xx other than 429).
    Refused(String),
    /// Try again later, not before the `Retry-After` if one was given.
    Retry(String, Option<Duration>),
}

/// A `Retry-After` header: seconds, or an HTTP date.
fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s).min(MAX_RETRY_AFTER));
    }
    let at = httpdate(v)?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form RFC 9110
/// asks senders to use.
fn httpdate(v: &str) -> Option<SystemTime> {
    let p: Vec<&str> = v.split_whitespace().collect();
    if p.len() != 6 || p[5] != "GMT" {
        return None;
    }
    let day: u64 = p[1].parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == p[2])? as u64 + 1;
    let year: u64 = p[3].parse().ok()?;
    let hms: Vec<u64> = p[4].split(':').filter_map(|x| x.parse().ok()).collect();
    if hms.len() != 3 || !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    let secs = days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2];
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

fn send<T: Target>(
    client: &reqwest::blocking::Client,
    s: &T,
    stats: &PushStats,
    body: Vec<u8>,
    headers: &[(&'static str, String)],
) -> Sent {
    let mut req = client.post(s.url()).body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    for (k, v) in s.headers() {
        req = req.header(k, v);
    }
    let secret = |x: &Secret| x.read();
    match s.auth() {
        Some(Auth::Basic { username, password }) => match secret(password) {
            Ok(p) => req = req.basic_auth(username, Some(p)),
            Err(e) => return Sent::Retry(e, None),
        },
        Some(Auth::Bearer(t)) => match secret(t) {
            Ok(t) => req = req.bearer_auth(t),
            Err(e) => return Sent::Retry(e, None),
        },
        None => {}
    }
    let count = |code: String| *stats.requests.lock().entry(code).or_insert(0) += 1;
    match req.send() {
        Ok(r) => {
            let st = r.status();
            count(st.as_u16().to_string());
            if st.is_success() {
                let ct = r
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = r.bytes().unwrap_or_default();
                Sent::Ok(s.rejected(ct.as_deref(), &body))
            } else {
                let after = retry_after(r.headers());
                let body: String = r.text().unwrap_or_default().chars().take(300).collect();
                let msg = format!("{st}: {}", body.trim());
                if st.is_server_error() || st.as_u16() == 429 {
                    Sent::Retry(msg, after)
                } else {
                    Sent::Refused(msg)
                }
            }
        }
        Err(e) => {
            count("error".to_string());
            // The client's error names the URL: hide its secrets.
            Sent::Retry(crate::config::redact::text(&e.to_string(), s.url()), None)
        }
    }
}

/// Build a target's HTTP client; fails naming the `ca_file`.
pub fn client<T: Target>(s: &T) -> Result<reqwest::blocking::Client, String> {
    let mut b = reqwest::blocking::Client::builder()
        .timeout(s.timeout())
        .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = s.ca_file() {
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

/// How many items from the front of the queue the next request takes, and
/// their points: at most `max` points, and at least one item (an item
/// larger than `max` goes alone).
fn next_batch(points: impl Iterator<Item = usize>, max: usize) -> (usize, usize) {
    let (mut n, mut total) = (0usize, 0usize);
    for p in points {
        if n > 0 && total + p > max {
            break;
        }
        n += 1;
        total += p;
    }
    (n, total)
}

/// Run a target until `stop`: collect every interval, send from the
/// queue. Returns what is still queued.
/// How often a queue that changed is written to its file: what a SIGKILL
/// (or a power loss) can lose of what was queued, at most.
pub const QUEUE_SAVE_EVERY: Duration = Duration::from_secs(5);

/// Largest queue file read back.
const MAX_QUEUE_FILE_BYTES: u64 = 512 << 20;

/// The file of target `name`'s queue in the state directory's
/// `checkpoints` directory: `KEY-NAME.queue`, the name's characters other
/// than letters, digits, `-` and `_` replaced, and a hash of the whole name
/// so that two names never share a file.
fn queue_file<T: Target>(name: &str) -> String {
    let clean: String = name
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hash = crc32fast::hash(name.as_bytes());
    format!("{}-{clean}-{hash:08x}.queue", T::KEY)
}

/// What target `s` had queued when the agent last stopped (or last wrote
/// its queue file), if anything; a file that cannot be read is logged and
/// removed.
pub fn load_queue<T: Target>(agent: &Agent, s: &T) -> VecDeque<T::Item> {
    let Some(dir) = agent.state_files() else {
        return VecDeque::new();
    };
    let file = queue_file::<T>(s.name());
    let bytes = match dir.read(&file, MAX_QUEUE_FILE_BYTES) {
        Ok(Some(b)) => b,
        Ok(None) => return VecDeque::new(),
        Err(why) => {
            tracing::warn!(target = %s.name(), file = %file, "{}: ignoring an untrusted queue file ({why})", T::WHAT);
            let _ = dir.discard(&file);
            return VecDeque::new();
        }
    };
    match crate::sources::checkpoint::decode(&bytes).and_then(T::load_items) {
        Ok(items) => {
            let points: usize = items.iter().map(T::points).sum();
            if points > 0 {
                tracing::info!(target = %s.name(), points, "{}: queue of the last run restored", T::WHAT);
            }
            items.into_iter().collect()
        }
        Err(e) => {
            tracing::warn!(target = %s.name(), file = %file, "{}: ignoring the queue file: {e}", T::WHAT);
            let _ = dir.discard(&file);
            VecDeque::new()
        }
    }
}

/// Write target `name`'s queue to its file (removed when empty).
fn save_queue<T: Target>(agent: &Agent, name: &str, queue: &VecDeque<T::Item>) {
    let Some(dir) = agent.state_files() else {
        return;
    };
    let file = queue_file::<T>(name);
    let res = if queue.is_empty() {
        dir.discard(&file)
    } else {
        dir.write(
            &file,
            &crate::sources::checkpoint::encode(&T::save_items(queue)),
        )
    };
    if let Err(e) = res {
        tracing::warn!(target = %name, file = %file, "{}: cannot write the queue file: {e}", T::WHAT);
    }
}

pub fn run<T: Target>(
    agent: Arc<Agent>,
    s: T,
    client: reqwest::blocking::Client,
    stats: Arc<PushStats>,
    stop: Arc<AtomicBool>,
    mut queue: VecDeque<T::Item>,
) -> VecDeque<T::Item> {
    let what = T::WHAT;
    let name = s.name().to_string();
    // The queue on disk: written when it changed, every QUEUE_SAVE_EVERY
    // and when the target stops.
    let mut changed = false;
    let mut saved_at = Instant::now();
    let mut queued: usize = queue.iter().map(T::points).sum();
    let mut next_collect = Instant::now();
    let mut backoff = Duration::from_millis(100);
    let mut retry_at: Option<Instant> = None;
    let mut retrying = false;
    // A receiver that refuses every request (a 400 for an out-of-order
    // sample, a 401) would otherwise log a line per push: the first refusal
    // is logged, then one line per REFUSAL_LOG_EVERY with how many more
    // there were. Every refused point is counted in `failed` regardless.
    let mut last_refusal_log: Option<Instant> = None;
    let mut unlogged_refusals: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if changed && saved_at.elapsed() >= QUEUE_SAVE_EVERY {
            save_queue::<T>(&agent, &name, &queue);
            saved_at = Instant::now();
            changed = false;
        }
        if Instant::now() >= next_collect {
            changed = true;
            next_collect = Instant::now() + s.interval();
            for item in s.collect(&agent, SystemTime::now()) {
                queued += T::points(&item);
                queue.push_back(item);
            }
            while queued > s.max_queue() {
                let Some(old) = queue.pop_front() else { break };
                let n = T::points(&old);
                queued -= n;
                stats.dropped.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        stats.queued.store(queued as u64, Ordering::Relaxed);
        let can_send = retry_at.is_none_or(|t| Instant::now() >= t);
        if queue.is_empty() || !can_send {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let (n, points) = next_batch(queue.iter().map(T::points), s.max_per_send());
        let batch: Vec<T::Item> = queue.iter().take(n).cloned().collect();
        let (body, headers) = match s.encode(&batch) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(target = %name, "{what}: cannot encode {points} points: {e}");
                queue.drain(..n);
                changed = true;
                queued -= points;
                stats.failed.fetch_add(points as u64, Ordering::Relaxed);
                continue;
            }
        };
        if retrying {
            stats.retried.fetch_add(points as u64, Ordering::Relaxed);
        }
        match send(&client, &s, &stats, body, &headers) {
            Sent::Ok(rejected) => {
                queue.drain(..n);
                changed = true;
                queued -= points;
                // A partial success: the rejected points are failed, not
                // retried (the receiver has seen them).
                let bad = rejected.as_ref().map_or(0, |r| (r.0 as usize).min(points));
                stats
                    .sent
                    .fetch_add((points - bad) as u64, Ordering::Relaxed);
                stats.failed.fetch_add(bad as u64, Ordering::Relaxed);
                if let Some((_, why)) = rejected.filter(|_| bad > 0) {
                    if last_refusal_log.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
                        tracing::warn!(target = %name, "{what}: the receiver accepted the request but rejected {bad} of its {points} points: {why}");
                        last_refusal_log = Some(Instant::now());
                    } else {
                        unlogged_refusals += 1;
                    }
                }
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                stats.last_success.set(now);
                if retrying {
                    tracing::info!(target = %name, "{what}: receiver accepts again");
                }
                backoff = Duration::from_millis(100);
                retry_at = None;
                retrying = false;
            }
            Sent::Refused(msg) => {
                queue.drain(..n);
                changed = true;
                queued -= points;
                stats.failed.fetch_add(points as u64, Ordering::Relaxed);
                if last_refusal_log.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
                    let more = if unlogged_refusals > 0 {
                        format!(
                            " ({unlogged_refusals} more requests refused since the last such line)"
                        )
                    } else {
                        String::new()
                    };
                    tracing::warn!(target = %name, "{what}: {points} points refused, not retried: {msg}{more}");
                    last_refusal_log = Some(Instant::now());
                    unlogged_refusals = 0;
                } else {
                    unlogged_refusals += 1;
                }
            }
            Sent::Retry(msg, after) => {
                if !retrying {
                    tracing::warn!(target = %name, "{what} failed, retrying with back-off: {msg}");
                }
                retrying = true;
                retry_at = Some(Instant::now() + after.map_or(backoff, |a| a.max(backoff)));
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        stats.queued.store(queued as u64, Ordering::Relaxed);
    }
    save_queue::<T>(&agent, &name, &queue);
    queue
}

/// One running target.
struct Running<T: Target> {
    settings: T,
    stats: Arc<PushStats>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<VecDeque<T::Item>>,
}

/// The running targets of one kind, changed by reloads.
pub struct Writers<T: Target> {
    agent: Arc<Agent>,
    running: parking_lot::Mutex<Vec<Running<T>>>,
}

/// The targets a configuration asks for, their clients built; nothing
/// running is touched until [`Writers::commit`].
pub struct WritersPlan<T> {
    targets: Vec<(T, Option<reqwest::blocking::Client>)>,
    /// Targets started, by name.
    pub added: Vec<String>,
    /// Targets whose settings change, by name.
    pub changed: Vec<String>,
    /// Targets stopped, by name.
    pub removed: Vec<String>,
}

impl<T> WritersPlan<T> {
    /// Whether nothing changes.
    pub fn is_noop(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

impl<T: Target> Writers<T> {
    /// No targets yet.
    pub fn new(agent: Arc<Agent>) -> Self {
        Writers {
            agent,
            running: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// Compare the configured targets with the running ones and build the
    /// clients of new and changed ones. Errors name the target's
    /// `file:line`.
    pub fn plan(&self, cfg: &AgentSettings) -> Result<WritersPlan<T>, Vec<String>> {
        let running = self.running.lock();
        let wanted = T::of(cfg);
        let mut plan = WritersPlan {
            targets: Vec::new(),
            added: Vec::new(),
            changed: Vec::new(),
            removed: Vec::new(),
        };
        let mut errors = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, s) in wanted.iter().enumerate() {
            if !names.insert(s.name().to_string()) {
                errors.push(
                    cfg.origin
                        .error(
                            &format!("{}[{i}].name", T::KEY),
                            format!(
                                "two targets are named \"{}\"; give each a distinct name",
                                s.name()
                            ),
                        )
                        .to_string(),
                );
                continue;
            }
            let old = running.iter().find(|r| r.settings.name() == s.name());
            if old.is_some_and(|r| r.settings == *s) {
                plan.targets.push((s.clone(), None));
                continue;
            }
            match client(s) {
                Ok(c) => plan.targets.push((s.clone(), Some(c))),
                Err(e) => {
                    errors.push(cfg.origin.error(&format!("{}[{i}]", T::KEY), e).to_string());
                    continue;
                }
            }
            match old {
                Some(_) => plan.changed.push(s.name().to_string()),
                None => plan.added.push(s.name().to_string()),
            }
        }
        for r in running.iter() {
            if !wanted.iter().any(|s| s.name() == r.settings.name()) {
                plan.removed.push(r.settings.name().to_string());
            }
        }
        if errors.is_empty() {
            Ok(plan)
        } else {
            Err(errors)
        }
    }

    /// Apply a plan. A target whose URL is unchanged keeps its queue and
    /// figures; one with a new URL starts empty (its queued points were
    /// for the old receiver and are counted as dropped).
    pub fn commit(&self, plan: WritersPlan<T>) {
        let mut running = self.running.lock();
        let mut old: Vec<Running<T>> = std::mem::take(&mut *running);
        for (s, client) in plan.targets {
            let pos = old.iter().position(|r| r.settings.name() == s.name());
            let Some(client) = client else {
                // Unchanged: keep it running.
                if let Some(p) = pos {
                    running.push(old.remove(p));
                }
                continue;
            };
            let (stats, queue) = match pos.map(|p| old.remove(p)) {
                Some(r) => {
                    let same_url = r.settings.url() == s.url();
                    let (stats, queue) = stop(r);
                    if same_url {
                        (stats, queue)
                    } else {
                        let n: usize = queue.iter().map(T::points).sum();
                        stats.dropped.fetch_add(n as u64, Ordering::Relaxed);
                        stats.queued.store(0, Ordering::Relaxed);
                        (Arc::new(PushStats::default()), VecDeque::new())
                    }
                }
                // A new target (or the agent's start): what its last run
                // left queued.
                None => (Arc::new(PushStats::default()), load_queue(&self.agent, &s)),
            };
            match self.spawn(s.clone(), client, stats.clone(), queue) {
                Ok(r) => running.push(r),
                Err(e) => tracing::error!(target = %s.name(), "{}: cannot start: {e}", T::WHAT),
            }
        }
        for r in old {
            tracing::info!(target = %r.settings.name(), "{} stopped", T::WHAT);
            stop(r);
        }
        T::publish(
            &self.agent,
            running
                .iter()
                .map(|r| (r.settings.name().to_string(), r.stats.clone()))
                .collect(),
        );
    }

    fn spawn(
        &self,
        s: T,
        client: reqwest::blocking::Client,
        stats: Arc<PushStats>,
        queue: VecDeque<T::Item>,
    ) -> std::io::Result<Running<T>> {
        let stop = Arc::new(AtomicBool::new(false));
        let (a, st, sp, set) = (self.agent.clone(), stats.clone(), stop.clone(), s.clone());
        tracing::info!(target = %s.name(), url = %crate::config::redact::url(s.url()), "{} enabled", T::WHAT);
        let thread = std::thread::Builder::new()
            .name(format!("{}:{}", T::KEY.replace('_', "-"), s.name()))
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
        let running = self.running.lock();
        for r in running.iter() {
            r.stop.store(true, Ordering::Relaxed);
        }
        // Each writes its queue file as it stops: wait a little for that,
        // not for a request in flight.
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until && running.iter().any(|r| !r.thread.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Stop a target and wait for it (at most one request's timeout); its
/// figures and what it still held.
fn stop<T: Target>(r: Running<T>) -> (Arc<PushStats>, VecDeque<T::Item>) {
    r.stop.store(true, Ordering::Relaxed);
    let q = r.thread.join().unwrap_or_default();
    (r.stats, q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_holds_at_most_max_points_and_at_least_one_item() {
        assert_eq!(next_batch([1, 1, 1].into_iter(), 2), (2, 2));
        assert_eq!(next_batch([5, 1].into_iter(), 2), (1, 5));
        assert_eq!(next_batch([1, 5].into_iter(), 2), (1, 1));
        assert_eq!(next_batch([2, 3, 4].into_iter(), 100), (3, 9));
        assert_eq!(next_batch(std::iter::empty(), 10), (0, 0));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_is_capped() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().expect("value"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "99999".parse().expect("value"),
        );
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().expect("value"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        assert_eq!(
            httpdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().expect("value"));
        assert_eq!(retry_after(&h), None);
    }
}
