//! Kubernetes API knowledge for Keelson, with no I/O (in the spirit of `kube-core`).
//!
//! - [`registry`]: the resources Keelson serves (group, version, kind, plural, scope, verbs, ...).
//! - [`object`]: decoding bodies into the typed `k8s-openapi` structs (reporting unknown fields)
//!   and Kubernetes defaulting.
//! - [`validation`]: field validation producing Kubernetes `Status` causes.
//! - [`selectors`]: label and field selectors.
//! - [`table`]: server-side printing (`as=Table`) columns and cells per kind.
//! - [`openapi`]: OpenAPI v2/v3 documents for discovery, `kubectl explain` and validation.
//! - [`patch`]: JSON merge patch, JSON patch and strategic merge patch.
//! - [`sa_token`]: Kubernetes legacy service-account tokens (sign and verify).

pub use k8s_openapi;

pub mod gnostic;
pub mod object;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod sa_token;
pub mod selectors;
pub mod table;
pub mod tls;
pub mod validation;
