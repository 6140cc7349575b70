use keelson_plugin_sdk::{
    DiskVolume, FilterResult, NodeIndex, NodeTable, PluginError, PodInfo, SchedulerPolicy,
};

use crate::reasons::DISK_CONFLICT;
use crate::util::filter_each;

/// `NoDiskConflict`: a node fits unless a disk the pod mounts is already mounted there in a
/// way that conflicts.
///
/// - `gce-pd:` disks conflict unless both uses are read-only.
/// - `rbd:<monitors>:<pool>/<image>` disks conflict when they share any monitor and the same
///   pool and image, as v1 compares them.
/// - Every other kind (`aws-ebs:`, `iscsi:`, ...) conflicts whenever the id is the same,
///   read-only or not.
///
/// Takes no options.
///
/// ```
/// use keelson_plugin_sdk::{fixtures::{node, pod}, testing::SchedulerHarness};
/// use keelson_scheduler_policies::NoDiskConflict;
/// let mut h = SchedulerHarness::<NoDiskConflict>::new("{}").unwrap();
/// h.add_node(node("a").disk_volume("aws-ebs:vol-1", true).build());
/// let d = h.schedule(&pod("p").disk_volume("aws-ebs:vol-1", true).build()).unwrap();
/// assert_eq!(d.chosen, None);
/// ```
#[derive(Debug, Default)]
pub struct NoDiskConflict;

/// Splits an RBD id into its monitors and its `pool/image`; the monitors may hold colons
/// (`host:port`), the pool and image may not, so the last colon separates them.
fn rbd_parts(id: &str) -> Option<(Vec<&str>, &str)> {
    let rest = id.strip_prefix("rbd:")?;
    let (monitors, image) = rest.rsplit_once(':')?;
    Some((monitors.split(',').collect(), image))
}

fn conflicts(wanted: &DiskVolume, used: &DiskVolume) -> bool {
    if wanted.id.starts_with("gce-pd:") {
        return wanted.id == used.id && !(wanted.read_only && used.read_only);
    }
    if let (Some((mons_a, image_a)), Some((mons_b, image_b))) =
        (rbd_parts(&wanted.id), rbd_parts(&used.id))
    {
        return image_a == image_b && mons_a.iter().any(|m| mons_b.contains(m));
    }
    wanted.id == used.id
}

impl SchedulerPolicy for NoDiskConflict {
    const NAME: &'static str = "NoDiskConflict";

    super::no_options!();

    fn filter(
        &mut self,
        _cycle: u64,
        pod: &PodInfo,
        nodes: &NodeTable,
        candidates: &[NodeIndex],
    ) -> Result<Vec<FilterResult>, PluginError> {
        Ok(filter_each(nodes, candidates, |node| {
            let conflict = pod
                .disk_volumes
                .iter()
                .any(|w| node.disk_volumes.iter().any(|u| conflicts(w, u)));
            if conflict {
                FilterResult::Unschedulable(DISK_CONFLICT)
            } else {
                FilterResult::Pass
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use keelson_plugin_sdk::FilterResult::{Pass, Unschedulable};
    use keelson_plugin_sdk::fixtures::{node, pod};

    use super::*;
    use crate::predicates::test_support::verdicts;

    fn run(node_disk: (&str, bool), pod_disk: (&str, bool)) -> FilterResult {
        verdicts::<NoDiskConflict>(
            "{}",
            vec![node("a").disk_volume(node_disk.0, node_disk.1).build()],
            &pod("p").disk_volume(pod_disk.0, pod_disk.1).build(),
        )[0]
    }

    #[test]
    fn gce_pd_conflicts_unless_both_are_read_only() {
        assert_eq!(run(("gce-pd:data", true), ("gce-pd:data", true)), Pass);
        assert_eq!(
            run(("gce-pd:data", false), ("gce-pd:data", true)),
            Unschedulable(DISK_CONFLICT)
        );
        assert_eq!(
            run(("gce-pd:data", true), ("gce-pd:data", false)),
            Unschedulable(DISK_CONFLICT)
        );
        assert_eq!(run(("gce-pd:other", false), ("gce-pd:data", false)), Pass);
    }

    #[test]
    fn ebs_always_conflicts_on_the_same_volume() {
        assert_eq!(
            run(("aws-ebs:vol-1", true), ("aws-ebs:vol-1", true)),
            Unschedulable(DISK_CONFLICT)
        );
        assert_eq!(
            run(("aws-ebs:vol-2", false), ("aws-ebs:vol-1", false)),
            Pass
        );
    }

    #[test]
    fn rbd_conflicts_on_a_shared_monitor_and_the_same_image() {
        assert_eq!(
            run(
                ("rbd:10.0.0.1:6789,10.0.0.2:6789:kube/img", true),
                ("rbd:10.0.0.2:6789:kube/img", true)
            ),
            Unschedulable(DISK_CONFLICT)
        );
        assert_eq!(
            run(
                ("rbd:10.0.0.1:6789:kube/img", false),
                ("rbd:10.0.0.3:6789:kube/img", false)
            ),
            Pass
        );
        assert_eq!(
            run(
                ("rbd:10.0.0.1:6789:kube/a", false),
                ("rbd:10.0.0.1:6789:kube/b", false)
            ),
            Pass
        );
    }

    #[test]
    fn a_pod_without_disks_fits_anywhere() {
        let v = verdicts::<NoDiskConflict>(
            "{}",
            vec![node("a").disk_volume("gce-pd:data", false).build()],
            &pod("p").build(),
        );
        assert_eq!(v, vec![Pass]);
    }

    #[test]
    fn same_name_of_another_kind_does_not_conflict() {
        assert_eq!(run(("aws-ebs:data", false), ("gce-pd:data", false)), Pass);
    }
}
