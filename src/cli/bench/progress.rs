//! The bench's live progress line (indicatif, on stderr, drawn only on a terminal) and the
//! throughput samples taken at the same ticks for the result's throughput-over-time. Samples
//! are bounded: past `SAMPLES_MAX`, every other one is dropped and the spacing doubles.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::report::thousands;

/// Samples kept at most.
const SAMPLES_MAX: usize = 2000;
/// Redraws per second at most.
const REFRESH_HZ: u8 = 10;

/// Cumulative counts at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    /// Messages whose delivery was acknowledged.
    pub produced: u64,
    pub consumed: u64,
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Duration,
    totals: Totals,
}

/// Messages per second between two samples, at the later one's time.
#[derive(Debug, Serialize)]
pub struct ThroughputSample {
    pub t_s: f64,
    pub produced_msgs_per_s: f64,
    pub consumed_msgs_per_s: f64,
}

pub struct Progress {
    bar: ProgressBar,
    samples: Vec<Sample>,
    sample_every: Duration,
}

impl Progress {
    /// `expected` is the message count the bar fills to, when the run has one.
    pub fn new(expected: Option<u64>, sample_every: Duration) -> Progress {
        let target = ProgressDrawTarget::stderr_with_hz(REFRESH_HZ);
        let bar = match expected {
            Some(total) => {
                let bar = ProgressBar::with_draw_target(Some(total), target);
                if let Ok(style) =
                    ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent:>3}% {msg}")
                {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar
            }
            None => {
                let bar = ProgressBar::with_draw_target(None, target);
                if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                {
                    bar.set_style(style);
                }
                bar
            }
        };
        Progress {
            bar,
            samples: vec![Sample {
                at: Duration::ZERO,
                totals: Totals::default(),
            }],
            sample_every,
        }
    }

    /// Takes a sample when one is due and redraws the line. `position` is what the bar
    /// shows: messages produced, or consumed in a consume-only run.
    pub fn update(&mut self, at: Duration, totals: Totals, position: u64) {
        let last = self.samples.last().copied().unwrap_or(Sample {
            at: Duration::ZERO,
            totals: Totals::default(),
        });
        if at < last.at + self.sample_every {
            return;
        }
        let seconds = (at - last.at).as_secs_f64();
        let produced_rate = totals.produced.saturating_sub(last.totals.produced) as f64 / seconds;
        let consumed_rate = totals.consumed.saturating_sub(last.totals.consumed) as f64 / seconds;
        self.samples.push(Sample { at, totals });
        if self.samples.len() > SAMPLES_MAX {
            self.thin();
        }
        let mut message = Vec::new();
        if totals.produced > 0 || produced_rate > 0.0 {
            message.push(format!(
                "produced {} ({} msg/s)",
                thousands(totals.produced),
                thousands(produced_rate as u64)
            ));
        }
        if totals.consumed > 0 || consumed_rate > 0.0 {
            message.push(format!(
                "consumed {} ({} msg/s)",
                thousands(totals.consumed),
                thousands(consumed_rate as u64)
            ));
        }
        self.bar.set_position(position);
        self.bar.set_message(message.join("  "));
    }

    /// Keeps every other sample (the first and last always) and doubles the spacing.
    fn thin(&mut self) {
        let last = self.samples.last().copied();
        let mut index = 0;
        self.samples.retain(|_| {
            index += 1;
            index % 2 == 1
        });
        if let Some(last) = last {
            if self.samples.last().map(|s| s.at) != Some(last.at) {
                self.samples.push(last);
            }
        }
        self.sample_every *= 2;
    }

    /// Clears the line; returns the throughput between successive samples, the last one
    /// taken now (`at`, with the final `totals`).
    pub fn finish(mut self, at: Duration, totals: Totals) -> Vec<ThroughputSample> {
        self.bar.finish_and_clear();
        if self.samples.last().is_some_and(|last| at > last.at) {
            self.samples.push(Sample { at, totals });
        }
        self.samples
            .windows(2)
            .map(|pair| {
                let seconds = (pair[1].at - pair[0].at).as_secs_f64().max(f64::EPSILON);
                let delta = |f: fn(&Totals) -> u64| {
                    f(&pair[1].totals).saturating_sub(f(&pair[0].totals)) as f64 / seconds
                };
                ThroughputSample {
                    t_s: pair[1].at.as_secs_f64(),
                    produced_msgs_per_s: delta(|t| t.produced),
                    consumed_msgs_per_s: delta(|t| t.consumed),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_give_rates_and_stay_bounded() {
        let mut progress = Progress::new(None, Duration::from_millis(100));
        for tick in 1..=5000u64 {
            let totals = Totals {
                produced: tick * 100,
                consumed: tick * 50,
            };
            progress.update(Duration::from_millis(tick * 100), totals, totals.produced);
        }
        let last = Totals {
            produced: 500_000,
            consumed: 250_000,
        };
        let samples = progress.finish(Duration::from_millis(500_000), last);
        assert!(samples.len() <= SAMPLES_MAX);
        for sample in &samples {
            assert!(
                (sample.produced_msgs_per_s - 1000.0).abs() < 1e-6,
                "{sample:?}"
            );
            assert!(
                (sample.consumed_msgs_per_s - 500.0).abs() < 1e-6,
                "{sample:?}"
            );
        }
    }
}
