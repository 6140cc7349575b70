//! A scheduler policy that exports only `score` beside the required base, written against the
//! WIT directly: the SDK's export macro always exports every extension point, and the host's
//! tests need a component that does not, to check that the host calls only what is exported.
//! It scores a node by its index, so a test can tell its scores apart.

wit_bindgen::generate!({
    path: "../../../wit",
    inline: "
        package keelson-test:score-only;

        world score-only {
            include keelson:plugin/scheduler-policy-base@0.1.0;
            export keelson:plugin/score@0.1.0;
        }
    ",
    world: "keelson-test:score-only/score-only",
    generate_all,
});

use exports::keelson::plugin::{lifecycle, scheduler, score};
use keelson::plugin::scheduler_types::{CycleOutcome, NodeInfo, PodInfo};
use keelson::plugin::types::PluginError;

struct ScoreOnly;

impl lifecycle::Guest for ScoreOnly {
    fn name() -> String {
        "score-only".into()
    }

    fn configure(_options: String) -> Result<(), PluginError> {
        Ok(())
    }
}

impl scheduler::Guest for ScoreOnly {
    fn node_added(_index: u32, _node: NodeInfo) {}
    fn node_updated(_index: u32, _node: NodeInfo) {}
    fn node_removed(_index: u32) {}
    fn end_cycle(_cycle: u64, _outcome: CycleOutcome) {}
}

impl score::Guest for ScoreOnly {
    fn score(_cycle: u64, _pod: PodInfo, candidates: Vec<u32>) -> Result<Vec<i64>, PluginError> {
        Ok(candidates.iter().map(|&i| i64::from(i.min(100))).collect())
    }
}

export!(ScoreOnly);
