use keelson_plugin_sdk::{
    FilterResult, NodeIndex, NodeTable, PluginError, PodInfo, SchedulerPolicy,
};

use crate::reasons::PORTS;
use crate::util::filter_each;

/// `PodFitsHostPorts` (v1.0 name `PodFitsPorts`): a node fits when none of the pod's non-zero
/// host ports is already used there.
///
/// As in v1, ports are compared by number alone, whatever their protocol: a pod wanting UDP
/// 53 does not fit beside one bound to TCP 53. This is stricter than the contract's note on
/// `host-port`, on purpose, to keep v1's behaviour.
///
/// Takes no options.
///
/// ```
/// use keelson_plugin_sdk::{fixtures::{node, pod}, testing::SchedulerHarness, FilterResult};
/// use keelson_scheduler_policies::PodFitsHostPorts;
/// let mut h = SchedulerHarness::<PodFitsHostPorts>::new("{}").unwrap();
/// h.add_node(node("a").used_port(80).build());
/// let d = h.schedule(&pod("web").host_port(80).build()).unwrap();
/// assert_eq!(d.chosen, None);
/// ```
#[derive(Debug, Default)]
pub struct PodFitsHostPorts;

impl SchedulerPolicy for PodFitsHostPorts {
    const NAME: &'static str = "PodFitsHostPorts";

    super::no_options!();

    fn filter(
        &mut self,
        _cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<FilterResult>, PluginError> {
        Ok(filter_each(nodes, candidates, |node| {
            let taken = pod
                .host_ports
                .iter()
                .filter(|p| p.port != 0)
                .any(|p| node.used_ports.iter().any(|u| u.port == p.port));
            if taken {
                FilterResult::Unschedulable(PORTS)
            } else {
                FilterResult::Pass
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::fixtures::{node, pod};
    use keelson_plugin_sdk::{FilterResult, HostPort, Protocol};

    use super::*;
    use crate::predicates::test_support::verdicts;

    #[test]
    fn a_used_port_rejects_the_node_and_a_free_one_passes() {
        let v = verdicts::<PodFitsHostPorts>(
            "{}",
            vec![
                node("a").used_port(80).build(),
                node("b").used_port(81).build(),
            ],
            &pod("web").host_port(80).build(),
        );
        assert_eq!(
            v,
            vec![FilterResult::Unschedulable(PORTS), FilterResult::Pass]
        );
    }

    #[test]
    fn a_pod_without_host_ports_fits_anywhere() {
        let v = verdicts::<PodFitsHostPorts>(
            "{}",
            vec![node("a").used_port(80).build()],
            &pod("web").build(),
        );
        assert_eq!(v, vec![FilterResult::Pass]);
    }

    #[test]
    fn port_zero_is_not_a_host_port() {
        let mut p = pod("web").build();
        p.host_ports.push(HostPort {
            port: 0,
            protocol: Protocol::Tcp,
        });
        let mut n = node("a").build();
        n.used_ports.push(HostPort {
            port: 0,
            protocol: Protocol::Tcp,
        });
        assert_eq!(
            verdicts::<PodFitsHostPorts>("{}", vec![n], &p),
            vec![FilterResult::Pass]
        );
    }

    #[test]
    fn ports_conflict_whatever_the_protocol_as_in_v1() {
        let mut p = pod("dns").build();
        p.host_ports.push(HostPort {
            port: 53,
            protocol: Protocol::Udp,
        });
        let v = verdicts::<PodFitsHostPorts>("{}", vec![node("a").used_port(53).build()], &p);
        assert_eq!(v, vec![FilterResult::Unschedulable(PORTS)]);
    }

    #[test]
    fn options_are_rejected() {
        let Err(e) = keelson_plugin_sdk::testing::SchedulerHarness::<PodFitsHostPorts>::new(
            r#"{"ports":[1]}"#,
        ) else {
            panic!("accepted");
        };
        assert_eq!(e.kind, keelson_plugin_sdk::ErrorKind::InvalidConfig);
    }
}
