//! Pushing samples to Prometheus remote-write receivers (Prometheus,
//! Mimir, Thanos Receive, VictoriaMetrics, Grafana Cloud).
//!
//! Protocol 1.0: a snappy-compressed protobuf `WriteRequest` per POST.
//! At each interval the agent's exposition is turned into samples with one
//! timestamp and queued; the queue is bounded (oldest samples are dropped
//! past `max_queue_samples`, and counted). Requests are retried with
//! exponential back-off on 5xx, 429 and connection errors (honouring a
//! `Retry-After`), and never on other 4xx (the receiver refused the data;
//! retrying would not help).
//!
//! The queue, the send loop, retries and reloads are shared with OTLP:
//! see [`crate::push`].
use crate::agent::Agent;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

impl crate::push::Target for RemoteWriteSettings {
    type Item = Series;
    const WHAT: &'static str = "remote write";
    const KEY: &'static str = "remote_write";
    fn name(&self) -> &str {
        &self.name
    }
    fn url(&self) -> &str {
        &self.url
    }
    fn interval(&self) -> Duration {
        self.interval
    }
    fn timeout(&self) -> Duration {
        self.timeout
    }
    fn ca_file(&self) -> Option<&std::path::Path> {
        self.ca_file.as_deref()
    }
    fn headers(&self) -> &std::collections::BTreeMap<String, String> {
        &self.headers
    }
    fn auth(&self) -> Option<&crate::config::Auth> {
        self.auth.as_ref()
    }
    fn max_queue(&self) -> usize {
        self.max_queue_samples
    }
    fn max_per_send(&self) -> usize {
        self.max_samples_per_send
    }
    fn points(item: &Series) -> usize {
        item.samples.len()
    }
    fn collect(&self, agent: &Agent, now: SystemTime) -> Vec<Series> {
        let ts = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        collect(agent, self, ts)
    }
    fn encode(&self, batch: &[Series]) -> Result<crate::push::Body, String> {
        let body = snap::raw::Encoder::new()
            .compress_vec(&encode_write_request(batch))
            .map_err(|e| format!("snappy: {e}"))?;
        Ok((
            body,
            vec![
                ("Content-Encoding", "snappy".into()),
                ("Content-Type", "application/x-protobuf".into()),
                ("X-Prometheus-Remote-Write-Version", "0.1.0".into()),
            ],
        ))
    }
    /// JSON: `[[labels, [[value bits, ms], ...]], ...]`, each value as the
    /// bits of its `f64` so that NaN (a staleness marker) and every other
    /// value come back exactly.
    fn save_items(items: &std::collections::VecDeque<Series>) -> Vec<u8> {
        type Saved<'a> = Vec<(&'a [(String, String)], Vec<(u64, i64)>)>;
        let v: Saved = items
            .iter()
            .map(|s| {
                let samples = s.samples.iter().map(|(v, t)| (v.to_bits(), *t)).collect();
                (s.labels.as_slice(), samples)
            })
            .collect();
        serde_json::to_vec(&v).unwrap_or_default()
    }
    fn load_items(bytes: &[u8]) -> Result<Vec<Series>, String> {
        type Saved = Vec<(Vec<(String, String)>, Vec<(u64, i64)>)>;
        let v: Saved = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Ok(v.into_iter()
            .map(|(labels, samples)| Series {
                labels,
                samples: samples
                    .into_iter()
                    .map(|(b, t)| (f64::from_bits(b), t))
                    .collect(),
            })
            .collect())
    }
    fn of(cfg: &crate::config::AgentSettings) -> &[Self] {
        &cfg.remote_write
    }
    fn publish(agent: &Agent, figures: Vec<(String, Arc<RemoteWriteStats>)>) {
        *agent.remote_write.lock() = figures;
    }
}

/// Build a target's HTTP client; fails naming the `ca_file`.
pub fn client(s: &RemoteWriteSettings) -> Result<reqwest::blocking::Client, String> {
    crate::push::client(s)
}

/// Least time between two log lines about refused remote-write requests
/// of one target.
pub const REFUSAL_LOG_EVERY: Duration = crate::push::REFUSAL_LOG_EVERY;

/// Samples waiting for a target; handed from a target's old settings to
/// its new ones at a reload when the receiver URL stays the same.
pub type Queue = std::collections::VecDeque<Series>;

/// The running remote-write targets, changed by reloads.
pub type Writers = crate::push::Writers<RemoteWriteSettings>;

/// The remote-write targets a configuration asks for.
pub type WritersPlan = crate::push::WritersPlan<RemoteWriteSettings>;
