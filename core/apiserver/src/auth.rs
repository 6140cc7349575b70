//! Who is asking: users from verified client certificates and from service-account bearer
//! tokens.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use serde_json::Value;

use keelson_api::sa_token::{self, TokenError};

use crate::status::ApiError;

/// The group of every service account, and the prefix of each namespace's group.
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// The group of every authenticated user.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// The authenticated user of a request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A user from a client certificate: CN is the name, each O a group; every authenticated
    /// user is also in `system:authenticated`, as in Kubernetes.
    pub fn from_cert(name: String, mut groups: Vec<String>) -> Self {
        if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
            groups.push(AUTHENTICATED_GROUP.into());
        }
        Self {
            name,
            uid: String::new(),
            groups,
        }
    }

    /// The user of service account `namespace/name`, with the groups Kubernetes gives it.
    pub fn service_account(namespace: &str, name: &str, uid: &str) -> Self {
        Self {
            name: sa_token::username(namespace, name),
            uid: uid.to_string(),
            groups: vec![
                SERVICE_ACCOUNTS_GROUP.to_string(),
                format!("{SERVICE_ACCOUNTS_GROUP}:{namespace}"),
                AUTHENTICATED_GROUP.to_string(),
            ],
        }
    }
}

/// Bearer tokens from a static token file (`--token-auth-file`), in Kubernetes' format: one
/// `token,user,uid[,"group1,group2"]` per line; blank lines and lines starting with `#` are
/// skipped. Keelson's agents join with such a token (`keelson server` writes one for them).
#[derive(Debug, Default)]
pub struct StaticTokens {
    users: std::collections::HashMap<String, UserInfo>,
}

/// Why a static token file was refused, with its line.
#[derive(Debug, thiserror::Error)]
#[error("token file {path}, line {line}: {reason}")]
pub struct TokenFileError {
    pub path: String,
    pub line: usize,
    pub reason: String,
}

impl StaticTokens {
    /// Parses the file's text; `path` only names it in errors.
    pub fn parse(path: &str, text: &str) -> Result<Self, TokenFileError> {
        let mut users = std::collections::HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: &str| TokenFileError {
                path: path.to_string(),
                line: i + 1,
                reason: reason.to_string(),
            };
            let fields = split_csv(line).map_err(err)?;
            if fields.len() < 3 {
                return Err(err("expected token,user,uid[,\"groups\"]"));
            }
            let (token, name, uid) = (&fields[0], &fields[1], &fields[2]);
            if token.is_empty() || name.is_empty() {
                return Err(err("the token and the user name must not be empty"));
            }
            let mut groups: Vec<String> = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
                groups.push(AUTHENTICATED_GROUP.into());
            }
            let user = UserInfo {
                name: name.clone(),
                uid: uid.clone(),
                groups,
            };
            if users.insert(token.clone(), user).is_some() {
                return Err(err("the token is listed twice"));
            }
        }
        Ok(Self { users })
    }

    /// The user of `token`, if the file lists it.
    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        self.users.get(token).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// Splits one CSV line: fields separated by commas; a field in double quotes may hold commas,
/// and `""` inside it is a quote.
fn split_csv(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted field"),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("text after a quoted field"),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field.trim().to_string());
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
            fields.push(field.trim().to_string());
        }
    }
}

/// The `SelfSubjectReview` answering `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`
/// (`kubectl auth whoami`): the request's own user, as Kubernetes reports it (empty `uid` and
/// `groups` left out).
pub fn self_subject_review(user: &UserInfo) -> Value {
    let mut info = serde_json::json!({ "username": user.name });
    if !user.uid.is_empty() {
        info["uid"] = Value::from(user.uid.as_str());
    }
    if !user.groups.is_empty() {
        info["groups"] = Value::from(user.groups.clone());
    }
    serde_json::json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "status": {"userInfo": info},
    })
}

/// The token of an `Authorization: Bearer <token>` header value, if it is one. The scheme is
/// case-insensitive, as in Kubernetes.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

/// Where the token authenticator reads Secrets and ServiceAccounts: the server's watch cache
/// in front of its store, or a map in tests.
#[async_trait]
pub trait ObjectSource: Send + Sync {
    /// The object `namespace/name` of the core/v1 resource `plural`, if it exists.
    async fn get(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, ApiError>;
}

/// Why a bearer token was refused. Clients only ever see 401 Unauthorized; the reason is
/// logged.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("token has been invalidated: secret {namespace}/{name} is gone")]
    SecretGone { namespace: String, name: String },
    #[error("token does not match the copy in secret {namespace}/{name}")]
    TokenMismatch { namespace: String, name: String },
    #[error("service account {namespace}/{name} is gone")]
    ServiceAccountGone { namespace: String, name: String },
    #[error("service account {namespace}/{name} has uid {actual}, the token names {expected}")]
    UidMismatch {
        namespace: String,
        name: String,
        expected: String,
        actual: String,
    },
    #[error("reading {what}: {source}")]
    Lookup {
        what: String,
        #[source]
        source: ApiError,
    },
}

/// Authenticates Kubernetes legacy service-account tokens, as kube-apiserver's legacy token
/// authenticator does: the signature must verify with the service-account public key, the
/// Secret named in the token must still hold exactly this token, and the ServiceAccount must
/// still exist with the uid the token names. Deleting the Secret (or the account) revokes the
/// token.
pub struct TokenAuthenticator {
    public_key_pem: String,
    objects: Arc<dyn ObjectSource>,
}

impl TokenAuthenticator {
    pub fn new(public_key_pem: String, objects: Arc<dyn ObjectSource>) -> Self {
        Self {
            public_key_pem,
            objects,
        }
    }

    /// The user `token` authenticates, or why it does not.
    pub async fn authenticate(&self, token: &str) -> Result<UserInfo, AuthError> {
        let claims = sa_token::verify(&self.public_key_pem, token)?;
        let ns = claims.namespace.as_str();

        let secret_name = claims.secret_name.as_str();
        let secret = self.lookup("secrets", ns, secret_name).await?;
        let gone = || AuthError::SecretGone {
            namespace: ns.to_string(),
            name: secret_name.to_string(),
        };
        let secret = secret.ok_or_else(gone)?;
        if being_deleted(&secret) {
            return Err(gone());
        }
        // Secret data is base64 in the object; compare the decoded bytes.
        let stored = secret
            .pointer("/data/token")
            .and_then(Value::as_str)
            .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok());
        if stored.as_deref() != Some(token.as_bytes()) {
            return Err(AuthError::TokenMismatch {
                namespace: ns.to_string(),
                name: secret_name.to_string(),
            });
        }

        let sa_name = claims.service_account_name.as_str();
        let sa = self.lookup("serviceaccounts", ns, sa_name).await?;
        let sa =
            sa.filter(|sa| !being_deleted(sa))
                .ok_or_else(|| AuthError::ServiceAccountGone {
                    namespace: ns.to_string(),
                    name: sa_name.to_string(),
                })?;
        let uid = sa
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if uid != claims.service_account_uid {
            return Err(AuthError::UidMismatch {
                namespace: ns.to_string(),
                name: sa_name.to_string(),
                expected: claims.service_account_uid.clone(),
                actual: uid.to_string(),
            });
        }
        Ok(UserInfo::service_account(ns, sa_name, uid))
    }

    async fn lookup(&self, plural: &str, ns: &str, name: &str) -> Result<Option<Value>, AuthError> {
        self.objects
            .get(plural, ns, name)
            .await
            .map_err(|source| AuthError::Lookup {
                what: format!("{plural} {ns}/{name}"),
                source,
            })
    }
}

fn being_deleted(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

/// Objects read through the watch cache, falling back to the store for what the cache does
/// not hold yet (an object created a moment ago).
pub(crate) struct CachedObjects {
    pub store: Arc<dyn keelson_store::Store>,
    pub cache: Arc<crate::watchcache::WatchCache>,
}

#[async_trait]
impl ObjectSource for CachedObjects {
    async fn get(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        let key = format!(
            "{}{plural}/{namespace}/{name}",
            crate::watchcache::REGISTRY_PREFIX
        );
        if let Some(obj) = self.cache.get(plural, &key) {
            return Ok(Some(obj.value.clone()));
        }
        match self.store.get(&key).await? {
            Some(kv) => serde_json::from_slice(&kv.value)
                .map(Some)
                .map_err(|e| ApiError::internal(format!("stored object {key} is not JSON: {e}"))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use keelson_api::sa_token::LegacyClaims;
    use serde_json::json;

    use super::*;

    #[test]
    fn static_token_file() {
        let text = "# agents\n\nabc123,keelson-node,n-1,\"system:nodes,ops\"\nxyz,alice,a-1\n";
        let tokens = StaticTokens::parse("t.csv", text).unwrap();
        let node = tokens.authenticate("abc123").unwrap();
        assert_eq!(node.name, "keelson-node");
        assert_eq!(node.uid, "n-1");
        assert_eq!(
            node.groups,
            ["system:nodes", "ops", AUTHENTICATED_GROUP].map(String::from)
        );
        assert_eq!(
            tokens.authenticate("xyz").unwrap().groups,
            [AUTHENTICATED_GROUP]
        );
        assert!(tokens.authenticate("nope").is_none());
        assert!(tokens.authenticate("").is_none());
    }

    #[test]
    fn bad_static_token_files_name_the_line() {
        for (text, line) in [
            ("ok,u,1\nonly-two,fields\n", 2),
            ("a,u,1\na,v,2\n", 2),
            ("\"open,u,1\n", 1),
            (",u,1\n", 1),
        ] {
            let err = StaticTokens::parse("t.csv", text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.to_string().contains("t.csv"), "{err}");
        }
    }

    #[derive(Default)]
    struct Objects(Mutex<HashMap<String, Value>>);

    impl Objects {
        fn put(&self, plural: &str, ns: &str, name: &str, v: Value) {
            self.0
                .lock()
                .unwrap()
                .insert(format!("{plural}/{ns}/{name}"), v);
        }
        fn remove(&self, plural: &str, ns: &str, name: &str) {
            self.0
                .lock()
                .unwrap()
                .remove(&format!("{plural}/{ns}/{name}"));
        }
    }

    #[async_trait]
    impl ObjectSource for Objects {
        async fn get(&self, plural: &str, ns: &str, name: &str) -> Result<Option<Value>, ApiError> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .get(&format!("{plural}/{ns}/{name}"))
                .cloned())
        }
    }

    struct Fixture {
        objects: Arc<Objects>,
        auth: TokenAuthenticator,
        private: String,
        token: String,
    }

    /// Service account ns1/robot (uid u-1) with its token in Secret ns1/robot-token.
    fn fixture() -> Fixture {
        let key = rcgen::KeyPair::generate().unwrap();
        let private = key.serialize_pem();
        let token = sa_token::sign(
            &private,
            &LegacyClaims::new("ns1", "robot", "u-1", "robot-token"),
        )
        .unwrap();
        let objects = Arc::new(Objects::default());
        objects.put(
            "serviceaccounts",
            "ns1",
            "robot",
            json!({"metadata": {"name": "robot", "namespace": "ns1", "uid": "u-1"}}),
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(&token);
        objects.put(
            "secrets",
            "ns1",
            "robot-token",
            json!({"metadata": {"name": "robot-token", "namespace": "ns1"}, "data": {"token": b64}}),
        );
        let auth = TokenAuthenticator::new(key.public_key_pem(), objects.clone());
        Fixture {
            objects,
            auth,
            private,
            token,
        }
    }

    #[tokio::test]
    async fn valid_token_is_the_service_account() {
        let f = fixture();
        let user = f.auth.authenticate(&f.token).await.unwrap();
        assert_eq!(
            user,
            UserInfo {
                name: "system:serviceaccount:ns1:robot".into(),
                uid: "u-1".into(),
                groups: vec![
                    "system:serviceaccounts".into(),
                    "system:serviceaccounts:ns1".into(),
                    "system:authenticated".into(),
                ],
            }
        );
    }

    #[tokio::test]
    async fn deleted_secret_revokes_the_token() {
        let f = fixture();
        f.objects.remove("secrets", "ns1", "robot-token");
        assert!(matches!(
            f.auth.authenticate(&f.token).await,
            Err(AuthError::SecretGone { .. })
        ));
    }

    #[tokio::test]
    async fn secret_holding_another_token_rejects() {
        let f = fixture();
        // The secret now holds another token (re-issued): the old one no longer counts.
        let other = sa_token::sign(
            &f.private,
            &LegacyClaims::new("ns1", "robot", "u-1", "robot-token-2"),
        )
        .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&other);
        f.objects.put(
            "secrets",
            "ns1",
            "robot-token",
            json!({"metadata": {"name": "robot-token"}, "data": {"token": b64}}),
        );
        assert!(matches!(
            f.auth.authenticate(&f.token).await,
            Err(AuthError::TokenMismatch { .. })
        ));
    }

    #[tokio::test]
    async fn recreated_or_deleted_service_account_rejects() {
        let f = fixture();
        f.objects.put(
            "serviceaccounts",
            "ns1",
            "robot",
            json!({"metadata": {"name": "robot", "uid": "u-2"}}),
        );
        assert!(matches!(
            f.auth.authenticate(&f.token).await,
            Err(AuthError::UidMismatch { .. })
        ));
        f.objects.remove("serviceaccounts", "ns1", "robot");
        assert!(matches!(
            f.auth.authenticate(&f.token).await,
            Err(AuthError::ServiceAccountGone { .. })
        ));
    }

    #[tokio::test]
    async fn forged_token_rejects() {
        let f = fixture();
        let other = rcgen::KeyPair::generate().unwrap();
        let forged = sa_token::sign(
            &other.serialize_pem(),
            &LegacyClaims::new("ns1", "robot", "u-1", "robot-token"),
        )
        .unwrap();
        assert!(matches!(
            f.auth.authenticate(&forged).await,
            Err(AuthError::Token(_))
        ));
        assert!(matches!(
            f.auth.authenticate("made-up").await,
            Err(AuthError::Token(_))
        ));
    }

    #[test]
    fn review_shows_the_user() {
        let review = self_subject_review(&UserInfo::service_account("ns1", "robot", "u-1"));
        assert_eq!(
            review,
            json!({
                "kind": "SelfSubjectReview",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": null},
                "status": {"userInfo": {
                    "username": "system:serviceaccount:ns1:robot",
                    "uid": "u-1",
                    "groups": ["system:serviceaccounts", "system:serviceaccounts:ns1", "system:authenticated"],
                }},
            })
        );
        let admin = UserInfo::from_cert("admin".into(), vec!["system:masters".into()]);
        assert_eq!(
            self_subject_review(&admin)["status"]["userInfo"],
            json!({"username": "admin", "groups": ["system:masters", "system:authenticated"]})
        );
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer_token("Bearer abc.def"), Some("abc.def"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Basic dXNlcjpwdw=="), None);
        assert_eq!(bearer_token("Bearer a b"), None);
        assert_eq!(bearer_token("abc"), None);
    }
}
