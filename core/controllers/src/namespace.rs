//! The namespace controller: empties a namespace being deleted, then lets it go.
//!
//! Deleting a Namespace only marks it Terminating while `spec.finalizers` holds `kubernetes`.
//! This controller then deletes every object in it, for every namespaced resource the API
//! server serves (found through discovery, so resources added later are covered too), waits
//! until nothing is left (pods bound to a node wait for their kubelet through their grace
//! period), and removes the `kubernetes` finalizer through the `finalize` subresource, after
//! which the API server deletes the namespace. Meanwhile the namespace's status carries
//! Kubernetes' deletion conditions (`NamespaceContentRemaining`,
//! `NamespaceFinalizersRemaining`, ...), so `kubectl describe` says what it waits for.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{ApiCapabilities, Discovery, Scope, verbs};
use kube::{Api, Client};

use crate::manager::{Context, Task};
use crate::queue::{Queue, Requeue, run_workers};
use crate::{Error, Result, is_not_found};

/// The finalizer this controller owns.
const FINALIZER: &str = "kubernetes";
/// How often a namespace whose contents are still going is looked at again.
const RECHECK: Duration = Duration::from_secs(1);
/// How long a discovery result is reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(30);

pub(crate) fn start(ctx: &Arc<Context>) -> Result<Vec<Task>> {
    let queue: Queue<String> = Queue::new();
    let q = queue.clone();
    ctx.informers.namespaces.on_change(move |_old, new| {
        if let Some(ns) = new
            && ns.metadata.deletion_timestamp.is_some()
            && let Some(name) = &ns.metadata.name
        {
            q.add(name.clone());
        }
    });
    let controller = Arc::new(NamespaceController {
        ctx: ctx.clone(),
        resources: Mutex::new(None),
    });
    Ok(vec![Box::pin(run_workers(
        "namespace",
        queue,
        2,
        move |name: String| {
            let c = controller.clone();
            async move { c.reconcile(&name).await }
        },
    ))])
}

/// A namespaced resource that can be listed and deleted.
#[derive(Clone, Debug)]
struct Deletable {
    resource: ApiResource,
    /// Whether objects can be deleted one by one (else only with deletecollection).
    one_by_one: bool,
}

struct NamespaceController {
    ctx: Arc<Context>,
    /// The last discovery and when it was made.
    resources: Mutex<Option<(Instant, Arc<Vec<Deletable>>)>>,
}

impl NamespaceController {
    async fn reconcile(&self, name: &str) -> Result<Requeue> {
        let Some(ns) = self.ctx.informers.namespaces.get("", name) else {
            return Ok(Requeue::No);
        };
        if ns.metadata.deletion_timestamp.is_none() || !has_finalizer(&ns) {
            return Ok(Requeue::No);
        }
        let mut report = Report::default();
        let resources = match self.deletable().await {
            Ok(r) => r,
            Err(e) => {
                report.discovery_error = Some(e.to_string());
                self.set_conditions(&ns, &report).await;
                return Err(e);
            }
        };
        for r in resources.iter() {
            match delete_all(&self.ctx.client, r, name).await {
                Ok(left) => report.add_remaining(&r.resource, &left),
                Err(e) => report.delete_errors.push(e.to_string()),
            }
        }
        self.set_conditions(&ns, &report).await;
        if !report.delete_errors.is_empty() {
            return Err(Error::Other(format!(
                "deleting the content of namespace {name}: {}",
                report.delete_errors.join("; ")
            )));
        }
        if report.remaining_objects() > 0 {
            tracing::debug!(
                namespace = name,
                remaining = report.remaining_objects(),
                "namespace content still being deleted"
            );
            return Ok(Requeue::After(RECHECK));
        }
        // The lists above come from the API server's cache, which may not yet hold an object
        // written just before the namespace was deleted. Nothing new can be created in a
        // terminating namespace, so a consistent look that finds nothing means nothing is left.
        if let Some(resource) = first_left(&self.ctx.client, &resources, name).await? {
            tracing::debug!(
                namespace = name,
                resource = %resource,
                "namespace content found by a consistent list; deleting it on the next pass"
            );
            return Ok(Requeue::After(RECHECK));
        }
        self.finalize(name).await?;
        tracing::info!(namespace = name, "namespace emptied; finalizer removed");
        Ok(Requeue::No)
    }

    /// The namespaced resources to empty, from a discovery at most [`DISCOVERY_TTL`] old.
    async fn deletable(&self) -> Result<Arc<Vec<Deletable>>> {
        if let Ok(cached) = self.resources.lock()
            && let Some((at, list)) = cached.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(list.clone());
        }
        let discovery = Discovery::new(self.ctx.client.clone()).run().await?;
        let mut list = Vec::new();
        for group in discovery.groups() {
            for (resource, caps) in group.recommended_resources() {
                if let Some(d) = deletable(resource, &caps) {
                    list.push(d);
                }
            }
        }
        let list = Arc::new(list);
        if let Ok(mut cached) = self.resources.lock() {
            *cached = Some((Instant::now(), list.clone()));
        }
        Ok(list)
    }

    /// Writes the deletion conditions of `report` to the namespace's status when they changed;
    /// they are advisory, so a failure is only logged.
    async fn set_conditions(&self, ns: &Namespace, report: &Report) {
        let current = ns
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let Some(conditions) = report.conditions(&current, Timestamp::now()) else {
            return;
        };
        let mut updated = ns.clone();
        updated.status.get_or_insert_default().conditions = Some(conditions);
        let name = ns.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Namespace> = Api::all(self.ctx.client.clone());
        if let Err(e) = api
            .replace_status(name, &PostParams::default(), &updated)
            .await
        {
            tracing::debug!(namespace = name, error = %e, "could not update namespace conditions");
        }
    }

    /// Removes [`FINALIZER`] through `PUT /api/v1/namespaces/<name>/finalize`.
    async fn finalize(&self, name: &str) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.ctx.client.clone());
        let Some(mut ns) = api.get_opt(name).await? else {
            return Ok(());
        };
        let Some(spec) = ns.spec.as_mut() else {
            return Ok(());
        };
        let Some(finalizers) = spec.finalizers.as_mut() else {
            return Ok(());
        };
        if !finalizers.iter().any(|f| f == FINALIZER) {
            return Ok(());
        }
        finalizers.retain(|f| f != FINALIZER);
        match api
            .replace_subresource("finalize", name, &PostParams::default(), &ns)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// What one pass over a terminating namespace found, for its status conditions.
#[derive(Debug, Default)]
struct Report {
    discovery_error: Option<String>,
    delete_errors: Vec<String>,
    /// Objects left per resource (`<plural>.<group>`).
    remaining: BTreeMap<String, usize>,
    /// Objects left per finalizer they wait for.
    finalizers: BTreeMap<String, usize>,
}

impl Report {
    fn add_remaining(&mut self, resource: &ApiResource, left: &[DynamicObject]) {
        if left.is_empty() {
            return;
        }
        let key = format!("{}.{}", resource.plural, resource.group);
        *self.remaining.entry(key).or_default() += left.len();
        for f in left
            .iter()
            .flat_map(|o| o.metadata.finalizers.iter().flatten())
        {
            *self.finalizers.entry(f.clone()).or_default() += 1;
        }
    }

    fn remaining_objects(&self) -> usize {
        self.remaining.values().sum()
    }

    /// Kubernetes' namespace deletion conditions for this report, merged into `current`
    /// (a condition whose status stays keeps its transition time); `None` when nothing
    /// changes.
    fn conditions(
        &self,
        current: &[NamespaceCondition],
        now: Timestamp,
    ) -> Option<Vec<NamespaceCondition>> {
        let counted = |m: &BTreeMap<String, usize>, f: &dyn Fn(&String, &usize) -> String| {
            m.iter()
                .map(|(k, n)| f(k, n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let wanted: [(&str, bool, &str, String); 5] = [
            match &self.discovery_error {
                Some(e) => (
                    "NamespaceDeletionDiscoveryFailure",
                    true,
                    "DiscoveryFailed",
                    format!("Discovery failed for some groups: {e}"),
                ),
                None => (
                    "NamespaceDeletionDiscoveryFailure",
                    false,
                    "ResourcesDiscovered",
                    "All resources successfully discovered".into(),
                ),
            },
            (
                "NamespaceDeletionGroupVersionParsingFailure",
                false,
                "ParsedGroupVersions",
                "All legacy kube types successfully parsed".into(),
            ),
            if self.delete_errors.is_empty() {
                (
                    "NamespaceDeletionContentFailure",
                    false,
                    "ContentDeleted",
                    "All content successfully deleted, may be waiting on finalization".into(),
                )
            } else {
                (
                    "NamespaceDeletionContentFailure",
                    true,
                    "ContentDeletionFailed",
                    format!(
                        "Failed to delete all resource types, {} remaining: {}",
                        self.delete_errors.len(),
                        self.delete_errors.join(", ")
                    ),
                )
            },
            if self.remaining.is_empty() {
                (
                    "NamespaceContentRemaining",
                    false,
                    "ContentRemoved",
                    "All content successfully removed".into(),
                )
            } else {
                (
                    "NamespaceContentRemaining",
                    true,
                    "SomeResourcesRemain",
                    format!(
                        "Some resources are remaining: {}",
                        counted(&self.remaining, &|k, n| format!(
                            "{k} has {n} resource instances"
                        ))
                    ),
                )
            },
            if self.finalizers.is_empty() {
                (
                    "NamespaceFinalizersRemaining",
                    false,
                    "ContentHasNoFinalizers",
                    "All content-preserving finalizers finished".into(),
                )
            } else {
                (
                    "NamespaceFinalizersRemaining",
                    true,
                    "SomeFinalizersRemain",
                    format!(
                        "Some content in the namespace has finalizers remaining: {}",
                        counted(&self.finalizers, &|k, n| format!(
                            "{k} in {n} resource instances"
                        ))
                    ),
                )
            },
        ];
        let mut out: Vec<NamespaceCondition> = current
            .iter()
            .filter(|c| !wanted.iter().any(|w| w.0 == c.type_))
            .cloned()
            .collect();
        let mut changed = false;
        for (kind, status, reason, message) in wanted {
            let status = if status { "True" } else { "False" };
            let old = current.iter().find(|c| c.type_ == kind);
            let same = old.is_some_and(|c| {
                c.status == status
                    && c.reason.as_deref() == Some(reason)
                    && c.message.as_deref() == Some(message.as_str())
            });
            changed |= !same;
            let since = old
                .filter(|c| c.status == status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            out.push(NamespaceCondition {
                type_: kind.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message),
                last_transition_time: Some(since),
            });
        }
        changed.then_some(out)
    }
}

fn has_finalizer(ns: &Namespace) -> bool {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

/// `resource` if it is namespaced and can be listed and deleted.
fn deletable(resource: ApiResource, caps: &ApiCapabilities) -> Option<Deletable> {
    let namespaced = matches!(caps.scope, Scope::Namespaced);
    let one_by_one = caps.supports_operation(verbs::DELETE);
    let usable = caps.supports_operation(verbs::LIST)
        && (one_by_one || caps.supports_operation(verbs::DELETE_COLLECTION));
    (namespaced && usable && !resource.plural.contains('/')).then_some(Deletable {
        resource,
        one_by_one,
    })
}

/// Deletes every object of `r` in `namespace`; returns those still there (waiting for a grace
/// period or finalizers).
///
/// Objects are deleted one by one when the resource allows it, from lists the API server
/// answers from its cache (`resourceVersion=0`): nothing new can appear in a terminating
/// namespace, a stale list only means one more look (see [`first_left`]), and a quorum list
/// or a collection delete can stall behind the API server's cache.
async fn delete_all(client: &Client, r: &Deletable, namespace: &str) -> Result<Vec<DynamicObject>> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &r.resource);
    let cached = ListParams::default().match_any();
    let existing = match api.list(&cached).await {
        Ok(l) => l.items,
        // Served by discovery but gone since: nothing to delete.
        Err(e) if is_not_found(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    if existing.is_empty() {
        return Ok(existing);
    }
    let params = DeleteParams::background();
    if r.one_by_one {
        for obj in &existing {
            // Objects already being deleted need no second request.
            if obj.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(name) = obj.metadata.name.as_deref() else {
                continue;
            };
            match api.delete(name, &params).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
    } else {
        match api.delete_collection(&params, &ListParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(api.list(&cached).await?.items)
}

/// The first of `resources` (as `<plural>.<group>`) that still has an object in `namespace`,
/// judged from consistent reads: each list has no `resourceVersion` and a limit of one, which
/// the API server answers from its store at the current revision.
async fn first_left(
    client: &Client,
    resources: &[Deletable],
    namespace: &str,
) -> Result<Option<String>> {
    let consistent = ListParams::default().limit(1);
    for r in resources {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &r.resource);
        match api.list(&consistent).await {
            Ok(l) if l.items.is_empty() => {}
            Ok(_) => return Ok(Some(format!("{}.{}", r.resource.plural, r.resource.group))),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use kube::api::GroupVersionKind;

    use super::*;

    fn caps(scope: Scope, ops: &[&str]) -> ApiCapabilities {
        ApiCapabilities {
            scope,
            subresources: Vec::new(),
            operations: ops.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn resource(plural: &str) -> ApiResource {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "X"), plural)
    }

    #[test]
    fn only_namespaced_listable_deletable_resources_are_emptied() {
        let all = [verbs::LIST, verbs::DELETE, verbs::DELETE_COLLECTION];
        let d = deletable(resource("pods"), &caps(Scope::Namespaced, &all)).unwrap();
        assert!(d.one_by_one);
        let d = deletable(
            resource("things"),
            &caps(Scope::Namespaced, &[verbs::LIST, verbs::DELETE_COLLECTION]),
        )
        .unwrap();
        assert!(!d.one_by_one);
        assert!(deletable(resource("nodes"), &caps(Scope::Cluster, &all)).is_none());
        assert!(
            deletable(
                resource("bindings"),
                &caps(Scope::Namespaced, &[verbs::CREATE])
            )
            .is_none()
        );
        assert!(deletable(resource("pods/status"), &caps(Scope::Namespaced, &all)).is_none());
    }

    #[test]
    fn conditions_say_what_remains_like_kubernetes() {
        let mut report = Report::default();
        let mut held = DynamicObject::new("x", &resource("configmaps"));
        held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
        report.add_remaining(&resource("configmaps"), &[held]);
        report.add_remaining(&resource("pods"), &[]);
        let now = Timestamp::from_second(100).unwrap();
        let c = report.conditions(&[], now).unwrap();
        assert_eq!(c.len(), 5);
        let get =
            |c: &[NamespaceCondition], t: &str| c.iter().find(|c| c.type_ == t).cloned().unwrap();
        let remaining = get(&c, "NamespaceContentRemaining");
        assert_eq!(remaining.status, "True");
        assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
        assert_eq!(
            remaining.message.as_deref(),
            Some("Some resources are remaining: configmaps. has 1 resource instances")
        );
        let finalizers = get(&c, "NamespaceFinalizersRemaining");
        assert_eq!(
            finalizers.message.as_deref(),
            Some(
                "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
            )
        );
        assert_eq!(get(&c, "NamespaceDeletionContentFailure").status, "False");
        // The same report again: nothing to write.
        assert!(report.conditions(&c, now).is_none());
        // Content gone: the conditions flip, unchanged ones keep their transition time.
        let later = Timestamp::from_second(200).unwrap();
        let c2 = Report::default().conditions(&c, later).unwrap();
        assert_eq!(get(&c2, "NamespaceContentRemaining").status, "False");
        assert_eq!(
            get(&c2, "NamespaceContentRemaining").last_transition_time,
            Some(Time(later))
        );
        assert_eq!(
            get(&c2, "NamespaceDeletionContentFailure").last_transition_time,
            Some(Time(now))
        );
    }

    #[test]
    fn the_finalizer_is_recognised() {
        let mut ns = Namespace::default();
        assert!(!has_finalizer(&ns));
        ns.spec = Some(k8s_openapi::api::core::v1::NamespaceSpec {
            finalizers: Some(vec!["kubernetes".into()]),
        });
        assert!(has_finalizer(&ns));
    }
}
