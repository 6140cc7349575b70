//! Helpers shared by the policies: label lookups, option parsing and toleration matching.

use keelson_plugin_sdk::{
    FilterResult, NodeIndex, NodeInfo, NodeTable, PodInfo, Taint, TaintEffect, Toleration,
    TolerationOperator,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::reasons::UNKNOWN_NODE;
use crate::{Error, Result};

/// The value of label `key`, if present.
pub(crate) fn label<'a>(labels: &'a [(String, String)], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The node's non-zero CPU and memory requests with `pod`'s added: what the v1 resource
/// priorities weigh against the node's allocatable.
pub(crate) fn non_zero_with_pod(node: &NodeInfo, pod: &PodInfo) -> (u64, u64) {
    (
        node.non_zero_requested
            .cpu
            .saturating_add(pod.non_zero_requests.cpu),
        node.non_zero_requested
            .memory
            .saturating_add(pod.non_zero_requests.memory),
    )
}

/// Parses a policy's options; blank text counts as `{}` so a policy without options never
/// fails on it.
pub(crate) fn parse_options<T: DeserializeOwned>(policy: &'static str, options: &str) -> Result<T> {
    let text = if options.trim().is_empty() {
        "{}"
    } else {
        options
    };
    serde_json::from_str(text).map_err(|source| Error::Options { policy, source })
}

/// The options of a policy that takes none: any other key is a mistake worth reporting.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoOptions {}

/// Rejects empty label names, which would silently match nothing or everything.
pub(crate) fn check_labels<'a>(
    policy: &'static str,
    labels: impl IntoIterator<Item = &'a String>,
) -> Result<()> {
    if labels.into_iter().any(String::is_empty) {
        return Err(Error::EmptyLabel { policy });
    }
    Ok(())
}

/// Runs `fits` over each candidate; a candidate missing from the table is rejected rather
/// than trusted, since nothing is known about it.
pub(crate) fn filter_each(
    nodes: &NodeTable,
    candidates: &[NodeIndex],
    mut fits: impl FnMut(&NodeInfo) -> FilterResult,
) -> Vec<FilterResult> {
    candidates
        .iter()
        .map(|&i| match nodes.get(i) {
            Some(node) => fits(node),
            None => FilterResult::Unresolvable(UNKNOWN_NODE),
        })
        .collect()
}

/// Whether `toleration` tolerates `taint`, as Kubernetes' `ToleratesTaint` decides: the
/// effect is unset or equal, the key is unset (or empty) or equal, then `Exists` matches any
/// value and `Equal` needs the same value. (An empty key with `Equal` fails API validation, so
/// only `Exists` with an empty key, "tolerate everything", is seen in practice.)
pub(crate) fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration.effect.is_some_and(|e| e != taint.effect) {
        return false;
    }
    if toleration
        .key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match toleration.operator {
        TolerationOperator::Exists => true,
        TolerationOperator::Equal => toleration.value == taint.value,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub(crate) fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The taint effects that keep a pod off a node (PreferNoSchedule only lowers its score).
pub(crate) fn is_hard(effect: TaintEffect) -> bool {
    matches!(effect, TaintEffect::NoSchedule | TaintEffect::NoExecute)
}

/// The number of pods of `group` on `node`.
pub(crate) fn group_count(node: &NodeInfo, group: u32) -> u64 {
    node.group_counts
        .iter()
        .find(|g| g.group == group)
        .map_or(0, |g| u64::from(g.count))
}

/// The v1 spreading formula, `int(10 * (max - count) / max)` computed in `float32` as v1
/// does (so truncation matches), scaled to the contract's 0..=100; 10 (100) when `max` is 0.
pub(crate) fn spread_score(max: u64, count: u64) -> i64 {
    if max == 0 {
        return 100;
    }
    let remaining = max.saturating_sub(count);
    let v1 = 10.0_f32 * (remaining as f32 / max as f32);
    (v1 as i64) * 10
}
