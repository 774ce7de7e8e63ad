//! Latency histograms in Prometheus's shape: fixed buckets from 100 µs to 10 s, counted
//! with relaxed atomics in each worker's own set (no lock, no allocation per
//! observation), summed when scraped.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds; one more bucket holds the rest.
pub const BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// One histogram's counts in one counter set.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    /// Counts one observation.
    #[inline]
    pub fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(BOUNDS_US.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

/// The sum of several sets' histograms, as exposed.
#[derive(Debug, Default)]
pub struct Totals {
    buckets: [u64; BOUNDS_US.len() + 1],
    sum_us: u64,
}

impl Totals {
    pub fn add(&mut self, histogram: &Histogram) {
        for (total, count) in self.buckets.iter_mut().zip(&histogram.buckets) {
            *total += count.load(Ordering::Relaxed);
        }
        self.sum_us += histogram.sum_us.load(Ordering::Relaxed);
    }

    /// Writes the `_bucket`, `_sum` and `_count` samples of `name` with `labels`
    /// (`key="value",…` without braces; empty for none).
    pub fn write(&self, out: &mut String, name: &str, labels: &str) {
        let comma = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, count) in self.buckets.iter().enumerate() {
            cumulative += count;
            let le = match BOUNDS_US.get(i) {
                Some(&bound) => format!("{}", bound as f64 / 1e6),
                None => "+Inf".to_string(),
            };
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{comma}le=\"{le}\"}} {cumulative}"
            );
        }
        let braces = |text: &str| {
            if text.is_empty() {
                String::new()
            } else {
                format!("{{{text}}}")
            }
        };
        let _ = writeln!(
            out,
            "{name}_sum{} {}",
            braces(labels),
            self.sum_us as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them_and_add_up() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_micros(101));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut totals = Totals::default();
        totals.add(&h);
        totals.add(&h);
        let mut out = String::new();
        totals.write(&mut out, "x_seconds", "route=\"token\"");
        assert!(
            out.contains("x_seconds_bucket{route=\"token\",le=\"0.0001\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{route=\"token\",le=\"0.00025\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{route=\"token\",le=\"0.0025\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{route=\"token\",le=\"0.005\"} 6\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{route=\"token\",le=\"10\"} 6\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{route=\"token\",le=\"+Inf\"} 8\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_count{route=\"token\"} 8\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_sum{route=\"token\"} 120.006402\n"),
            "{out}"
        );
        let mut bare = String::new();
        totals.write(&mut bare, "y_seconds", "");
        assert!(
            bare.contains("y_seconds_bucket{le=\"+Inf\"} 8\n")
                && bare.contains("y_seconds_count 8\n"),
            "{bare}"
        );
    }
}
