//! Kubernetes legacy service-account tokens: the JWTs a token controller stores in
//! `kubernetes.io/service-account-token` Secrets and the API server accepts as bearer tokens.
//!
//! The claims are exactly those Kubernetes' legacy token generator writes (`iss`
//! `kubernetes/serviceaccount`, `sub` `system:serviceaccount:<ns>:<name>`, and the four
//! `kubernetes.io/serviceaccount/...` claims), so tokens read like Kubernetes' to tools that
//! decode them. Keelson signs them with ES256 (an ECDSA P-256 key); legacy tokens carry no
//! expiry, they stay valid while their Secret does. Checking that the Secret and the
//! ServiceAccount still exist is the API server's job: this module is pure.
//!
//! ```
//! use keelson_api::sa_token::{LegacyClaims, sign, verify};
//! # let key = rcgen::KeyPair::generate().unwrap();
//! # let (private_pem, public_pem) = (key.serialize_pem(), key.public_key_pem());
//! let claims = LegacyClaims::new("default", "builder", "0b6f-uid", "builder-token-x7k2p");
//! let token = sign(&private_pem, &claims).unwrap();
//! assert_eq!(verify(&public_pem, &token).unwrap(), claims);
//! ```

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The `iss` of every legacy service-account token.
pub const ISSUER: &str = "kubernetes/serviceaccount";

/// The only signing algorithm Keelson issues and accepts.
const ALGORITHM: Algorithm = Algorithm::ES256;

/// The user name of a service account: `system:serviceaccount:<namespace>:<name>`.
pub fn username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The claims of a Kubernetes legacy service-account token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyClaims {
    /// Always [`ISSUER`].
    pub iss: String,
    /// [`username`] of the service account.
    pub sub: String,
    #[serde(rename = "kubernetes.io/serviceaccount/namespace")]
    pub namespace: String,
    /// The Secret holding the token; the token is valid only while that Secret holds it.
    #[serde(rename = "kubernetes.io/serviceaccount/secret.name")]
    pub secret_name: String,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.name")]
    pub service_account_name: String,
    /// Ties the token to one incarnation of the service account: a re-created account with
    /// the same name does not inherit old tokens.
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.uid")]
    pub service_account_uid: String,
}

impl LegacyClaims {
    /// The claims for the token of service account `namespace/name` (uid `uid`) stored in the
    /// Secret `namespace/secret_name`.
    pub fn new(namespace: &str, name: &str, uid: &str, secret_name: &str) -> Self {
        Self {
            iss: ISSUER.to_string(),
            sub: username(namespace, name),
            namespace: namespace.to_string(),
            secret_name: secret_name.to_string(),
            service_account_name: name.to_string(),
            service_account_uid: uid.to_string(),
        }
    }

    /// The user name the token authenticates as.
    pub fn username(&self) -> String {
        username(&self.namespace, &self.service_account_name)
    }

    /// Checks what a signature cannot: the issuer, every claim present, and `sub` agreeing with
    /// the namespace and name claims.
    fn check(&self) -> Result<(), TokenError> {
        if self.iss != ISSUER {
            return Err(TokenError::Claims(format!(
                "issuer {:?} is not {ISSUER:?}",
                self.iss
            )));
        }
        for (claim, value) in [
            ("kubernetes.io/serviceaccount/namespace", &self.namespace),
            (
                "kubernetes.io/serviceaccount/secret.name",
                &self.secret_name,
            ),
            (
                "kubernetes.io/serviceaccount/service-account.name",
                &self.service_account_name,
            ),
            (
                "kubernetes.io/serviceaccount/service-account.uid",
                &self.service_account_uid,
            ),
        ] {
            if value.is_empty() {
                return Err(TokenError::Claims(format!("claim {claim} is empty")));
            }
        }
        let expected = self.username();
        if self.sub != expected {
            return Err(TokenError::Claims(format!(
                "sub {:?} does not name the service account {expected:?}",
                self.sub
            )));
        }
        Ok(())
    }
}

/// Why a token could not be made or was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("signing key is not a PKCS#8 PEM ECDSA P-256 key: {0}")]
    SigningKey(#[source] jsonwebtoken::errors::Error),
    #[error("verification key is not an SPKI PEM ECDSA P-256 key: {0}")]
    VerifyingKey(#[source] jsonwebtoken::errors::Error),
    #[error("signing the token failed: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
    /// Malformed, wrongly signed, or signed with another algorithm than ES256.
    #[error("invalid token: {0}")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    /// Correctly signed, but not a legacy service-account token.
    #[error("invalid token claims: {0}")]
    Claims(String),
}

/// Signs `claims` as an ES256 JWT with the PKCS#8 PEM private key `private_key_pem`.
pub fn sign(private_key_pem: &str, claims: &LegacyClaims) -> Result<String, TokenError> {
    let key =
        EncodingKey::from_ec_pem(private_key_pem.as_bytes()).map_err(TokenError::SigningKey)?;
    jsonwebtoken::encode(&Header::new(ALGORITHM), claims, &key).map_err(TokenError::Sign)
}

/// Verifies `token` against the SPKI PEM public key `public_key_pem` and returns its claims.
/// Only ES256 signatures are accepted (never `none`, never a MAC keyed with the public key);
/// the issuer must be [`ISSUER`] and `sub` must match the namespace and name claims.
pub fn verify(public_key_pem: &str, token: &str) -> Result<LegacyClaims, TokenError> {
    let key =
        DecodingKey::from_ec_pem(public_key_pem.as_bytes()).map_err(TokenError::VerifyingKey)?;
    let mut validation = Validation::new(ALGORITHM);
    // Legacy tokens have no expiry and no audience: they live as long as their Secret.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.set_issuer(&[ISSUER]);
    let data = jsonwebtoken::decode::<LegacyClaims>(token, &key, &validation)
        .map_err(TokenError::Invalid)?;
    data.claims.check()?;
    Ok(data.claims)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use base64::Engine as _;

    use super::*;

    fn keys() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        (key.serialize_pem(), key.public_key_pem())
    }

    fn claims() -> LegacyClaims {
        LegacyClaims::new("ns1", "robot", "5d1c2c6e-uid", "robot-token-abcde")
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn round_trip_with_kubernetes_claim_names() {
        let (private, public) = keys();
        let token = sign(&private, &claims()).unwrap();
        assert_eq!(verify(&public, &token).unwrap(), claims());

        let payload = token.split('.').nth(1).unwrap();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "iss": "kubernetes/serviceaccount",
                "sub": "system:serviceaccount:ns1:robot",
                "kubernetes.io/serviceaccount/namespace": "ns1",
                "kubernetes.io/serviceaccount/secret.name": "robot-token-abcde",
                "kubernetes.io/serviceaccount/service-account.name": "robot",
                "kubernetes.io/serviceaccount/service-account.uid": "5d1c2c6e-uid",
            })
        );
        assert_eq!(claims().username(), "system:serviceaccount:ns1:robot");
    }

    #[test]
    fn tampered_payload_is_rejected() {
        let (private, public) = keys();
        let token = sign(&private, &claims()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut forged = claims();
        forged.service_account_name = "admin".into();
        forged.sub = forged.username();
        let payload = b64(&serde_json::to_vec(&forged).unwrap());
        let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
        assert!(matches!(
            verify(&public, &tampered),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn another_key_is_rejected() {
        let (private, _) = keys();
        let (_, other_public) = keys();
        let token = sign(&private, &claims()).unwrap();
        assert!(matches!(
            verify(&other_public, &token),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn alg_none_and_other_algorithms_are_rejected() {
        let (_, public) = keys();
        let payload = b64(&serde_json::to_vec(&claims()).unwrap());
        for header in [
            r#"{"alg":"none","typ":"JWT"}"#,
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"alg":"ES384","typ":"JWT"}"#,
        ] {
            let token = format!("{}.{payload}.", b64(header.as_bytes()));
            assert!(
                matches!(verify(&public, &token), Err(TokenError::Invalid(_))),
                "{header}"
            );
        }
        assert!(verify(&public, "not-a-jwt").is_err());
    }

    #[test]
    fn wrong_issuer_is_rejected() {
        let (private, public) = keys();
        let mut c = claims();
        c.iss = "https://kubernetes.default.svc".into();
        let token = sign(&private, &c).unwrap();
        assert!(verify(&public, &token).is_err());
    }

    #[test]
    fn sub_must_match_namespace_and_name() {
        let (private, public) = keys();
        let mut c = claims();
        c.sub = username("kube-system", "robot");
        let token = sign(&private, &c).unwrap();
        assert!(matches!(
            verify(&public, &token),
            Err(TokenError::Claims(_))
        ));

        let mut c = claims();
        c.service_account_uid.clear();
        let token = sign(&private, &c).unwrap();
        assert!(matches!(
            verify(&public, &token),
            Err(TokenError::Claims(_))
        ));
    }

    #[test]
    fn bad_keys_are_reported() {
        let (private, public) = keys();
        assert!(matches!(
            sign(&public, &claims()),
            Err(TokenError::SigningKey(_))
        ));
        assert!(matches!(
            verify(&private, "a.b.c"),
            Err(TokenError::VerifyingKey(_))
        ));
    }
}
