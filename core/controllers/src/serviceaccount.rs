//! Service accounts: every active namespace has a `default` ServiceAccount, and (in
//! [`tokens`]) every ServiceAccount has a token Secret.

mod tokens;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use crate::manager::{Context, Task};
use crate::queue::{Queue, Requeue, run_workers};
use crate::{Result, is_conflict};

pub(crate) use tokens::start as start_tokens;

/// The ServiceAccount every namespace gets.
const DEFAULT: &str = "default";

/// Kubernetes' service account controller: (re)creates `default` in every namespace that is
/// not terminating.
pub(crate) fn start_accounts(ctx: &Arc<Context>) -> Result<Vec<Task>> {
    let queue: Queue<String> = Queue::new();
    let q = queue.clone();
    ctx.informers.namespaces.on_change(move |_old, new| {
        if let Some(name) = new.and_then(|ns| ns.metadata.name.clone()) {
            q.add(name);
        }
    });
    let q = queue.clone();
    ctx.informers.service_accounts.on_change(move |old, new| {
        // Only a deleted `default` needs anything done.
        if new.is_none()
            && let Some(sa) = old
            && sa.metadata.name.as_deref() == Some(DEFAULT)
            && let Some(ns) = sa.metadata.namespace.clone()
        {
            q.add(ns);
        }
    });
    let ctx = ctx.clone();
    Ok(vec![Box::pin(run_workers(
        "serviceaccount",
        queue,
        1,
        move |ns: String| {
            let ctx = ctx.clone();
            async move { ensure_default(&ctx, &ns).await }
        },
    ))])
}

fn active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

async fn ensure_default(ctx: &Context, namespace: &str) -> Result<Requeue> {
    let Some(ns) = ctx.informers.namespaces.get("", namespace) else {
        return Ok(Requeue::No);
    };
    if !active(&ns)
        || ctx
            .informers
            .service_accounts
            .get(namespace, DEFAULT)
            .is_some()
    {
        return Ok(Requeue::No);
    }
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), namespace);
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT.into()),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => {
            tracing::info!(namespace, "created the default service account");
            Ok(Requeue::No)
        }
        // Made meanwhile (the cache was behind): fine.
        Err(e) if is_conflict(&e) => Ok(Requeue::No),
        // The namespace started terminating: the API server refuses new objects.
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("being terminated") => {
            Ok(Requeue::No)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminating_namespaces_are_not_active() {
        let mut ns = Namespace::default();
        assert!(active(&ns));
        ns.status = Some(k8s_openapi::api::core::v1::NamespaceStatus {
            phase: Some("Terminating".into()),
            ..Default::default()
        });
        assert!(!active(&ns));
    }
}
