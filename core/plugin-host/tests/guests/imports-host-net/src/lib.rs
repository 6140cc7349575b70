//! A scheduler policy that also imports `host-net`, which the scheduler-policy world does not
//! grant: the host must refuse to load it, naming the import.

wit_bindgen::generate!({
    path: "../../../../../wit",
    inline: "
        package keelson-test:imports-host-net;

        world grabby {
            include keelson:plugin/scheduler-policy-base@0.1.0;
            import keelson:plugin/host-net@0.1.0;
            export keelson:plugin/score@0.1.0;
        }
    ",
    world: "keelson-test:imports-host-net/grabby",
    generate_all,
});

use exports::keelson::plugin::{lifecycle, scheduler, score};
use keelson::plugin::scheduler_types::{CycleOutcome, NodeInfo, PodInfo};
use keelson::plugin::types::{ErrorKind, PluginError};

struct Grabby;

impl lifecycle::Guest for Grabby {
    fn name() -> String {
        "imports-host-net".into()
    }

    fn configure(_options: String) -> Result<(), PluginError> {
        // Using the import is what keeps it in the component.
        keelson::plugin::host_net::node_pod_cidrs()
            .map(|_| ())
            .map_err(|_| PluginError {
                kind: ErrorKind::Internal,
                message: "no cidrs".into(),
            })
    }
}

impl scheduler::Guest for Grabby {
    fn node_added(_index: u32, _node: NodeInfo) {}
    fn node_updated(_index: u32, _node: NodeInfo) {}
    fn node_removed(_index: u32) {}
    fn end_cycle(_cycle: u64, _outcome: CycleOutcome) {}
}

impl score::Guest for Grabby {
    fn score(_cycle: u64, _pod: PodInfo, candidates: Vec<u32>) -> Result<Vec<i64>, PluginError> {
        Ok(vec![0; candidates.len()])
    }
}

export!(Grabby);
