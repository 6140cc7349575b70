//! Kubernetes `Status` errors: every failure the API server returns is one of these, with the
//! reason and code Kubernetes uses, so clients (kubectl, client-go, kube-rs, the Python client)
//! react to it as they would against Kubernetes.

use serde_json::{Value, json};

use keelson_api::validation::FieldError;

/// A failure the API server reports to its client as a `Status` object.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// Boxed: `Value` with preserved key order is large, and errors travel in every `Result`.
    pub details: Option<Box<Value>>,
    /// Extra response headers (e.g. `Retry-After`).
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

/// The group/kind naming used in Status details and messages: `pods`, `leases.coordination.k8s.io`.
pub fn qualified_resource(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

fn details(group: &str, kind: &str, name: &str) -> Value {
    let mut d = json!({ "kind": kind });
    if !name.is_empty() {
        d["name"] = json!(name);
    }
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(group: &str, plural: &str, name: &str, why: &str) -> Self {
        let res = qualified_resource(group, plural);
        let what = if name.is_empty() {
            res.clone()
        } else {
            format!("{res} \"{name}\"")
        };
        Self::new(403, "Forbidden", format!("{what} is forbidden: {why}"))
            .with_details(details(group, plural, name))
    }

    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        let res = qualified_resource(group, plural);
        Self::new(404, "NotFound", format!("{res} \"{name}\" not found"))
            .with_details(details(group, plural, name))
    }

    /// The server could not find the requested resource (unknown path or resource type).
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn method_not_allowed(what: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource: {what}"),
        )
    }

    pub fn not_acceptable(accepted: &str) -> Self {
        Self::new(
            406,
            "NotAcceptable",
            format!("only the following media types are accepted: {accepted}"),
        )
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        let res = qualified_resource(group, plural);
        Self::new(
            409,
            "AlreadyExists",
            format!("{res} \"{name}\" already exists"),
        )
        .with_details(details(group, plural, name))
    }

    pub fn conflict(group: &str, plural: &str, name: &str, why: &str) -> Self {
        let res = qualified_resource(group, plural);
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {res} \"{name}\": {why}"),
        )
        .with_details(details(group, plural, name))
    }

    pub fn modified(group: &str, plural: &str, name: &str) -> Self {
        Self::conflict(
            group,
            plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn too_large() -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        )
    }

    pub fn unsupported_media_type(ct: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf; got {ct:?}"
            ),
        )
    }

    /// 422 with one cause per field error, worded like Kubernetes:
    /// `Pod "x" is invalid: [spec.containers[0].image: Required value, ...]`.
    pub fn invalid(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let joined: Vec<String> = errors.iter().map(|e| e.to_string_with_field()).collect();
        let summary = if joined.len() == 1 {
            joined[0].clone()
        } else {
            format!("[{}]", joined.join(", "))
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field}))
            .collect();
        let gk = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let mut d = details(group, kind, name);
        d["causes"] = Value::Array(causes);
        Self::new(
            422,
            "Invalid",
            format!("{gk} \"{name}\" is invalid: {summary}"),
        )
        .with_details(d)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = (**d).clone();
        }
        s
    }
}

/// A `Status` reporting success (used by some deletes).
pub fn success_status(group: &str, kind: &str, name: &str, uid: Option<&str>) -> Value {
    let mut d = details(group, kind, name);
    if let Some(uid) = uid {
        d["uid"] = json!(uid);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": d,
    })
}

impl From<keelson_store::Error> for ApiError {
    fn from(e: keelson_store::Error) -> Self {
        match e {
            keelson_store::Error::Compacted {
                requested,
                compacted,
            } => ApiError::gone(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            keelson_store::Error::FutureRevision { requested, current } => ApiError::timeout(
                format!("Too large resource version: {requested}, current: {current}"),
            )
            .with_details(json!({"causes":[{"reason":"ResourceVersionTooLarge","message":"Too large resource version"}],"retryAfterSeconds":1})),
            other => ApiError::internal(format!("storage error: {other}")),
        }
    }
}
