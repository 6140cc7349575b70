//! A scheduler policy that misbehaves on purpose, for the plugin host's tests: its `score`
//! loops forever, allocates without bound or panics, as its options say. Every other call
//! behaves, so a test can check that the host serves the next call on a fresh instance.

use keelson_plugin_sdk::{
    ErrorKind, NodeIndex, NodeTable, PluginError, PodInfo, SchedulerPolicy,
    export_scheduler_policy, plugin_error,
};

enum Mode {
    Loop,
    Allocate,
    Panic,
}

struct Misbehaving {
    mode: Mode,
}

impl SchedulerPolicy for Misbehaving {
    const NAME: &'static str = "misbehaving";

    fn configure(options: &str) -> Result<Self, PluginError> {
        // Options are `"loop"`, `"allocate"` or `"panic"` (a JSON string).
        let mode = match options.trim() {
            "\"loop\"" => Mode::Loop,
            "\"allocate\"" => Mode::Allocate,
            "\"panic\"" => Mode::Panic,
            other => {
                return Err(plugin_error(
                    ErrorKind::InvalidConfig,
                    format!("options must be \"loop\", \"allocate\" or \"panic\", not {other}"),
                ));
            }
        };
        Ok(Misbehaving { mode })
    }

    fn score(
        &mut self,
        _cycle: u64,
        _pod: &PodInfo,
        _nodes: &NodeTable,
        _candidates: &[NodeIndex],
    ) -> Result<Vec<i64>, PluginError> {
        // Every mode diverges, so the match never yields a value.
        match self.mode {
            Mode::Loop => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Mode::Allocate => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Mode::Panic => panic!("misbehaving plugin panics as configured"),
        }
    }
}

export_scheduler_policy!(Misbehaving, exports: [score]);
