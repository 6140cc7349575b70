//! The token controller: every ServiceAccount gets a `kubernetes.io/service-account-token`
//! Secret holding a signed JWT, and token Secrets outlive neither their account nor a
//! re-created account of the same name.
//!
//! As Kubernetes' v1 token controller: the Secret is named `<sa>-token-<5 random characters>`,
//! carries the account's name and uid in annotations, holds `token`, `namespace` and `ca.crt`,
//! and is listed in the account's `secrets`. A token Secret a user creates with just the
//! name annotation is filled in; a deleted token Secret is replaced and its reference dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ObjectReference, Secret, ServiceAccount};
use keelson_api::sa_token::{LegacyClaims, sign};
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams, Preconditions};
use rand::Rng as _;

use crate::manager::{Context, Task};
use crate::queue::{Queue, Requeue, run_workers};
use crate::{Error, Result, is_conflict, is_not_found};

/// The type of token Secrets.
pub(super) const TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
/// Annotation naming a token Secret's ServiceAccount.
pub(super) const NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
/// Annotation holding a token Secret's ServiceAccount uid.
pub(super) const UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";
/// The characters of generated name suffixes (Kubernetes' `utilrand.String`: no vowels, no
/// look-alikes).
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Kubernetes' `maxGeneratedNameLength`: a generated name stays a valid label.
const MAX_GENERATED_BASE: usize = 63 - 5;

/// What the token controller reconciles.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// A ServiceAccount: does it have a token (or, gone, does it leave tokens behind)?
    Account { namespace: String, name: String },
    /// A token Secret: is it filled in and is its account still there?
    Secret { namespace: String, name: String },
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Account { namespace, name } => write!(f, "serviceaccount {namespace}/{name}"),
            Key::Secret { namespace, name } => write!(f, "secret {namespace}/{name}"),
        }
    }
}

pub(crate) fn start(ctx: &Arc<Context>) -> Result<Vec<Task>> {
    let Some(key) = ctx.config.service_account_private_key.clone() else {
        tracing::warn!(
            "serviceaccount-token: no service account private key (--service-account-private-key-file); token Secrets will not be made"
        );
        return Ok(Vec::new());
    };
    // Refuse a key that cannot sign before any Secret is written with a broken token.
    let probe = LegacyClaims::new("ns", "sa", "uid", "sa-token-probe");
    sign(&key, &probe).map_err(|e| Error::Token(e.to_string()))?;

    let queue: Queue<Key> = Queue::new();
    let q = queue.clone();
    ctx.informers.service_accounts.on_change(move |old, new| {
        if let Some(sa) = new.or(old)
            && let (Some(namespace), Some(name)) =
                (sa.metadata.namespace.clone(), sa.metadata.name.clone())
        {
            q.add(Key::Account { namespace, name });
        }
    });
    let q = queue.clone();
    ctx.informers
        .secrets
        .on_change(move |old, new| match (old, new) {
            (_, Some(s)) if is_token(s) => {
                if let (Some(namespace), Some(name)) =
                    (s.metadata.namespace.clone(), s.metadata.name.clone())
                {
                    q.add(Key::Secret { namespace, name });
                }
            }
            // A token Secret went: its account needs a new one and loses the reference.
            (Some(s), None) if is_token(s) => {
                if let (Some(namespace), Some(name)) =
                    (s.metadata.namespace.clone(), annotation(s, NAME_ANNOTATION))
                {
                    q.add(Key::Account {
                        namespace,
                        name: name.to_string(),
                    });
                }
            }
            _ => {}
        });
    let controller = Arc::new(Tokens {
        ctx: ctx.clone(),
        key,
    });
    Ok(vec![Box::pin(run_workers(
        "serviceaccount-token",
        queue,
        ctx.config.concurrent_syncs.min(5),
        move |k: Key| {
            let c = controller.clone();
            async move {
                match k {
                    Key::Account { namespace, name } => c.sync_account(&namespace, &name).await,
                    Key::Secret { namespace, name } => c.sync_secret(&namespace, &name).await,
                }
            }
        },
    ))])
}

fn is_token(s: &Secret) -> bool {
    s.type_.as_deref() == Some(TOKEN_TYPE)
}

fn annotation<'a>(s: &'a Secret, key: &str) -> Option<&'a str> {
    s.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// Whether `secret` is a token of `sa` (same name; same uid unless the Secret names none yet).
fn token_of(secret: &Secret, sa: &ServiceAccount) -> bool {
    is_token(secret)
        && annotation(secret, NAME_ANNOTATION) == sa.metadata.name.as_deref()
        && annotation(secret, UID_ANNOTATION).is_none_or(|u| Some(u) == sa.metadata.uid.as_deref())
}

/// `<sa>-token-<5 random characters>`, the base cut as Kubernetes' name generator does.
fn token_secret_name(sa: &str) -> String {
    let mut base = format!("{sa}-token-");
    if base.len() > MAX_GENERATED_BASE {
        let mut cut = MAX_GENERATED_BASE;
        while !base.is_char_boundary(cut) {
            cut -= 1;
        }
        base.truncate(cut);
    }
    let mut rng = rand::rng();
    for _ in 0..5 {
        let i = rng.random_range(0..ALPHANUMS.len());
        base.push(char::from(ALPHANUMS[i]));
    }
    base
}

/// What a token Secret's `data` should hold; `None` when `data` has it all already.
fn missing_data(
    data: Option<&BTreeMap<String, ByteString>>,
    namespace: &str,
    root_ca: Option<&str>,
) -> Option<Vec<&'static str>> {
    let has = |k: &str, want: Option<&[u8]>| {
        data.and_then(|d| d.get(k))
            .is_some_and(|v| !v.0.is_empty() && want.is_none_or(|w| v.0 == w))
    };
    let mut missing = Vec::new();
    if !has("token", None) {
        missing.push("token");
    }
    if !has("namespace", Some(namespace.as_bytes())) {
        missing.push("namespace");
    }
    if let Some(ca) = root_ca
        && !has("ca.crt", Some(ca.as_bytes()))
    {
        missing.push("ca.crt");
    }
    (!missing.is_empty()).then_some(missing)
}

struct Tokens {
    ctx: Arc<Context>,
    /// PEM private key tokens are signed with.
    key: String,
}

impl Tokens {
    fn token(&self, namespace: &str, sa: &str, uid: &str, secret: &str) -> Result<String> {
        sign(&self.key, &LegacyClaims::new(namespace, sa, uid, secret))
            .map_err(|e| Error::Token(e.to_string()))
    }

    /// The Secret `namespace/name` from the cache, or from the API server when the cache has
    /// not seen it (yet).
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>> {
        if let Some(s) = self.ctx.informers.secrets.get(namespace, name) {
            return Ok(Some((*s).clone()));
        }
        let api: Api<Secret> = Api::namespaced(self.ctx.client.clone(), namespace);
        Ok(api.get_opt(name).await?)
    }

    async fn sync_account(&self, namespace: &str, name: &str) -> Result<Requeue> {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.ctx.client.clone(), namespace);
        if let Some(cached) = self.ctx.informers.service_accounts.get(namespace, name)
            && self.stale_tokens(namespace, name, Some(&cached)).is_empty()
            && (cached.metadata.deletion_timestamp.is_some() || self.has_token(&cached))
        {
            return Ok(Requeue::No);
        }
        // The cache may be behind (or miss our own last write): decide on the live account.
        let live = accounts.get_opt(name).await?;
        // Tokens of an account that is gone, or of an earlier account of the same name.
        for s in self.stale_tokens(namespace, name, live.as_ref()) {
            tracing::info!(secret = ?s.metadata.name, namespace, "deleting the token of a deleted service account");
            self.delete_secret(&s).await?;
        }
        let Some(mut sa) = live else {
            return Ok(Requeue::No);
        };
        if sa.metadata.deletion_timestamp.is_some() {
            return Ok(Requeue::No);
        }
        let mut refs = sa.secrets.clone().unwrap_or_default();
        let before = refs.len();
        let prefix = format!("{name}-token-");
        let mut valid = false;
        let mut kept = Vec::with_capacity(refs.len());
        for r in refs.drain(..) {
            let Some(ref_name) = r.name.as_deref() else {
                continue;
            };
            match self.secret(namespace, ref_name).await? {
                Some(s) if token_of(&s, &sa) => {
                    valid = true;
                    kept.push(r);
                }
                // A token Secret that was deleted: drop the reference, as Kubernetes does.
                None if ref_name.starts_with(&prefix) => {}
                _ => kept.push(r),
            }
        }
        let mut created = None;
        if !valid {
            let secret = self.create_token(&sa).await?;
            kept.push(ObjectReference {
                name: secret.metadata.name.clone(),
                ..ObjectReference::default()
            });
            created = Some(secret);
        }
        if kept.len() == before && created.is_none() {
            return Ok(Requeue::No);
        }
        sa.secrets = Some(kept);
        match accounts.replace(name, &PostParams::default(), &sa).await {
            Ok(_) => Ok(Requeue::No),
            Err(e) => {
                // The Secret is no use unreferenced; the retry makes another.
                if let Some(s) = created {
                    self.delete_secret(&s).await?;
                }
                if is_not_found(&e) {
                    return Ok(Requeue::No);
                }
                Err(e.into())
            }
        }
    }

    /// Whether a Secret listed in `sa.secrets` is a token of `sa` (as the cache sees it), and
    /// every token reference points at a Secret that exists.
    fn has_token(&self, sa: &ServiceAccount) -> bool {
        let namespace = sa.metadata.namespace.as_deref().unwrap_or_default();
        let name = sa.metadata.name.as_deref().unwrap_or_default();
        let prefix = format!("{name}-token-");
        let mut valid = false;
        for r in sa.secrets.iter().flatten() {
            let Some(ref_name) = r.name.as_deref() else {
                continue;
            };
            match self.ctx.informers.secrets.get(namespace, ref_name) {
                Some(s) if token_of(&s, sa) => valid = true,
                None if ref_name.starts_with(&prefix) => return false,
                _ => {}
            }
        }
        valid
    }

    async fn create_token(&self, sa: &ServiceAccount) -> Result<Secret> {
        let namespace = sa.metadata.namespace.clone().unwrap_or_default();
        let sa_name = sa.metadata.name.clone().unwrap_or_default();
        let uid = sa.metadata.uid.clone().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &namespace);
        let mut last = None;
        // A clash with an existing name is unlikely; try a few.
        for _ in 0..3 {
            let name = token_secret_name(&sa_name);
            let token = self.token(&namespace, &sa_name, &uid, &name)?;
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(namespace.clone()),
                    annotations: Some(BTreeMap::from([
                        (NAME_ANNOTATION.to_string(), sa_name.clone()),
                        (UID_ANNOTATION.to_string(), uid.clone()),
                    ])),
                    ..ObjectMeta::default()
                },
                type_: Some(TOKEN_TYPE.into()),
                data: Some(self.data(&namespace, token)),
                ..Secret::default()
            };
            match api.create(&PostParams::default(), &secret).await {
                Ok(s) => {
                    tracing::info!(secret = %format!("{namespace}/{name}"), "created service account token");
                    return Ok(s);
                }
                Err(e) if is_conflict(&e) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or_else(|| Error::Other("no token secret name".into()), Error::from))
    }

    fn data(&self, namespace: &str, token: String) -> BTreeMap<String, ByteString> {
        let mut data = BTreeMap::from([
            ("token".to_string(), ByteString(token.into_bytes())),
            (
                "namespace".to_string(),
                ByteString(namespace.as_bytes().to_vec()),
            ),
        ]);
        if let Some(ca) = &self.ctx.config.root_ca {
            data.insert("ca.crt".into(), ByteString(ca.as_bytes().to_vec()));
        }
        data
    }

    async fn sync_secret(&self, namespace: &str, name: &str) -> Result<Requeue> {
        let Some(secret) = self.ctx.informers.secrets.get(namespace, name) else {
            return Ok(Requeue::No);
        };
        if !is_token(&secret) || secret.metadata.deletion_timestamp.is_some() {
            return Ok(Requeue::No);
        }
        let Some(sa_name) = annotation(&secret, NAME_ANNOTATION) else {
            return Ok(Requeue::No);
        };
        let sa = match self.ctx.informers.service_accounts.get(namespace, sa_name) {
            Some(sa) if token_of(&secret, &sa) => Some((*sa).clone()),
            // The cache may be behind: only the API server may say the account is gone.
            _ => {
                let accounts: Api<ServiceAccount> =
                    Api::namespaced(self.ctx.client.clone(), namespace);
                accounts
                    .get_opt(sa_name)
                    .await?
                    .filter(|sa| token_of(&secret, sa))
            }
        };
        let Some(sa) = sa else {
            tracing::info!(secret = %format!("{namespace}/{name}"), "deleting the token of a service account that is gone");
            self.delete_secret(&secret).await?;
            return Ok(Requeue::No);
        };
        let root_ca = self.ctx.config.root_ca.as_deref();
        let uid = sa.metadata.uid.clone().unwrap_or_default();
        let missing = missing_data(secret.data.as_ref(), namespace, root_ca).unwrap_or_default();
        if missing.is_empty() && annotation(&secret, UID_ANNOTATION).is_some() {
            return Ok(Requeue::No);
        }
        let mut updated = (*secret).clone();
        let mut data = updated.data.take().unwrap_or_default();
        let token = match data.get("token").filter(|t| !t.0.is_empty()) {
            Some(t) => String::from_utf8_lossy(&t.0).into_owned(),
            None => self.token(namespace, sa_name, &uid, name)?,
        };
        data.extend(self.data(namespace, token));
        updated.data = Some(data);
        updated
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(UID_ANNOTATION.into(), uid);
        let api: Api<Secret> = Api::namespaced(self.ctx.client.clone(), namespace);
        match api.replace(name, &PostParams::default(), &updated).await {
            Ok(_) => {
                tracing::info!(secret = %format!("{namespace}/{name}"), "filled in service account token");
                Ok(Requeue::No)
            }
            Err(e) if is_not_found(&e) => Ok(Requeue::No),
            Err(e) => Err(e.into()),
        }
    }

    /// The cached token Secrets in `namespace` naming the account `name` that are not tokens
    /// of `sa` (all of them when there is no such account).
    fn stale_tokens(
        &self,
        namespace: &str,
        name: &str,
        sa: Option<&ServiceAccount>,
    ) -> Vec<Arc<Secret>> {
        self.ctx
            .informers
            .secrets
            .list_namespace(namespace)
            .into_iter()
            .filter(|s| {
                is_token(s)
                    && annotation(s, NAME_ANNOTATION) == Some(name)
                    && sa.is_none_or(|sa| !token_of(s, sa))
            })
            .collect()
    }

    /// Deletes `secret` if it is still the same object.
    async fn delete_secret(&self, secret: &Secret) -> Result<()> {
        let (Some(namespace), Some(name)) = (&secret.metadata.namespace, &secret.metadata.name)
        else {
            return Ok(());
        };
        let api: Api<Secret> = Api::namespaced(self.ctx.client.clone(), namespace);
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: secret.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_are_kubernetes_shaped() {
        let n = token_secret_name("default");
        let suffix = n.strip_prefix("default-token-").unwrap();
        assert_eq!(suffix.len(), 5);
        assert!(suffix.bytes().all(|b| ALPHANUMS.contains(&b)), "{n}");
        let long = token_secret_name(&"a".repeat(100));
        assert_eq!(long.len(), 63);
    }

    fn secret(name_ann: &str, uid_ann: Option<&str>) -> Secret {
        let mut ann = BTreeMap::from([(NAME_ANNOTATION.to_string(), name_ann.to_string())]);
        if let Some(u) = uid_ann {
            ann.insert(UID_ANNOTATION.into(), u.into());
        }
        Secret {
            metadata: ObjectMeta {
                annotations: Some(ann),
                ..Default::default()
            },
            type_: Some(TOKEN_TYPE.into()),
            ..Default::default()
        }
    }

    #[test]
    fn tokens_belong_to_one_incarnation_of_an_account() {
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some("builder".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(token_of(&secret("builder", Some("u1")), &sa));
        // A user's Secret without the uid yet: it is filled in for the current account.
        assert!(token_of(&secret("builder", None), &sa));
        assert!(!token_of(&secret("builder", Some("u0")), &sa));
        assert!(!token_of(&secret("other", Some("u1")), &sa));
        let mut opaque = secret("builder", Some("u1"));
        opaque.type_ = Some("Opaque".into());
        assert!(!token_of(&opaque, &sa));
    }

    #[test]
    fn missing_data_is_found() {
        assert_eq!(
            missing_data(None, "ns", Some("CA")).unwrap(),
            ["token", "namespace", "ca.crt"]
        );
        let full = BTreeMap::from([
            ("token".to_string(), ByteString(b"t".to_vec())),
            ("namespace".to_string(), ByteString(b"ns".to_vec())),
            ("ca.crt".to_string(), ByteString(b"CA".to_vec())),
        ]);
        assert!(missing_data(Some(&full), "ns", Some("CA")).is_none());
        assert!(missing_data(Some(&full), "ns", None).is_none());
        assert_eq!(
            missing_data(Some(&full), "ns", Some("NEW CA")).unwrap(),
            ["ca.crt"]
        );
        assert_eq!(
            missing_data(Some(&full), "other", None).unwrap(),
            ["namespace"]
        );
    }
}
