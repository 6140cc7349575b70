use std::time::Duration;

/// Upper bounds of the latency histogram's buckets; a last, unbounded bucket follows.
pub const LATENCY_BUCKETS: [Duration; 10] = [
    Duration::from_micros(100),
    Duration::from_micros(250),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_micros(2500),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
];

/// Call latencies: `counts[i]` is the number of calls that took at most `LATENCY_BUCKETS[i]`
/// and more than the previous bound (not cumulative); `counts[10]` counts the slower ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Calls per bucket.
    pub counts: [u64; LATENCY_BUCKETS.len() + 1],
    /// The sum of all latencies.
    pub sum: Duration,
}

impl LatencyHistogram {
    pub(crate) fn record(&mut self, latency: Duration) {
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|b| latency <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[bucket] += 1;
        self.sum += latency;
    }
}

/// A snapshot of one plugin's metrics, the same for every kind and both formats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginMetrics {
    /// Calls made to extension points and lifecycle functions, replays excluded.
    pub calls: u64,
    /// Calls that returned any error.
    pub errors: u64,
    /// Calls that trapped (Wasm) or panicked (native); either discards the instance.
    pub traps: u64,
    /// Calls cut off at their deadline (Wasm only).
    pub deadlines_exceeded: u64,
    /// Calls that hit the memory cap (Wasm only).
    pub memory_cap_hits: u64,
    /// Native calls, replays included, that ran past the deadline: native code cannot be
    /// interrupted, so these completed late instead of failing.
    pub native_deadline_overruns: u64,
    /// Failures the plugin's fail-open policy let pass (an admitted request, a plugin skipped
    /// for a scheduling cycle).
    pub failed_open: u64,
    /// Instances created, the first included; more than one means instances were discarded.
    pub instances_created: u64,
    /// Latency of the calls counted in `calls`.
    pub latency: LatencyHistogram,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_the_first_bucket_that_holds_them() {
        let mut h = LatencyHistogram::default();
        h.record(Duration::from_micros(100));
        h.record(Duration::from_micros(101));
        h.record(Duration::from_secs(1));
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[1], 1);
        assert_eq!(h.counts[LATENCY_BUCKETS.len()], 1);
        assert_eq!(h.sum, Duration::from_micros(1_000_201));
    }
}
