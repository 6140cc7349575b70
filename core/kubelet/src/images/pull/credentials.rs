//! Registry credentials from image pull secrets: `kubernetes.io/dockerconfigjson`
//! (`.dockerconfigjson`: `{"auths": {registry: entry}}`) and the older
//! `kubernetes.io/dockercfg` (`.dockercfg`: `{registry: entry}`), where an entry has
//! `username` and `password`, or `auth` (base64 of `user:password`).

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The registry host as references name it (`docker.io`, `registry.example:5000`).
    pub registry: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(Deserialize, Default)]
struct Entry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
}

const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
const DOCKER_CFG: &str = "kubernetes.io/dockercfg";

/// The credentials an image pull secret holds. A secret of another type, or one that does
/// not parse, is an error naming the secret.
pub fn credentials_from_secret(secret: &Secret) -> Result<Vec<Credential>, String> {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let data = secret.data.clone().unwrap_or_default();
    let kind = secret.type_.as_deref().unwrap_or_default();
    let (key, entries) = match kind {
        DOCKER_CONFIG_JSON => (".dockerconfigjson", None),
        DOCKER_CFG => (".dockercfg", Some(())),
        other => {
            return Err(format!(
                "secret {name} has type {other:?}, not {DOCKER_CONFIG_JSON} or {DOCKER_CFG}"
            ));
        }
    };
    let Some(raw) = data.get(key) else {
        return Err(format!("secret {name} has no {key} key"));
    };
    let auths: BTreeMap<String, Entry> = if entries.is_some() {
        serde_json::from_slice(&raw.0).map_err(|e| format!("secret {name}: {key}: {e}"))?
    } else {
        serde_json::from_slice::<DockerConfig>(&raw.0)
            .map_err(|e| format!("secret {name}: {key}: {e}"))?
            .auths
    };
    let mut out = Vec::new();
    for (registry, entry) in auths {
        let (username, password) = if entry.username.is_empty() && !entry.auth.is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(entry.auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| format!("secret {name}: the auth of {registry} is not base64"))?;
            let (u, p) = decoded.split_once(':').ok_or_else(|| {
                format!("secret {name}: the auth of {registry} is not user:password")
            })?;
            (u.to_string(), p.to_string())
        } else {
            (entry.username, entry.password)
        };
        out.push(Credential {
            registry: registry_host(&registry),
            username,
            password,
        });
    }
    Ok(out)
}

/// The first credential for `host` (as references name registries).
pub fn credential_for<'a>(credentials: &'a [Credential], host: &str) -> Option<&'a Credential> {
    credentials.iter().find(|c| c.registry == host)
}

/// A docker config key (`https://index.docker.io/v1/`, `registry.example:5000`,
/// `http://host/path`) as the host references use.
fn registry_host(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(kind: &str, key: &str, json: &str) -> Secret {
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("pull".into()),
                ..Default::default()
            },
            type_: Some(kind.into()),
            data: Some(BTreeMap::from([(
                key.to_string(),
                ByteString(json.as_bytes().to_vec()),
            )])),
            ..Default::default()
        }
    }

    #[test]
    fn docker_config_json_and_dockercfg() {
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:s3cret:x");
        let json = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}},
                "registry.example:5000": {{"username": "amy", "password": "pw"}}}}}}"#
        );
        let creds =
            credentials_from_secret(&secret(DOCKER_CONFIG_JSON, ".dockerconfigjson", &json))
                .expect("parses");
        let hub = credential_for(&creds, "docker.io").expect("docker hub");
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("bob", "s3cret:x")
        );
        let local = credential_for(&creds, "registry.example:5000").expect("local");
        assert_eq!(local.username, "amy");
        assert!(credential_for(&creds, "quay.io").is_none());

        let cfg = credentials_from_secret(&secret(
            DOCKER_CFG,
            ".dockercfg",
            r#"{"http://10.0.0.1:5000/v2/": {"username": "u", "password": "p"}}"#,
        ))
        .expect("parses");
        assert_eq!(cfg[0].registry, "10.0.0.1:5000");
        assert!(!format!("{:?}", cfg[0]).contains("\"p\""));
    }

    #[test]
    fn wrong_secrets_are_named() {
        let err = credentials_from_secret(&secret("Opaque", "x", "{}")).expect_err("refused");
        assert!(err.contains("secret pull has type \"Opaque\""), "{err}");
        let err = credentials_from_secret(&secret(DOCKER_CONFIG_JSON, ".dockerconfigjson", "nope"))
            .expect_err("refused");
        assert!(err.contains(".dockerconfigjson"), "{err}");
    }
}
