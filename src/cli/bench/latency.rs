//! Latency recording for the bench: one HdrHistogram of the whole run, plus one per time slot
//! for the latency-over-time plot. Memory is bounded: at most `SLOTS_MAX` slots, and when a
//! run outgrows them, neighbouring slots are merged and the slot length doubles. Each thread
//! records into its own recorder; they are merged once at the end.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, up to a minute; longer ones count as a minute.
const LATENCY_MAX_US: u64 = 60_000_000;
/// Three significant digits for the whole run's percentiles.
const TOTAL_SIGFIG: u8 = 3;
/// Two for each slot: enough for a plot, and a tenth of the memory.
const SLOT_SIGFIG: u8 = 2;
/// Length of a slot before any merging.
const SLOT_START_MS: u64 = 10;
/// Slots kept at most (about 20 KiB each).
const SLOTS_MAX: usize = 300;
/// Quantiles listed for the percentile plot are spaced this finely in "nines" (0 is p0, 1 is
/// p90, 2 is p99, 3 is p99.9).
const NINES_STEP: f64 = 0.1;
/// The percentile list stops at this many nines (p99.999).
const NINES_MAX: f64 = 5.0;

pub struct LatencyRecorder {
    total: Histogram<u64>,
    slot_ms: u64,
    slots: Vec<Histogram<u64>>,
}

impl Default for LatencyRecorder {
    fn default() -> LatencyRecorder {
        LatencyRecorder {
            total: histogram(TOTAL_SIGFIG),
            slot_ms: SLOT_START_MS,
            slots: Vec::new(),
        }
    }
}

fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, sigfig)
        .expect("constant histogram bounds are valid")
}

impl LatencyRecorder {
    /// Records one latency observed `at` (time since the run started).
    pub fn record(&mut self, at: Duration, latency: Duration) {
        let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.total.saturating_record(latency_us.max(1));
        let at_ms = u64::try_from(at.as_millis()).unwrap_or(u64::MAX);
        while at_ms / self.slot_ms >= SLOTS_MAX as u64 {
            self.coarsen();
        }
        let index = (at_ms / self.slot_ms) as usize;
        while self.slots.len() <= index {
            self.slots.push(histogram(SLOT_SIGFIG));
        }
        self.slots[index].saturating_record(latency_us.max(1));
    }

    /// Merges neighbouring slots pairwise and doubles the slot length.
    fn coarsen(&mut self) {
        let mut merged = Vec::with_capacity(self.slots.len().div_ceil(2));
        for pair in self.slots.chunks_mut(2) {
            let mut slot = std::mem::replace(&mut pair[0], histogram(SLOT_SIGFIG));
            if let Some(second) = pair.get(1) {
                add(&mut slot, second);
            }
            merged.push(slot);
        }
        self.slots = merged;
        self.slot_ms *= 2;
    }

    /// Adds another thread's recorder into this one.
    pub fn merge(&mut self, mut other: LatencyRecorder) {
        add(&mut self.total, &other.total);
        while self.slot_ms < other.slot_ms {
            self.coarsen();
        }
        while other.slot_ms < self.slot_ms {
            other.coarsen();
        }
        if self.slots.len() < other.slots.len() {
            self.slots
                .resize_with(other.slots.len(), || histogram(SLOT_SIGFIG));
        }
        for (mine, theirs) in self.slots.iter_mut().zip(&other.slots) {
            add(mine, theirs);
        }
    }

    /// The figures of the whole run and of each slot, in milliseconds, with slot times
    /// counted from `start` (when the load began); `None` when nothing was recorded.
    pub fn summary(&self, start: Duration) -> Option<LatencySummary> {
        let start_s = start.as_secs_f64();
        let total = &self.total;
        if total.is_empty() {
            return None;
        }
        let over_time = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| !slot.is_empty())
            .map(|(index, slot)| LatencySlot {
                t_s: ((index as u64 * self.slot_ms) as f64 / 1000.0 - start_s).max(0.0),
                count: slot.len(),
                p50_ms: ms(slot.value_at_quantile(0.5)),
                p99_ms: ms(slot.value_at_quantile(0.99)),
                max_ms: ms(slot.max()),
            })
            .collect();
        Some(LatencySummary {
            count: total.len(),
            min_ms: ms(total.min()),
            mean_ms: total.mean() / 1000.0,
            p50_ms: ms(total.value_at_quantile(0.5)),
            p90_ms: ms(total.value_at_quantile(0.9)),
            p99_ms: ms(total.value_at_quantile(0.99)),
            p99_9_ms: ms(total.value_at_quantile(0.999)),
            max_ms: ms(total.max()),
            slot_ms: self.slot_ms,
            percentiles: percentiles(total),
            over_time,
        })
    }
}

/// Both histograms have the same bounds, so adding cannot fail.
fn add(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    into.add(from)
        .expect("histograms with the same bounds add up");
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The latency at quantiles evenly spaced in nines, as far as the sample count resolves them,
/// then the maximum.
fn percentiles(total: &Histogram<u64>) -> Vec<PercentilePoint> {
    let resolvable_nines = (total.len() as f64).log10().min(NINES_MAX);
    let mut points = Vec::new();
    let mut step = 0u32;
    loop {
        let nines = f64::from(step) * NINES_STEP;
        if nines > resolvable_nines {
            break;
        }
        let quantile = 1.0 - 10f64.powf(-nines);
        points.push(PercentilePoint {
            percentile: quantile * 100.0,
            latency_ms: ms(total.value_at_quantile(quantile)),
        });
        step += 1;
    }
    points.push(PercentilePoint {
        percentile: 100.0,
        latency_ms: ms(total.max()),
    });
    points
}

/// What the bench reports of one latency: whole-run figures, the percentile curve and the
/// figures per time slot. All times in milliseconds.
#[derive(Debug, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
    pub max_ms: f64,
    /// Length of one `over_time` slot.
    pub slot_ms: u64,
    pub percentiles: Vec<PercentilePoint>,
    pub over_time: Vec<LatencySlot>,
}

#[derive(Debug, Serialize)]
pub struct PercentilePoint {
    pub percentile: f64,
    pub latency_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct LatencySlot {
    /// Start of the slot, seconds since the run started.
    pub t_s: f64,
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn percentiles_are_ordered_and_exact_enough() {
        let mut recorder = LatencyRecorder::default();
        for us in 1..=10_000u64 {
            recorder.record(at_ms(us / 10), Duration::from_micros(us));
        }
        let summary = recorder.summary(Duration::ZERO).expect("recorded");
        assert_eq!(summary.count, 10_000);
        assert!((summary.p50_ms - 5.0).abs() < 0.01, "{}", summary.p50_ms);
        assert!((summary.p99_ms - 9.9).abs() < 0.01, "{}", summary.p99_ms);
        assert!(summary.p50_ms <= summary.p90_ms);
        assert!(summary.p90_ms <= summary.p99_ms);
        assert!(summary.p99_ms <= summary.p99_9_ms);
        assert!(summary.p99_9_ms <= summary.max_ms);
        let curve: Vec<f64> = summary.percentiles.iter().map(|p| p.latency_ms).collect();
        assert!(curve.windows(2).all(|w| w[0] <= w[1]), "{curve:?}");
        assert_eq!(
            summary.percentiles.last().map(|p| p.percentile),
            Some(100.0)
        );
    }

    #[test]
    fn long_runs_coarsen_slots_instead_of_growing() {
        let mut recorder = LatencyRecorder::default();
        for second in 0..1000u64 {
            recorder.record(at_ms(second * 1000), Duration::from_millis(1));
        }
        assert!(recorder.slots.len() <= SLOTS_MAX);
        assert!(recorder.slot_ms > SLOT_START_MS);
        let summary = recorder.summary(Duration::ZERO).expect("recorded");
        let counted: u64 = summary.over_time.iter().map(|s| s.count).sum();
        assert_eq!(counted, 1000);
    }

    #[test]
    fn merging_recorders_of_different_slot_lengths() {
        let mut short = LatencyRecorder::default();
        short.record(at_ms(50), Duration::from_millis(2));
        let mut long = LatencyRecorder::default();
        long.record(at_ms(100_000), Duration::from_millis(4));
        short.merge(long);
        let summary = short.summary(Duration::ZERO).expect("recorded");
        assert_eq!(summary.count, 2);
        assert_eq!(summary.over_time.iter().map(|s| s.count).sum::<u64>(), 2);
        assert!((summary.max_ms - 4.0).abs() < 0.01);
    }

    #[test]
    fn nothing_recorded_is_no_summary() {
        assert!(LatencyRecorder::default().summary(Duration::ZERO).is_none());
    }
}
