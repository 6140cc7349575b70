//! The three patch formats of `PATCH` requests, applied to the JSON form of a stored object as
//! the Kubernetes API server applies them:
//! - [`json_merge_patch`]: `application/merge-patch+json` (RFC 7386);
//! - [`json_patch`]: `application/json-patch+json` (RFC 6902, with the behaviour of the
//!   `evanphx/json-patch` v4 library Kubernetes uses);
//! - [`strategic_merge_patch`]: `application/strategic-merge-patch+json`, Kubernetes' merge
//!   with per-field list semantics (merge keys, `$patch`, `$retainKeys`,
//!   `$deleteFromPrimitiveList/`, `$setElementOrder/`), driven by the patch metadata published
//!   in the OpenAPI documents (see [`crate::openapi`]). kubectl sends these for `apply`
//!   (client-side), `edit`, `label`, `annotate`, `set image`, `rollout`, ...
//!
//! Results are JSON values still to be decoded into the typed object (and validated) by the
//! caller. Errors carry the HTTP code, reason and message Kubernetes answers with.

mod gofmt;
mod json6902;
mod strategic;

use serde_json::Value;

/// Largest number of operations accepted in one JSON patch, as in Kubernetes.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Why a patch could not be applied.
///
/// Each variant maps to the `Status` Kubernetes returns: see [`PatchError::code`],
/// [`PatchError::reason`] and [`PatchError::status_message`]. `Display` gives the detailed
/// message, which is what Kubernetes logs (and, except for [`PatchError::Rejected`], returns).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document is malformed for its type (400 BadRequest).
    #[error("{0}")]
    BadRequest(String),
    /// The patch is well-formed but cannot be applied to this object, e.g. a failed JSON patch
    /// `test` or a `remove` of a missing key (422 Invalid). Kubernetes answers these with a
    /// fixed message; the detail here is for logs.
    #[error("{0}")]
    Rejected(String),
    /// A JSON patch with more than [`MAX_JSON_PATCH_OPERATIONS`] operations (413).
    #[error("The allowed maximum operations in a JSON patch is {max}, got {count}")]
    TooManyOperations { max: usize, count: usize },
    /// Failures Kubernetes does not classify and reports as a 500 with an empty reason, such
    /// as an unknown `$patch` directive or a list element without its merge key.
    #[error("{0}")]
    Internal(String),
    /// Strategic merge patch asked for a kind without strategic-merge metadata (415).
    #[error(
        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )]
    StrategicMergeUnsupported,
}

impl PatchError {
    /// HTTP status code of the Kubernetes `Status`.
    pub fn code(&self) -> u16 {
        match self {
            PatchError::BadRequest(_) => 400,
            PatchError::Rejected(_) => 422,
            PatchError::TooManyOperations { .. } => 413,
            PatchError::Internal(_) => 500,
            PatchError::StrategicMergeUnsupported => 415,
        }
    }

    /// `reason` of the Kubernetes `Status`; `None` where Kubernetes leaves it empty.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            PatchError::BadRequest(_) => Some("BadRequest"),
            PatchError::Rejected(_) => Some("Invalid"),
            PatchError::TooManyOperations { .. } => Some("RequestEntityTooLarge"),
            PatchError::Internal(_) => None,
            PatchError::StrategicMergeUnsupported => Some("UnsupportedMediaType"),
        }
    }

    /// `message` of the Kubernetes `Status`.
    pub fn status_message(&self) -> String {
        match self {
            // Kubernetes builds these with NewGenericServerResponse(422, ...), which keeps only
            // its canned text; kubectl prints "The request is invalid: <this>".
            PatchError::Rejected(_) => {
                "the server rejected our request due to an error in our request".to_owned()
            }
            PatchError::TooManyOperations { .. } => format!("Request entity too large: {self}"),
            other => other.to_string(),
        }
    }
}

/// The patch media types of `PATCH` requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`
    Json,
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply; not handled by this module)
    Apply,
}

impl PatchType {
    /// The patch type of a request's `Content-Type` (parameters such as `charset` ignored).
    pub fn from_media_type(content_type: &str) -> Option<PatchType> {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        match media_type.to_ascii_lowercase().as_str() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Applies a JSON merge patch (RFC 7386): objects merge recursively, `null` deletes a key,
/// anything else (lists included) replaces.
pub fn json_merge_patch(target: &Value, patch: &Value) -> Value {
    let mut merged = target.clone();
    json_patch::merge(&mut merged, patch);
    merged
}

/// Applies a JSON patch (RFC 6902) the way Kubernetes does (`evanphx/json-patch` v4): the
/// operations apply in order and the first failure names the operation and path. A patch
/// that is not a list of operation objects is a [`PatchError::BadRequest`]; an operation that
/// does not apply is a [`PatchError::Rejected`].
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    json6902::apply(target, patch)
}

/// Applies a strategic merge patch to an object of the kind `(group, kind)` (`("", "Pod")`,
/// `("coordination.k8s.io", "Lease")`, `("autoscaling", "Scale")`).
///
/// Semantics are those of Kubernetes' `strategicpatch.StrategicMergeMapPatch` on the server:
/// maps merge and `null` deletes; lists whose field has `x-kubernetes-patch-strategy: merge`
/// merge element-wise by their merge key (or as a set of scalars), other lists are replaced;
/// `$patch: replace|delete` directives, `$retainKeys`, `$deleteFromPrimitiveList/<field>` and
/// `$setElementOrder/<field>` are honoured; new list elements are placed where Kubernetes
/// places them.
pub fn strategic_merge_patch(
    kind_key: (&str, &str),
    target: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    strategic::apply(kind_key, target, patch)
}

#[cfg(test)]
mod tests;
