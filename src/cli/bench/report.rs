//! The bench's result: what was asked, what was measured, and how it is shown — a summary on
//! stdout and, with `--json FILE`, the whole result as JSON. MB means 10^6 bytes of payload.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use super::latency::LatencySummary;
use super::progress::ThroughputSample;

#[derive(Debug, Serialize)]
pub struct BenchResult {
    /// `produce`, `consume` or `e2e`.
    pub kind: &'static str,
    pub ringlog_version: &'static str,
    pub librdkafka_version: String,
    pub settings: Settings,
    pub produce: Option<Throughput>,
    pub consume: Option<Throughput>,
    /// From `send` to the delivery report.
    pub produce_latency: Option<LatencySummary>,
    /// From `send` (the time written into the payload) to the consumer receiving it.
    pub end_to_end_latency: Option<LatencySummary>,
    pub throughput_over_time: Vec<ThroughputSample>,
    /// Anything that makes the figures less than they seem (stopped early, undelivered
    /// messages, consumers that did not catch up).
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Settings {
    pub brokers: String,
    pub topic: String,
    pub partitions: usize,
    pub message_size_bytes: Option<usize>,
    pub count: Option<u64>,
    pub duration_s: Option<f64>,
    pub rate_msgs_per_s: Option<f64>,
    pub acks: Option<String>,
    pub compression: Option<String>,
    pub batch_size_bytes: Option<u64>,
    pub linger_ms: Option<u64>,
    pub producers: usize,
    pub consumers: usize,
}

#[derive(Debug, Serialize)]
pub struct Throughput {
    pub messages: u64,
    pub errors: u64,
    pub bytes: u64,
    pub elapsed_s: f64,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
}

impl Throughput {
    pub fn new(messages: u64, errors: u64, bytes: u64, elapsed: Duration) -> Throughput {
        let seconds = elapsed.as_secs_f64();
        let rate = |n: u64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };
        Throughput {
            messages,
            errors,
            bytes,
            elapsed_s: seconds,
            msgs_per_s: rate(messages),
            mb_per_s: rate(bytes) / 1e6,
        }
    }
}

impl BenchResult {
    /// The human summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let s = &self.settings;
        let mut out = format!(
            "bench {}: topic '{}' ({} partition(s))",
            self.kind, s.topic, s.partitions
        );
        if let Some(size) = s.message_size_bytes {
            out.push_str(&format!(", {size}-byte messages"));
        }
        if let (Some(acks), Some(compression)) = (&s.acks, &s.compression) {
            out.push_str(&format!(", acks={acks}, compression={compression}"));
        }
        if let (Some(batch), Some(linger)) = (s.batch_size_bytes, s.linger_ms) {
            out.push_str(&format!(", batch.size={batch}, linger.ms={linger}"));
        }
        if s.producers > 0 {
            out.push_str(&format!(", {} producer(s)", s.producers));
        }
        if s.consumers > 0 {
            out.push_str(&format!(", {} consumer(s)", s.consumers));
        }
        out.push('\n');
        for (name, throughput) in [("produced", &self.produce), ("consumed", &self.consume)] {
            if let Some(t) = throughput {
                out.push_str(&format!(
                    "{name}: {} messages in {:.2} s: {} msgs/s, {:.1} MB/s, {} errors\n",
                    thousands(t.messages),
                    t.elapsed_s,
                    thousands(t.msgs_per_s.round() as u64),
                    t.mb_per_s,
                    thousands(t.errors)
                ));
            }
        }
        for (name, latency) in [
            ("produce latency (send to ack)", &self.produce_latency),
            (
                "end-to-end latency (send to receive)",
                &self.end_to_end_latency,
            ),
        ] {
            if let Some(l) = latency {
                out.push_str(&format!(
                    "{name}: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n",
                    millis(l.p50_ms),
                    millis(l.p90_ms),
                    millis(l.p99_ms),
                    millis(l.p99_9_ms),
                    millis(l.max_ms)
                ));
            }
        }
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self).context("encoding the result")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A latency with as many decimals as it needs to show about three significant digits.
fn millis(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.3} ms")
    } else if ms < 100.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_easily() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(millis(0.1234), "0.123 ms");
        assert_eq!(millis(12.345), "12.35 ms");
        assert_eq!(millis(1234.4), "1234 ms");
    }

    #[test]
    fn rates_come_from_counts_and_time() {
        let t = Throughput::new(1000, 0, 100_000, Duration::from_millis(500));
        assert_eq!(t.msgs_per_s, 2000.0);
        assert_eq!(t.mb_per_s, 0.2);
        assert_eq!(Throughput::new(5, 0, 5, Duration::ZERO).msgs_per_s, 0.0);
    }
}
