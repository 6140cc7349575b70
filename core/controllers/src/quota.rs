//! The resource quota controller (kube-controller-manager's `resourcequota`): keeps each
//! ResourceQuota's `status.used` equal to what its namespace holds.
//!
//! A quota's key is queued when its spec changes and whenever an object it counts changes in
//! its namespace (pods, services, replication controllers, secrets, config maps, quotas), and
//! every quota is queued again every five minutes (Kubernetes' resync), which also lets go
//! of pods stuck terminating past their grace period. Reconciling counts from the caches and
//! writes `status` (`hard` = `spec.hard`, `used` for each resource in `hard`) through the
//! status subresource, only when it changed.
//!
//! Usage follows Kubernetes' evaluators: `pods` and compute resources (`cpu`, `requests.*`,
//! `limits.*`, ...) count pods that are not terminal; `count/pods` counts them all; services
//! count their node ports and load balancers; sums keep the first quantity's format and are
//! printed in canonical form (`1Gi` + `512Mi` is `1536Mi`). Resources of kinds Keelson does
//! not serve are 0 (`persistentvolumeclaims`, `requests.storage`); resources no evaluator
//! knows keep whatever `used` said before, as in Kubernetes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ResourceQuota, ResourceQuotaStatus, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KQuantity;
use keelson_api::object::quantity::{self, Format};
use keelson_client::ObjectKey;
use kube::Api;
use kube::api::PostParams;

use crate::manager::{Context, Task};
use crate::queue::{Queue, Requeue, run_workers};
use crate::{Result, is_conflict, is_not_found};

/// How often every quota is recomputed regardless of events (Kubernetes' default).
const RESYNC: Duration = Duration::from_secs(300);
/// Workers (Kubernetes' `--concurrent-resource-quota-syncs` default).
const WORKERS: usize = 5;
/// How often a status write that lost a race is retried with fresh state.
const CONFLICT_RETRIES: usize = 3;

/// Registers the handlers and returns the workers and the resync timer.
pub(crate) fn start(ctx: &Arc<Context>) -> Result<Vec<Task>> {
    let queue: Queue<ObjectKey> = Queue::new();
    let inf = &ctx.informers;

    // Any change to a counted object: every quota of its namespace.
    macro_rules! requeue_namespace_on_change {
        ($informer:ident, $relevant:expr) => {{
            let q = queue.clone();
            let quotas = inf.resource_quotas.clone();
            let relevant = $relevant;
            inf.$informer.on_change(move |old, new| {
                if let (Some(o), Some(n)) = (old, new)
                    && !relevant(o.as_ref(), n.as_ref())
                {
                    return;
                }
                let ns = new.or(old).and_then(|o| o.metadata.namespace.clone());
                if let Some(ns) = ns {
                    for quota in quotas.list_namespace(&ns) {
                        q.add(ObjectKey::of(quota.as_ref()));
                    }
                }
            });
        }};
    }
    requeue_namespace_on_change!(pods, pod_usage_changed);
    requeue_namespace_on_change!(services, |o: &Service, n: &Service| o.spec != n.spec);
    requeue_namespace_on_change!(replication_controllers, |_: &_, _: &_| false);
    requeue_namespace_on_change!(secrets, |_: &_, _: &_| false);
    requeue_namespace_on_change!(config_maps, |_: &_, _: &_| false);

    // Quotas: a new quota or a changed spec is recomputed; any quota coming or going changes
    // the `resourcequotas` count of its namespace.
    let q = queue.clone();
    let quotas = inf.resource_quotas.clone();
    inf.resource_quotas
        .on_change(move |old, new| match (old, new) {
            (Some(o), Some(n)) => {
                let hard = n.spec.as_ref().and_then(|s| s.hard.as_ref());
                let status_hard = n.status.as_ref().and_then(|s| s.hard.as_ref());
                if o.spec != n.spec || hard != status_hard {
                    q.add(ObjectKey::of(n.as_ref()));
                }
            }
            (None, Some(obj)) | (Some(obj), None) => {
                let ns = obj.metadata.namespace.clone().unwrap_or_default();
                for quota in quotas.list_namespace(&ns) {
                    q.add(ObjectKey::of(quota.as_ref()));
                }
                if new.is_some() {
                    q.add(ObjectKey::of(obj.as_ref()));
                }
            }
            (None, None) => {}
        });

    let resync_queue = queue.clone();
    let quotas = inf.resource_quotas.clone();
    let resync: Task = Box::pin(async move {
        loop {
            tokio::time::sleep(RESYNC).await;
            for quota in quotas.list() {
                resync_queue.add(ObjectKey::of(quota.as_ref()));
            }
        }
    });
    let ctx2 = ctx.clone();
    let workers: Task = Box::pin(run_workers(
        "resourcequota",
        queue,
        WORKERS,
        move |key: ObjectKey| {
            let ctx = ctx2.clone();
            async move { sync(&ctx, &key).await }
        },
    ));
    Ok(vec![workers, resync])
}

/// Whether a pod update can change what it uses.
fn pod_usage_changed(old: &Pod, new: &Pod) -> bool {
    let view = |p: &Pod| {
        (
            p.status.as_ref().and_then(|s| s.phase.clone()),
            p.metadata.deletion_timestamp.clone(),
            p.metadata.deletion_grace_period_seconds,
            p.spec.as_ref().map(|s| {
                (
                    s.containers
                        .iter()
                        .map(|c| c.resources.clone())
                        .collect::<Vec<_>>(),
                    s.init_containers
                        .iter()
                        .flatten()
                        .map(|c| c.resources.clone())
                        .collect::<Vec<_>>(),
                    s.overhead.clone(),
                    s.active_deadline_seconds,
                    s.priority_class_name.clone(),
                )
            }),
            p.status.as_ref().and_then(|s| s.qos_class.clone()),
        )
    };
    view(old) != view(new)
}

/// Recomputes the quota `key` and writes its status if it changed.
async fn sync(ctx: &Context, key: &ObjectKey) -> Result<Requeue> {
    let Some(quota) = ctx.informers.resource_quotas.get(&key.namespace, &key.name) else {
        return Ok(Requeue::No);
    };
    let inf = &ctx.informers;
    let pods = inf.pods.list_namespace(&key.namespace);
    let services = inf.services.list_namespace(&key.namespace);
    let objects = Objects {
        pods: pods.iter().map(|p| p.as_ref()).collect(),
        services: services.iter().map(|s| s.as_ref()).collect(),
        replication_controllers: inf
            .replication_controllers
            .list_namespace(&key.namespace)
            .len(),
        secrets: inf.secrets.list_namespace(&key.namespace).len(),
        config_maps: inf.config_maps.list_namespace(&key.namespace).len(),
        resource_quotas: inf.resource_quotas.list_namespace(&key.namespace).len(),
        now: jiff::Timestamp::now(),
    };
    let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let mut current = quota.as_ref().clone();
    for attempt in 0..CONFLICT_RETRIES {
        let Some(status) = new_status(&current, &objects) else {
            return Ok(Requeue::No);
        };
        let mut updated = current.clone();
        updated.status = Some(status);
        match api
            .replace_status(&key.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {
                tracing::debug!(quota = %key, "quota usage updated");
                return Ok(Requeue::No);
            }
            Err(e) if is_not_found(&e) => return Ok(Requeue::No),
            Err(e) if is_conflict(&e) && attempt + 1 < CONFLICT_RETRIES => {
                current = match api.get(&key.name).await {
                    Ok(q) => q,
                    Err(e) if is_not_found(&e) => return Ok(Requeue::No),
                    Err(e) => return Err(e.into()),
                };
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Requeue::No)
}

/// What one namespace holds, as the evaluators need it.
pub(crate) struct Objects<'a> {
    pub pods: Vec<&'a Pod>,
    pub services: Vec<&'a Service>,
    pub replication_controllers: usize,
    pub secrets: usize,
    pub config_maps: usize,
    pub resource_quotas: usize,
    /// For pods stuck terminating past their grace period, which no longer count.
    pub now: jiff::Timestamp,
}

/// The status `quota` should have, or `None` when it has it already.
pub(crate) fn new_status(
    quota: &ResourceQuota,
    objects: &Objects<'_>,
) -> Option<ResourceQuotaStatus> {
    let hard = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let status = quota.status.clone().unwrap_or_default();
    let old_used = status.used.clone().unwrap_or_default();
    let scopes = Scopes::of(quota);
    // Past observations are kept for resources nobody evaluates (as Kubernetes does).
    let mut used: BTreeMap<String, KQuantity> = old_used
        .iter()
        .filter(|(k, _)| hard.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for name in hard.keys() {
        if let Some(q) = usage(name, &scopes, objects) {
            used.insert(name.clone(), KQuantity(q));
        }
    }
    let dirty = status.hard.is_none()
        || status.used.is_none()
        || status.hard.as_ref() != Some(&hard)
        || !equal_quantities(&used, &old_used);
    dirty.then_some(ResourceQuotaStatus {
        hard: Some(hard),
        used: Some(used),
    })
}

/// Kubernetes' `quota.Equals`: the same names with the same values (whatever their format).
fn equal_quantities(a: &BTreeMap<String, KQuantity>, b: &BTreeMap<String, KQuantity>) -> bool {
    a.len() == b.len()
        && a.iter().all(|(k, v)| {
            b.get(k)
                .is_some_and(|w| match (quantity::parse(&v.0), quantity::parse(&w.0)) {
                    (Ok(x), Ok(y)) => x.millis == y.millis,
                    _ => v.0 == w.0,
                })
        })
}

/// A running sum that takes the format of its first non-zero term, like `Quantity.Add`.
#[derive(Clone, Copy, Debug)]
struct Sum {
    millis: i128,
    format: Format,
}

impl Default for Sum {
    fn default() -> Self {
        Sum {
            millis: 0,
            format: Format::DecimalSi,
        }
    }
}

impl Sum {
    fn add(&mut self, other: Sum) {
        if self.millis == 0 {
            self.format = other.format;
        }
        self.millis = self.millis.saturating_add(other.millis);
    }

    fn max(&mut self, other: Sum) {
        if other.millis > self.millis {
            *self = other;
        }
    }

    fn count(n: usize) -> Sum {
        Sum {
            millis: i128::try_from(n)
                .unwrap_or(i128::MAX / 1000)
                .saturating_mul(1000),
            format: Format::DecimalSi,
        }
    }

    fn parse(q: &KQuantity) -> Option<Sum> {
        quantity::parse(&q.0).ok().map(|q| Sum {
            millis: q.millis,
            format: q.format,
        })
    }

    fn canonical(&self) -> String {
        quantity::format_millis(self.millis, self.format)
    }
}

/// Which pods a scoped quota tracks (`spec.scopes` and `spec.scopeSelector`).
#[derive(Debug, Default)]
struct Scopes {
    /// (scope name, operator, values).
    terms: Vec<(String, String, Vec<String>)>,
}

impl Scopes {
    fn of(quota: &ResourceQuota) -> Scopes {
        let spec = quota.spec.as_ref();
        let mut terms: Vec<(String, String, Vec<String>)> = spec
            .and_then(|s| s.scopes.clone())
            .into_iter()
            .flatten()
            .map(|s| (s, "Exists".to_string(), Vec::new()))
            .collect();
        for e in spec
            .and_then(|s| s.scope_selector.as_ref())
            .and_then(|s| s.match_expressions.clone())
            .into_iter()
            .flatten()
        {
            terms.push((e.scope_name, e.operator, e.values.unwrap_or_default()));
        }
        Scopes { terms }
    }

    fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether `pod` is in every scope.
    fn matches_pod(&self, pod: &Pod) -> bool {
        self.terms.iter().all(|(scope, op, values)| {
            let spec = pod.spec.as_ref();
            match scope.as_str() {
                "Terminating" => spec.and_then(|s| s.active_deadline_seconds).is_some(),
                "NotTerminating" => spec.and_then(|s| s.active_deadline_seconds).is_none(),
                "BestEffort" => is_best_effort(pod),
                "NotBestEffort" => !is_best_effort(pod),
                "PriorityClass" => {
                    let class = spec.and_then(|s| s.priority_class_name.as_deref());
                    match op.as_str() {
                        "Exists" => class.is_some_and(|c| !c.is_empty()),
                        "DoesNotExist" => class.is_none_or(str::is_empty),
                        "In" => class.is_some_and(|c| values.iter().any(|v| v == c)),
                        "NotIn" => !class.is_some_and(|c| values.iter().any(|v| v == c)),
                        _ => false,
                    }
                }
                _ => false,
            }
        })
    }
}

/// Whether the pod sets no cpu or memory request or limit (QoS class BestEffort).
fn is_best_effort(pod: &Pod) -> bool {
    if let Some(qos) = pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
        return qos == "BestEffort";
    }
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .all(|c| {
            let r = c.resources.as_ref();
            ["cpu", "memory"].iter().all(|name| {
                let zero = |m: Option<&BTreeMap<String, KQuantity>>| {
                    m.and_then(|m| m.get(*name))
                        .and_then(Sum::parse)
                        .is_none_or(|s| s.millis == 0)
                };
                zero(r.and_then(|r| r.requests.as_ref())) && zero(r.and_then(|r| r.limits.as_ref()))
            })
        })
}

/// Kubernetes' `QuotaV1Pod`: terminal pods, and pods still terminating past their grace
/// period, use nothing.
fn pod_counts(pod: &Pod, now: jiff::Timestamp) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    if let (Some(deleted), Some(grace)) = (
        &pod.metadata.deletion_timestamp,
        pod.metadata.deletion_grace_period_seconds,
    ) && let Ok(end) = deleted
        .0
        .checked_add(jiff::SignedDuration::from_secs(grace))
        && now > end
    {
        return false;
    }
    true
}

/// Which list of a container's resources.
#[derive(Clone, Copy)]
enum Side {
    Requests,
    Limits,
}

/// Kubernetes' `PodRequests`/`PodLimits` for one resource: the containers' sum, at least the
/// largest init container's, plus the pod overhead. `None` when no container names it.
fn pod_resource(pod: &Pod, side: Side, resource: &str) -> Option<Sum> {
    let spec = pod.spec.as_ref()?;
    let of = |c: &k8s_openapi::api::core::v1::Container| -> Option<Sum> {
        let r = c.resources.as_ref()?;
        let list = match side {
            Side::Requests => r.requests.as_ref(),
            Side::Limits => r.limits.as_ref(),
        }?;
        list.get(resource).and_then(Sum::parse)
    };
    let mut total: Option<Sum> = None;
    for c in &spec.containers {
        if let Some(s) = of(c) {
            total.get_or_insert_with(Sum::default).add(s);
        }
    }
    for c in spec.init_containers.iter().flatten() {
        if let Some(s) = of(c) {
            match &mut total {
                Some(t) => t.max(s),
                None => total = Some(s),
            }
        }
    }
    if let Some(t) = &mut total
        && let Some(o) = spec.overhead.as_ref().and_then(|o| o.get(resource))
        && let Some(o) = Sum::parse(o)
    {
        t.add(o);
    }
    total
}

/// Which pod quantity a compute resource name means: `cpu` and `requests.cpu` are the
/// requests, `limits.cpu` the limits; hugepages and extended resources likewise.
fn compute_resource(name: &str) -> Option<(Side, &str)> {
    if let Some(r) = name.strip_prefix("requests.") {
        return (r != "storage").then_some((Side::Requests, r));
    }
    if let Some(r) = name.strip_prefix("limits.") {
        return Some((Side::Limits, r));
    }
    (matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-"))
        .then_some((Side::Requests, name))
}

/// The usage of the resource `name` in canonical text, or `None` when no evaluator knows it.
fn usage(name: &str, scopes: &Scopes, o: &Objects<'_>) -> Option<String> {
    let count = |n: usize| Some(Sum::count(n).canonical());
    // Only pods can be in a scope; everything else is outside every scoped quota.
    let unscoped = |n: usize| count(if scopes.is_empty() { n } else { 0 });
    let pods = || o.pods.iter().copied().filter(|p| scopes.matches_pod(p));
    let services = || o.services.iter().copied().filter(|_| scopes.is_empty());
    let service_type = |s: &Service| {
        s.spec
            .as_ref()
            .and_then(|s| s.type_.clone())
            .unwrap_or_else(|| "ClusterIP".into())
    };
    match name {
        "pods" => count(pods().filter(|p| pod_counts(p, o.now)).count()),
        "count/pods" => count(pods().count()),
        "services" | "count/services" => count(services().count()),
        "services.loadbalancers" => count(
            services()
                .filter(|s| service_type(s) == "LoadBalancer")
                .count(),
        ),
        "services.nodeports" => count(services().map(node_ports).sum()),
        "replicationcontrollers" | "count/replicationcontrollers" => {
            unscoped(o.replication_controllers)
        }
        "secrets" | "count/secrets" => unscoped(o.secrets),
        "configmaps" | "count/configmaps" => unscoped(o.config_maps),
        "resourcequotas" | "count/resourcequotas" => unscoped(o.resource_quotas),
        // Keelson serves no PersistentVolumeClaims: nothing uses storage.
        "persistentvolumeclaims" | "count/persistentvolumeclaims" | "requests.storage" => count(0),
        n if n.ends_with(".storageclass.storage.k8s.io/requests.storage")
            || n.ends_with(".storageclass.storage.k8s.io/persistentvolumeclaims") =>
        {
            count(0)
        }
        n => {
            let (side, resource) = compute_resource(n)?;
            let mut sum = Sum::default();
            for pod in pods().filter(|p| pod_counts(p, o.now)) {
                if let Some(s) = pod_resource(pod, side, resource) {
                    sum.add(s);
                }
            }
            Some(sum.canonical())
        }
    }
}

/// The node ports a Service takes, as Kubernetes' service evaluator counts them.
fn node_ports(svc: &Service) -> usize {
    let Some(spec) = svc.spec.as_ref() else {
        return 0;
    };
    let ports = spec.ports.as_deref().unwrap_or(&[]);
    match spec.type_.as_deref() {
        Some("NodePort") => ports.len(),
        Some("LoadBalancer") if spec.allocate_load_balancer_node_ports == Some(false) => ports
            .iter()
            .filter(|p| p.node_port.is_some_and(|n| n != 0))
            .count(),
        Some("LoadBalancer") => ports.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::{Value, json};

    use super::*;

    fn pod(name: &str, phase: &str, containers: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": containers},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    fn c(requests: Value, limits: Value) -> Value {
        json!({"name": "c", "image": "i", "resources": {"requests": requests, "limits": limits}})
    }

    fn quota(hard: Value, extra: Value) -> ResourceQuota {
        let mut q = json!({"metadata": {"name": "q", "namespace": "ns"}, "spec": {"hard": hard}});
        if let (Some(q), Some(e)) = (q["spec"].as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                q.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(q).unwrap()
    }

    fn used(status: &ResourceQuotaStatus) -> BTreeMap<String, String> {
        status
            .used
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect()
    }

    fn objects<'a>(pods: &'a [Pod], services: &'a [Service]) -> Objects<'a> {
        Objects {
            pods: pods.iter().collect(),
            services: services.iter().collect(),
            replication_controllers: 2,
            secrets: 3,
            config_maps: 4,
            resource_quotas: 1,
            now: jiff::Timestamp::now(),
        }
    }

    #[test]
    fn compute_resources_sum_over_live_pods_in_canonical_form() {
        let pods = [
            pod(
                "a",
                "Running",
                json!([c(
                    json!({"cpu": "500m", "memory": "1Gi"}),
                    json!({"cpu": "1", "memory": "1Gi"})
                )]),
            ),
            pod(
                "b",
                "Pending",
                json!([
                    c(
                        json!({"cpu": "250m", "memory": "256Mi"}),
                        json!({"cpu": "500m", "memory": "512Mi"})
                    ),
                    c(
                        json!({"cpu": "250m", "memory": "256Mi"}),
                        json!({"cpu": "500m", "memory": "512Mi"})
                    )
                ]),
            ),
            pod(
                "done",
                "Succeeded",
                json!([c(json!({"cpu": "4"}), json!({}))]),
            ),
            pod("bare", "Running", json!([{"name": "c", "image": "i"}])),
        ];
        let q = quota(
            json!({"pods": "10", "count/pods": "10", "requests.cpu": "4", "cpu": "4",
                   "requests.memory": "8Gi", "memory": "8Gi", "limits.cpu": "8",
                   "limits.memory": "8Gi", "requests.nvidia.com/gpu": "1"}),
            json!({}),
        );
        let status = new_status(&q, &objects(&pods, &[])).unwrap();
        let u = used(&status);
        assert_eq!(u["pods"], "3");
        assert_eq!(u["count/pods"], "4");
        assert_eq!(u["requests.cpu"], "1");
        assert_eq!(u["cpu"], "1");
        assert_eq!(u["requests.memory"], "1536Mi");
        assert_eq!(u["memory"], "1536Mi");
        assert_eq!(u["limits.cpu"], "2");
        assert_eq!(u["limits.memory"], "2Gi");
        assert_eq!(u["requests.nvidia.com/gpu"], "0");
        assert_eq!(status.hard.as_ref().unwrap().len(), 9);
    }

    #[test]
    fn init_containers_count_as_their_maximum_and_overhead_is_added() {
        let mut p = pod(
            "a",
            "Running",
            json!([c(json!({"cpu": "100m"}), json!({}))]),
        );
        let spec = p.spec.as_mut().unwrap();
        spec.init_containers = Some(vec![
            serde_json::from_value(c(json!({"cpu": "300m"}), json!({}))).unwrap(),
            serde_json::from_value(c(json!({"cpu": "200m"}), json!({}))).unwrap(),
        ]);
        spec.overhead = Some([("cpu".to_string(), KQuantity("50m".into()))].into());
        assert_eq!(
            pod_resource(&p, Side::Requests, "cpu").unwrap().canonical(),
            "350m"
        );
        assert!(pod_resource(&p, Side::Limits, "cpu").is_none());
    }

    #[test]
    fn object_counts_and_service_ports() {
        let services: Vec<Service> = [
            json!({"metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}]}}),
            json!({"metadata": {"name": "b"}, "spec": {"type": "NodePort",
                "ports": [{"port": 80, "nodePort": 30001}, {"port": 81, "nodePort": 30002}]}}),
            json!({"metadata": {"name": "c"}, "spec": {"type": "LoadBalancer",
                "ports": [{"port": 80, "nodePort": 30003}]}}),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
        let q = quota(
            json!({"services": "9", "count/services": "9", "services.nodeports": "9",
                   "services.loadbalancers": "9", "replicationcontrollers": "9",
                   "count/replicationcontrollers": "9", "secrets": "9", "configmaps": "9",
                   "resourcequotas": "9", "persistentvolumeclaims": "9", "count/widgets.example.com": "9"}),
            json!({}),
        );
        let u = used(&new_status(&q, &objects(&[], &services)).unwrap());
        assert_eq!(u["services"], "3");
        assert_eq!(u["count/services"], "3");
        assert_eq!(u["services.nodeports"], "3");
        assert_eq!(u["services.loadbalancers"], "1");
        assert_eq!(u["replicationcontrollers"], "2");
        assert_eq!(u["count/replicationcontrollers"], "2");
        assert_eq!(u["secrets"], "3");
        assert_eq!(u["configmaps"], "4");
        assert_eq!(u["resourcequotas"], "1");
        assert_eq!(u["persistentvolumeclaims"], "0");
        // Unknown to every evaluator: not reported.
        assert!(!u.contains_key("count/widgets.example.com"));
    }

    #[test]
    fn unchanged_status_is_not_rewritten_and_dropped_resources_disappear() {
        let pods = [pod(
            "a",
            "Running",
            json!([c(json!({"cpu": "1500m"}), json!({}))]),
        )];
        let mut q = quota(json!({"pods": "5", "requests.cpu": "2"}), json!({}));
        let status = new_status(&q, &objects(&pods, &[])).unwrap();
        assert_eq!(used(&status)["requests.cpu"], "1500m");
        q.status = Some(status);
        assert!(new_status(&q, &objects(&pods, &[])).is_none());
        // Same value, other spelling: still equal.
        q.status
            .as_mut()
            .unwrap()
            .used
            .as_mut()
            .unwrap()
            .insert("requests.cpu".into(), KQuantity("1.5".into()));
        assert!(new_status(&q, &objects(&pods, &[])).is_none());
        // A resource taken out of hard leaves used.
        q.spec
            .as_mut()
            .unwrap()
            .hard
            .as_mut()
            .unwrap()
            .remove("requests.cpu");
        let status = new_status(&q, &objects(&pods, &[])).unwrap();
        assert_eq!(used(&status).keys().collect::<Vec<_>>(), ["pods"]);
    }

    #[test]
    fn scopes_select_pods_and_exclude_other_kinds() {
        let pods = [
            pod("be", "Running", json!([{"name": "c", "image": "i"}])),
            pod(
                "burst",
                "Running",
                json!([c(json!({"cpu": "1"}), json!({}))]),
            ),
        ];
        let q = quota(
            json!({"pods": "5", "secrets": "5"}),
            json!({"scopes": ["BestEffort"]}),
        );
        let u = used(&new_status(&q, &objects(&pods, &[])).unwrap());
        assert_eq!(u["pods"], "1");
        assert_eq!(u["secrets"], "0");
        let q = quota(json!({"pods": "5"}), json!({"scopes": ["NotBestEffort"]}));
        assert_eq!(
            used(&new_status(&q, &objects(&pods, &[])).unwrap())["pods"],
            "1"
        );
    }

    #[test]
    fn pods_stuck_terminating_past_their_grace_period_stop_counting() {
        let mut p = pod("a", "Running", json!([c(json!({"cpu": "1"}), json!({}))]));
        let now = jiff::Timestamp::now();
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            now - jiff::SignedDuration::from_secs(60),
        ));
        p.metadata.deletion_grace_period_seconds = Some(30);
        assert!(!pod_counts(&p, now));
        p.metadata.deletion_grace_period_seconds = Some(120);
        assert!(pod_counts(&p, now));
    }
}
