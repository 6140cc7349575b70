//! Deletion propagation: what a delete means for the object's dependents, recorded as the
//! garbage collector's finalizers, as Kubernetes' generic registry does it.
//!
//! `Orphan` keeps the object (with the `orphan` finalizer) until the garbage collector has
//! removed its owner references from the dependents; `Foreground` keeps it (with
//! `foregroundDeletion`) until the dependents are gone; `Background` deletes it at once and
//! leaves the dependents to the collector. The collector removes its finalizer when done, and
//! removing the last finalizer completes the deletion.
//!
//! Keelson's collector follows only some kinds (see [`COLLECTED`]); an object of any other kind
//! never gets a collector finalizer, since nothing would ever remove it: for those kinds
//! `Orphan` and `Foreground` delete like `Background` (Kubernetes' collector follows every
//! kind; this is a deviation).

use serde_json::Value;

use keelson_api::registry::ResourceInfo;
use keelson_api::validation::FieldError;

use crate::status::{ApiError, ApiResult};

/// The finalizer of an orphaning delete.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// The finalizer of a foreground (dependents first) delete.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// `DeleteOptions.propagationPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

impl Propagation {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "Orphan" => Some(Self::Orphan),
            "Background" => Some(Self::Background),
            "Foreground" => Some(Self::Foreground),
            _ => None,
        }
    }

    fn finalizer(self) -> Option<&'static str> {
        match self {
            Self::Orphan => Some(ORPHAN_FINALIZER),
            Self::Foreground => Some(FOREGROUND_FINALIZER),
            Self::Background => None,
        }
    }
}

fn invalid(errors: &[FieldError]) -> ApiError {
    ApiError::invalid("meta.k8s.io", "DeleteOptions", "", errors)
}

/// The policy `opts` (a DeleteOptions object) asks for, if any: `propagationPolicy`, or the
/// legacy `orphanDependents` (true is Orphan, false is Background). Invalid options are
/// refused as Kubernetes' `ValidateDeleteOptions` refuses them: 422 Invalid on
/// `DeleteOptions.meta.k8s.io`.
pub fn requested(opts: &Value) -> ApiResult<Option<Propagation>> {
    let orphan = match opts.get("orphanDependents") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "orphanDependents must be a boolean, got {other}"
            )));
        }
    };
    let policy = match opts.get("propagationPolicy") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy must be a string, got {other}"
            )));
        }
    };
    match (orphan, policy) {
        (Some(_), Some(p)) => Err(invalid(&[FieldError {
            reason: "FieldValueInvalid",
            field: "propagationPolicy".into(),
            message: format!(
                "Invalid value: {p:?}: orphanDependents and deletionPropagation cannot be both set"
            ),
        }])),
        (Some(true), None) => Ok(Some(Propagation::Orphan)),
        (Some(false), None) => Ok(Some(Propagation::Background)),
        (None, Some(p)) => match Propagation::parse(p) {
            Some(p) => Ok(Some(p)),
            None => Err(invalid(&[FieldError {
                reason: "FieldValueNotSupported",
                field: "propagationPolicy".into(),
                message: format!(
                    "Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                ),
            }])),
        },
        (None, None) => Ok(None),
    }
}

/// The core v1 resources Keelson's garbage collector follows (its `Kind::ALL`, in
/// core/controllers/src/gc.rs): only their objects get the collector's finalizers. Keep the two
/// in step: a kind listed here that the collector does not follow would stay Terminating for
/// ever after `--cascade=orphan` or `--cascade=foreground`.
pub const COLLECTED: [&str; 10] = [
    "pods",
    "replicationcontrollers",
    "services",
    "endpoints",
    "secrets",
    "configmaps",
    "serviceaccounts",
    "resourcequotas",
    "nodes",
    "namespaces",
];

/// Whether the garbage collector follows objects of `info` (see [`COLLECTED`]).
fn collected(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.version == "v1" && COLLECTED.contains(&info.plural)
}

/// The policy when a delete asks for none. Kubernetes keeps orphaning as the default of v1
/// ReplicationControllers for backward compatibility; everything else Keelson serves deletes
/// its dependents in the background.
fn default_for(info: &ResourceInfo) -> Propagation {
    if info.group.is_empty() && info.version == "v1" && info.plural == "replicationcontrollers" {
        Propagation::Orphan
    } else {
        Propagation::Background
    }
}

/// The finalizers `obj` should carry after a delete asking for `requested`, or None when they
/// stay as they are. An explicit policy wins; without one, a garbage-collection finalizer the
/// object already has (from an earlier delete) decides, then the kind's default. Each
/// finalizer appears once, and the other's is dropped (a foreground delete of an object being
/// orphaned turns it into a foreground delete, as in Kubernetes). Objects the collector does
/// not follow are deleted in the background whatever the policy, and lose a collector finalizer
/// they carry (one nobody would remove), so deleting such a stuck object again lets it go.
pub fn finalizers_after_delete(
    info: &ResourceInfo,
    obj: &Value,
    requested: Option<Propagation>,
) -> Option<Vec<Value>> {
    let current: Vec<&str> = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let policy = if collected(info) {
        requested
            .or_else(|| {
                current.iter().find_map(|f| match *f {
                    ORPHAN_FINALIZER => Some(Propagation::Orphan),
                    FOREGROUND_FINALIZER => Some(Propagation::Foreground),
                    _ => None,
                })
            })
            .unwrap_or_else(|| default_for(info))
    } else {
        Propagation::Background
    };
    let mut wanted: Vec<&str> = current
        .iter()
        .copied()
        .filter(|f| *f != ORPHAN_FINALIZER && *f != FOREGROUND_FINALIZER)
        .collect();
    wanted.extend(policy.finalizer());
    let same = wanted.len() == current.len() && wanted.iter().all(|f| current.contains(f));
    (!same).then(|| wanted.into_iter().map(Value::from).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use keelson_api::registry::lookup;

    use super::*;

    fn rc() -> &'static ResourceInfo {
        lookup("", "v1", "replicationcontrollers").unwrap()
    }

    fn services() -> &'static ResourceInfo {
        lookup("", "v1", "services").unwrap()
    }

    fn with_finalizers(f: &[&str]) -> Value {
        json!({"metadata": {"name": "x", "finalizers": f}})
    }

    #[test]
    fn options_parse_like_kubernetes() {
        assert_eq!(requested(&json!({})).unwrap(), None);
        assert_eq!(
            requested(&json!({"propagationPolicy": "Orphan"})).unwrap(),
            Some(Propagation::Orphan)
        );
        assert_eq!(
            requested(&json!({"propagationPolicy": "Foreground"})).unwrap(),
            Some(Propagation::Foreground)
        );
        assert_eq!(
            requested(&json!({"orphanDependents": true})).unwrap(),
            Some(Propagation::Orphan)
        );
        assert_eq!(
            requested(&json!({"orphanDependents": false})).unwrap(),
            Some(Propagation::Background)
        );

        let e = requested(&json!({"propagationPolicy": "Sideways"})).unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"Sideways\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
        );
        let e = requested(&json!({"propagationPolicy": "Orphan", "orphanDependents": true}))
            .unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.contains("cannot be both set"), "{}", e.message);
        assert_eq!(
            requested(&json!({"propagationPolicy": 3}))
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn finalizers_follow_the_policy() {
        let plain = json!({"metadata": {"name": "x"}});
        assert_eq!(
            finalizers_after_delete(services(), &plain, Some(Propagation::Orphan)),
            Some(vec![json!("orphan")])
        );
        assert_eq!(
            finalizers_after_delete(services(), &plain, Some(Propagation::Foreground)),
            Some(vec![json!("foregroundDeletion")])
        );
        assert_eq!(
            finalizers_after_delete(services(), &plain, Some(Propagation::Background)),
            None
        );
        assert_eq!(finalizers_after_delete(services(), &plain, None), None);

        // Other finalizers are kept; the GC finalizer is not added twice.
        let mine = with_finalizers(&["example.com/hold"]);
        assert_eq!(
            finalizers_after_delete(services(), &mine, Some(Propagation::Orphan)),
            Some(vec![json!("example.com/hold"), json!("orphan")])
        );
        let orphaning = with_finalizers(&["orphan", "example.com/hold"]);
        assert_eq!(
            finalizers_after_delete(services(), &orphaning, Some(Propagation::Orphan)),
            None
        );
        // With no policy, the finalizer already there decides.
        assert_eq!(finalizers_after_delete(services(), &orphaning, None), None);
        // An explicit other policy replaces it.
        assert_eq!(
            finalizers_after_delete(services(), &orphaning, Some(Propagation::Foreground)),
            Some(vec![json!("example.com/hold"), json!("foregroundDeletion")])
        );
        assert_eq!(
            finalizers_after_delete(services(), &orphaning, Some(Propagation::Background)),
            Some(vec![json!("example.com/hold")])
        );
    }

    #[test]
    fn kinds_the_collector_does_not_follow_get_no_collector_finalizer() {
        let plain = json!({"metadata": {"name": "x"}});
        for (group, version, plural) in [
            ("", "v1", "podtemplates"),
            ("", "v1", "events"),
            ("", "v1", "limitranges"),
            ("coordination.k8s.io", "v1", "leases"),
        ] {
            let info = lookup(group, version, plural).unwrap();
            for policy in [
                None,
                Some(Propagation::Orphan),
                Some(Propagation::Foreground),
                Some(Propagation::Background),
            ] {
                assert_eq!(
                    finalizers_after_delete(info, &plain, policy),
                    None,
                    "{plural} {policy:?}"
                );
            }
            // A collector finalizer nobody will remove goes; others stay.
            let stuck = with_finalizers(&["foregroundDeletion", "example.com/hold"]);
            assert_eq!(
                finalizers_after_delete(info, &stuck, Some(Propagation::Foreground)),
                Some(vec![json!("example.com/hold")]),
                "{plural}"
            );
        }
        for plural in COLLECTED {
            let info = lookup("", "v1", plural).unwrap();
            assert_eq!(
                finalizers_after_delete(info, &plain, Some(Propagation::Foreground)),
                Some(vec![json!("foregroundDeletion")]),
                "{plural}"
            );
        }
    }

    #[test]
    fn replication_controllers_orphan_by_default() {
        let plain = json!({"metadata": {"name": "x"}});
        assert_eq!(
            finalizers_after_delete(rc(), &plain, None),
            Some(vec![json!("orphan")])
        );
        assert_eq!(
            finalizers_after_delete(rc(), &plain, Some(Propagation::Background)),
            None
        );
    }
}
