//! Counters and histograms for `GET /metrics`, in Prometheus' text format (version 0.0.4):
//! requests by route and status, inference errors, request latency, and per run of the model
//! the batch size in examples and the number of requests merged into it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const LATENCY_BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// A Prometheus histogram with fixed upper bounds.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// The sum, in millionths (an atomic f64 without a lock).
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add((value * 1e6).round() as u64, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    inference_errors: AtomicU64,
    latency: Histogram,
    batch_size: Histogram,
    batch_requests: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            inference_errors: AtomicU64::new(0),
            latency: Histogram::new(&LATENCY_BUCKETS),
            batch_size: Histogram::new(&BATCH_BUCKETS),
            batch_requests: Histogram::new(&BATCH_BUCKETS),
        }
    }
}

impl Metrics {
    /// One answered request; `seconds` goes to the latency histogram for predictions.
    pub fn observe_request(&self, route: &'static str, status: u16, seconds: f64) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry((route, status)).or_default() += 1;
        if route == "/v1/predict" {
            self.latency.observe(seconds);
        }
    }

    pub fn observe_inference_error(&self) {
        self.inference_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// One run of the model: `examples` in it, merged from `requests` requests.
    pub fn observe_batch(&self, examples: u64, requests: u64) {
        self.batch_size.observe(examples as f64);
        self.batch_requests.observe(requests as f64);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP torchbook_serve_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE torchbook_serve_requests_total counter\n");
        for ((route, status), count) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "torchbook_serve_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}");
        }
        out.push_str("# HELP torchbook_serve_inference_errors_total Model runs that failed in libtorch.\n");
        out.push_str("# TYPE torchbook_serve_inference_errors_total counter\n");
        let _ = writeln!(out, "torchbook_serve_inference_errors_total {}", self.inference_errors.load(Ordering::Relaxed));
        self.latency.write(&mut out, "torchbook_serve_request_duration_seconds", "Time to answer POST /v1/predict, body read to answer.");
        self.batch_size.write(&mut out, "torchbook_serve_batch_size", "Examples per run of the model.");
        self.batch_requests.write(&mut out, "torchbook_serve_batch_requests", "Requests merged into one run of the model.");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_has_cumulative_buckets() {
        let m = Metrics::default();
        m.observe_request("/v1/predict", 200, 0.003);
        m.observe_request("/v1/predict", 400, 0.0004);
        m.observe_batch(3, 2);
        let text = m.render();
        assert!(text.contains("torchbook_serve_requests_total{route=\"/v1/predict\",status=\"200\"} 1"), "{text}");
        assert!(text.contains("torchbook_serve_request_duration_seconds_bucket{le=\"0.0005\"} 1"), "{text}");
        assert!(text.contains("torchbook_serve_request_duration_seconds_bucket{le=\"0.005\"} 2"), "{text}");
        assert!(text.contains("torchbook_serve_request_duration_seconds_count 2"), "{text}");
        assert!(text.contains("torchbook_serve_batch_size_bucket{le=\"2\"} 0\ntorchbook_serve_batch_size_bucket{le=\"4\"} 1"), "{text}");
        assert!(text.contains("torchbook_serve_batch_requests_sum 2"), "{text}");
    }
}
