//! The admission chain: runs after authentication and authorization, before an object is
//! validated and stored. Plugins may change the object (mutate) and may refuse the request
//! (validate). Later issues fill the chain (quota, limit ranges, service accounts, Wasm checks).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use keelson_api::registry::ResourceInfo;

use crate::auth::UserInfo;
use crate::status::{ApiError, ApiResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
        }
    }
}

/// What an admission plugin is told about a request.
pub struct Attributes<'a> {
    pub operation: Operation,
    pub info: &'static ResourceInfo,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub user: &'a UserInfo,
    pub old: Option<&'a Value>,
    pub dry_run: bool,
}

/// One admission plugin.
#[async_trait]
pub trait AdmissionPlugin: Send + Sync {
    fn name(&self) -> &str;

    /// May change `object` (absent for deletes and connects).
    async fn mutate(&self, _attrs: &Attributes<'_>, _object: Option<&mut Value>) -> ApiResult<()> {
        Ok(())
    }

    /// Accepts or refuses the final object.
    async fn validate(&self, _attrs: &Attributes<'_>, _object: Option<&Value>) -> ApiResult<()> {
        Ok(())
    }
}

/// The ordered chain of plugins.
#[derive(Clone, Default)]
pub struct AdmissionChain {
    plugins: Vec<Arc<dyn AdmissionPlugin>>,
}

impl AdmissionChain {
    pub fn new(plugins: Vec<Arc<dyn AdmissionPlugin>>) -> Self {
        Self { plugins }
    }

    pub fn push(&mut self, p: Arc<dyn AdmissionPlugin>) {
        self.plugins.push(p);
    }

    pub fn names(&self) -> Vec<String> {
        self.plugins.iter().map(|p| p.name().to_string()).collect()
    }

    pub async fn mutate(
        &self,
        attrs: &Attributes<'_>,
        mut object: Option<&mut Value>,
    ) -> ApiResult<()> {
        for p in &self.plugins {
            p.mutate(attrs, object.as_deref_mut()).await?;
        }
        Ok(())
    }

    pub async fn validate(&self, attrs: &Attributes<'_>, object: Option<&Value>) -> ApiResult<()> {
        for p in &self.plugins {
            p.validate(attrs, object).await?;
        }
        Ok(())
    }
}

/// Refuses new objects in namespaces that do not exist or are being deleted, and the deletion
/// of the namespaces the system needs (Kubernetes' NamespaceLifecycle).
pub struct NamespaceLifecycle {
    pub store: Arc<dyn keelson_store::Store>,
    /// Consulted first: a namespace in the cache needs no store read on every create.
    pub cache: Arc<crate::watchcache::WatchCache>,
}

pub const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

#[async_trait]
impl AdmissionPlugin for NamespaceLifecycle {
    fn name(&self) -> &str {
        "NamespaceLifecycle"
    }

    async fn validate(&self, attrs: &Attributes<'_>, _object: Option<&Value>) -> ApiResult<()> {
        if attrs.info.plural == "namespaces" && attrs.info.group.is_empty() {
            if attrs.operation == Operation::Delete && PROTECTED_NAMESPACES.contains(&attrs.name) {
                return Err(ApiError::forbidden(
                    "",
                    "namespaces",
                    attrs.name,
                    "this namespace may not be deleted",
                ));
            }
            return Ok(());
        }
        let Some(ns) = attrs.namespace else {
            return Ok(());
        };
        if attrs.operation != Operation::Create || !attrs.info.namespaced {
            return Ok(());
        }
        let key = format!("/registry/namespaces/{ns}");
        let v: Value = match self.cache.get("namespaces", &key) {
            Some(obj) => obj.value.clone(),
            // Not cached yet (created a moment ago) or gone: the store decides.
            None => match self.store.get(&key).await? {
                Some(kv) => serde_json::from_slice(&kv.value).unwrap_or(Value::Null),
                None => return Err(ApiError::not_found("", "namespaces", ns)),
            },
        };
        let terminating = v.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
            || v.pointer("/metadata/deletionTimestamp").is_some();
        // Events about the namespace's own deletion are still allowed, as in Kubernetes.
        if terminating && attrs.info.plural != "events" {
            return Err(ApiError::forbidden(
                attrs.info.group,
                attrs.info.plural,
                attrs.name,
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            ));
        }
        Ok(())
    }
}
