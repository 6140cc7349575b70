//! The scheduler's policy configuration: a Kubernetes v1 `Policy` file, or v1's
//! `DefaultProvider` when there is none.
//!
//! A v1 file is accepted as written for kube-scheduler's `--policy-config-file`:
//!
//! ```json
//! {"kind": "Policy", "apiVersion": "v1",
//!  "predicates": [{"name": "PodFitsPorts"}, {"name": "PodFitsResources"}],
//!  "priorities": [{"name": "LeastRequestedPriority", "weight": 1}]}
//! ```
//!
//! Keelson adds one kind of entry: instead of a built-in `name`, a predicate or priority may
//! name a plugin file (`{"path": "/x/policy.wasm", "options": {...}, "name": "zones"}`,
//! `.wasm` or `.so`); a predicate entry runs the plugin's filter, a priority entry its score.
//!
//! A plugin entry may also say what a failed call of the plugin's (an error, a trap, a missed
//! deadline) means, in the words of Kubernetes' admission webhooks:
//!
//! - `"failurePolicy": "Fail"`, the default: the cycle fails and the pod is retried with
//!   backoff ([`FailurePolicy::FailClosed`]);
//! - `"failurePolicy": "Ignore"`: the plugin is left out for the rest of that cycle (its
//!   filter passes every node, its score counts for nothing) and the failure is logged and
//!   counted in the plugin's `failed_open` metric ([`FailurePolicy::FailOpen`]).
//!
//! Either way, a plugin that answers `pre-filter` or `filter` with an error of kind
//! `unschedulable` or `unresolvable` has judged the pod, not failed: the pod is unschedulable in
//! that cycle, with the plugin's message as the reason. Any other value of `failurePolicy` is an
//! error, and so is a `failurePolicy` on a built-in entry, which cannot fail that way.
//!
//! ```json
//! {"kind": "Policy", "apiVersion": "v1",
//!  "priorities": [{"name": "LeastRequestedPriority", "weight": 1},
//!                 {"path": "zones.wasm", "weight": 2, "failurePolicy": "Ignore"}]}
//! ```
//!
//! Rules, as v1 applies them: unknown fields are errors naming the field; an unknown policy
//! name is an error naming it; a priority's weight defaults to 1 and a weight-0 priority is
//! left out; with no priorities left, `EqualPriority` (weight 1) ranks nodes. A list that is
//! absent (not empty) gets the `DefaultProvider`'s entries, as later v1 releases do.

use std::path::{Path, PathBuf};

use keelson_plugin_host::FailurePolicy;
use keelson_scheduler_policies::{Builtin, DEFAULT_PREDICATES, DEFAULT_PRIORITIES, PolicyKind};
use serde::Deserialize;
use serde_json::Value;

use crate::error::config_error;
use crate::{Error, Result};

/// The whole policy: predicates in the order they run, then priorities.
///
/// ```
/// use keelson_scheduler::config::PolicyConfig;
/// let c = PolicyConfig::from_json(
///     r#"{"kind":"Policy","apiVersion":"v1","predicates":[{"name":"HostName"}],"priorities":[]}"#,
/// ).unwrap();
/// assert_eq!(c.predicates[0].name, "HostName");
/// assert_eq!(c.priorities[0].name, "EqualPriority");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// Predicates (filters), in order; the first one a node fails is the node's reason.
    pub predicates: Vec<PolicyEntry>,
    /// Priorities (scores) with their weights, none of them 0.
    pub priorities: Vec<PolicyEntry>,
}

/// One predicate or priority.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyEntry {
    /// The name the entry gave (for a plugin, its `name` or else the file's stem).
    pub name: String,
    /// The weight of a priority (at least 1); 0 for predicates.
    pub weight: u32,
    /// What runs it.
    pub source: PolicySource,
    /// What a failed call of a plugin entry's means (`"failurePolicy"`, see the
    /// [module docs](self)); always [`FailurePolicy::FailClosed`] for built-in entries.
    pub failure_policy: FailurePolicy,
}

/// What implements an entry.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicySource {
    /// A policy of `keelson-scheduler-policies`, built with [`Builtin::from_entry`] from this
    /// v1 entry (JSON text), which the config has already checked.
    Builtin(String),
    /// A plugin file, configured with `options` (JSON text, `{}` when none).
    Plugin {
        /// The `.wasm` or `.so` file.
        path: PathBuf,
        /// The plugin's options.
        options: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    kind: Option<String>,
    api_version: Option<String>,
    predicates: Option<Vec<Value>>,
    priorities: Option<Vec<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredicateEntry {
    name: Option<String>,
    argument: Option<Value>,
    path: Option<PathBuf>,
    options: Option<Value>,
    #[serde(rename = "failurePolicy")]
    failure_policy: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriorityEntry {
    name: Option<String>,
    argument: Option<Value>,
    weight: Option<i64>,
    path: Option<PathBuf>,
    options: Option<Value>,
    #[serde(rename = "failurePolicy")]
    failure_policy: Option<String>,
}

impl PolicyConfig {
    /// v1's `DefaultProvider`: its predicates, and its priorities with weight 1.
    ///
    /// ```
    /// let c = keelson_scheduler::config::PolicyConfig::default_provider();
    /// assert_eq!(c.predicates.len(), 6);
    /// assert!(c.priorities.iter().all(|p| p.weight == 1));
    /// ```
    pub fn default_provider() -> PolicyConfig {
        PolicyConfig {
            predicates: default_predicates(),
            priorities: default_priorities(),
        }
    }

    /// Reads the file at `path`, or gives the `DefaultProvider` for `None`. Errors name the
    /// file.
    pub fn load(path: Option<&Path>) -> Result<PolicyConfig> {
        let Some(path) = path else {
            return Ok(PolicyConfig::default_provider());
        };
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config = PolicyConfig::from_json(&text).map_err(|e| match e {
            Error::Config { message, .. } => Error::Config {
                file: format!("{}: ", path.display()),
                message,
            },
            other => other,
        })?;
        Ok(config.relative_to(path.parent().unwrap_or(Path::new("."))))
    }

    /// The same config with relative plugin paths taken relative to `dir` (the directory of
    /// the file that named them), as a reader of the file expects.
    ///
    /// ```
    /// use std::path::Path;
    /// use keelson_scheduler::config::{PolicyConfig, PolicySource};
    /// let c = PolicyConfig::from_json(
    ///     r#"{"kind":"Policy","apiVersion":"v1","predicates":[{"path":"p.wasm"}]}"#,
    /// ).unwrap().relative_to(Path::new("/etc/keelson"));
    /// let PolicySource::Plugin { path, .. } = &c.predicates[0].source else { panic!() };
    /// assert_eq!(path, Path::new("/etc/keelson/p.wasm"));
    /// ```
    pub fn relative_to(mut self, dir: &Path) -> PolicyConfig {
        for entry in self.predicates.iter_mut().chain(self.priorities.iter_mut()) {
            if let PolicySource::Plugin { path, .. } = &mut entry.source
                && path.is_relative()
            {
                *path = dir.join(&*path);
            }
        }
        self
    }

    /// Parses a v1 Policy document; see the [module docs](self).
    ///
    /// ```
    /// use keelson_scheduler::config::PolicyConfig;
    /// let err = PolicyConfig::from_json(
    ///     r#"{"kind":"Policy","apiVersion":"v1","predicates":[{"name":"PodFitsEverything"}]}"#,
    /// ).unwrap_err();
    /// assert!(err.to_string().contains("predicates[0]") && err.to_string().contains("PodFitsEverything"));
    /// ```
    pub fn from_json(text: &str) -> Result<PolicyConfig> {
        let file: File = serde_json::from_str(text).map_err(|e| config_error(e.to_string()))?;
        match file.kind.as_deref() {
            Some("Policy") => {}
            Some(other) => {
                return Err(config_error(format!(
                    "kind must be \"Policy\", not {other:?}"
                )));
            }
            None => return Err(config_error("missing field `kind` (\"Policy\")")),
        }
        match file.api_version.as_deref() {
            Some("v1") => {}
            Some(other) => {
                return Err(config_error(format!(
                    "apiVersion must be \"v1\", not {other:?}"
                )));
            }
            None => return Err(config_error("missing field `apiVersion` (\"v1\")")),
        }
        let predicates = match file.predicates {
            None => default_predicates(),
            Some(list) => list
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    predicate(v).map_err(|m| config_error(format!("predicates[{i}]: {m}")))
                })
                .collect::<Result<_>>()?,
        };
        let mut priorities: Vec<PolicyEntry> = match file.priorities {
            None => default_priorities(),
            Some(list) => list
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    priority(v).map_err(|m| config_error(format!("priorities[{i}]: {m}")))
                })
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .flatten()
                .collect(),
        };
        if priorities.is_empty() {
            priorities.push(builtin_entry("EqualPriority", None, 1));
        }
        Ok(PolicyConfig {
            predicates,
            priorities,
        })
    }
}

fn default_predicates() -> Vec<PolicyEntry> {
    DEFAULT_PREDICATES
        .iter()
        .map(|name| builtin_entry(name, None, 0))
        .collect()
}

fn default_priorities() -> Vec<PolicyEntry> {
    DEFAULT_PRIORITIES
        .iter()
        .map(|(name, weight)| builtin_entry(name, None, *weight))
        .collect()
}

/// The v1 entry `Builtin::from_entry` takes, as JSON text.
fn entry_json(name: &str, argument: Option<Value>) -> String {
    let mut entry = serde_json::Map::new();
    entry.insert("name".into(), Value::String(name.into()));
    if let Some(a) = argument {
        entry.insert("argument".into(), a);
    }
    Value::Object(entry).to_string()
}

fn builtin_entry(name: &str, argument: Option<Value>, weight: u32) -> PolicyEntry {
    PolicyEntry {
        name: name.into(),
        weight,
        source: PolicySource::Builtin(entry_json(name, argument)),
        failure_policy: FailurePolicy::FailClosed,
    }
}

/// A built-in entry, checked by building it once, of the `want`ed kind.
fn checked_builtin(
    name: Option<String>,
    argument: Option<Value>,
    weight: u32,
    want: PolicyKind,
) -> Result<PolicyEntry, String> {
    let name = name.ok_or("an entry needs a \"name\" (or a plugin \"path\")")?;
    let json = entry_json(&name, argument);
    let built = Builtin::from_entry(&json).map_err(|e| e.to_string())?;
    if built.info().kind != want {
        let (is, list) = match want {
            PolicyKind::Predicate => ("a priority", "priorities"),
            PolicyKind::Priority => ("a predicate", "predicates"),
        };
        return Err(format!("{name:?} is {is}; list it under \"{list}\""));
    }
    Ok(PolicyEntry {
        name,
        weight,
        source: PolicySource::Builtin(json),
        failure_policy: FailurePolicy::FailClosed,
    })
}

/// `"failurePolicy"`, in Kubernetes' webhook words; fail closed when absent.
fn failure_policy(value: Option<&str>) -> Result<FailurePolicy, String> {
    match value {
        None | Some("Fail") => Ok(FailurePolicy::FailClosed),
        Some("Ignore") => Ok(FailurePolicy::FailOpen),
        Some(other) => Err(format!(
            "\"failurePolicy\" must be \"Fail\" or \"Ignore\", not {other:?}"
        )),
    }
}

/// The fields a plugin entry may have beyond its weight.
struct PluginFields {
    name: Option<String>,
    path: PathBuf,
    argument: Option<Value>,
    options: Option<Value>,
    failure_policy: Option<String>,
}

fn plugin_entry(f: PluginFields, weight: u32) -> Result<PolicyEntry, String> {
    let PluginFields {
        name,
        path,
        argument,
        options,
        failure_policy: policy,
    } = f;
    if argument.is_some() {
        return Err("a plugin entry takes \"options\", not \"argument\"".into());
    }
    let failure_policy = failure_policy(policy.as_deref())?;
    let name = name.unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string())
    });
    let options = options.unwrap_or_else(|| Value::Object(Default::default()));
    Ok(PolicyEntry {
        name,
        weight,
        source: PolicySource::Plugin {
            path,
            options: options.to_string(),
        },
        failure_policy,
    })
}

/// Fields only a plugin entry may have, on a built-in entry.
fn plugin_only_fields(
    options: &Option<Value>,
    failure_policy: &Option<String>,
) -> Result<(), String> {
    if options.is_some() {
        return Err("\"options\" needs a plugin \"path\"".into());
    }
    if failure_policy.is_some() {
        return Err("\"failurePolicy\" needs a plugin \"path\"".into());
    }
    Ok(())
}

fn predicate(v: Value) -> Result<PolicyEntry, String> {
    let e: PredicateEntry = serde_json::from_value(v).map_err(|e| e.to_string())?;
    match e.path {
        Some(path) => plugin_entry(
            PluginFields {
                name: e.name,
                path,
                argument: e.argument,
                options: e.options,
                failure_policy: e.failure_policy,
            },
            0,
        ),
        None => {
            plugin_only_fields(&e.options, &e.failure_policy)?;
            checked_builtin(e.name, e.argument, 0, PolicyKind::Predicate)
        }
    }
}

/// `None` for a weight-0 priority, which v1 leaves out.
fn priority(v: Value) -> Result<Option<PolicyEntry>, String> {
    let e: PriorityEntry = serde_json::from_value(v).map_err(|e| e.to_string())?;
    let weight = match e.weight {
        None => 1,
        Some(0) => return Ok(None),
        Some(w) => u32::try_from(w)
            .map_err(|_| format!("weight must be between 0 and {}, not {w}", u32::MAX))?,
    };
    match e.path {
        Some(path) => plugin_entry(
            PluginFields {
                name: e.name,
                path,
                argument: e.argument,
                options: e.options,
                failure_policy: e.failure_policy,
            },
            weight,
        )
        .map(Some),
        None => {
            plugin_only_fields(&e.options, &e.failure_policy)?;
            checked_builtin(e.name, e.argument, weight, PolicyKind::Priority).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(text: &str) -> Result<PolicyConfig> {
        PolicyConfig::from_json(text)
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    const HEAD: &str = r#""kind":"Policy","apiVersion":"v1""#;

    #[test]
    fn v1_example_file_parses() {
        let text = format!(
            r#"{{{HEAD},
             "predicates":[{{"name":"PodFitsPorts"}},{{"name":"PodFitsResources"}},{{"name":"NoDiskConflict"}},
               {{"name":"MatchNodeSelector"}},{{"name":"HostName"}}],
             "priorities":[{{"name":"LeastRequestedPriority","weight":1}},{{"name":"BalancedResourceAllocation","weight":1}},
               {{"name":"ServiceSpreadingPriority","weight":1}},{{"name":"EqualPriority","weight":1}}]}}"#
        );
        let c = parse(&text).unwrap();
        let names: Vec<&str> = c.predicates.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "PodFitsPorts",
                "PodFitsResources",
                "NoDiskConflict",
                "MatchNodeSelector",
                "HostName"
            ]
        );
        assert_eq!(c.priorities.len(), 4);
        assert!(c.priorities.iter().all(|p| p.weight == 1));
    }

    #[test]
    fn custom_arguments_and_weights() {
        let c = parse(&format!(
            r#"{{{HEAD},"predicates":[{{"name":"RegionAffinity","argument":{{"serviceAffinity":{{"labels":["region"]}}}}}}],
              "priorities":[{{"name":"ZoneSpread","weight":3,"argument":{{"serviceAntiAffinity":{{"label":"zone"}}}}}},
                            {{"name":"LeastRequestedPriority"}}]}}"#
        ))
        .unwrap();
        assert_eq!(c.predicates[0].name, "RegionAffinity");
        assert_eq!(
            (c.priorities[0].weight, c.priorities[1].weight),
            (3, 1),
            "missing weight is 1"
        );
    }

    #[test]
    fn no_file_and_absent_lists_are_the_default_provider() {
        assert_eq!(
            PolicyConfig::load(None).unwrap(),
            PolicyConfig::default_provider()
        );
        assert_eq!(
            parse(&format!("{{{HEAD}}}")).unwrap(),
            PolicyConfig::default_provider()
        );
        let d = PolicyConfig::default_provider();
        let names: Vec<&str> = d.priorities.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "LeastRequestedPriority",
                "BalancedResourceAllocation",
                "SelectorSpreadPriority",
                "TaintTolerationPriority"
            ]
        );
    }

    #[test]
    fn weight_zero_is_skipped_and_empty_priorities_mean_equal_priority() {
        let c = parse(&format!(
            r#"{{{HEAD},"predicates":[],"priorities":[{{"name":"LeastRequestedPriority","weight":0}}]}}"#
        ))
        .unwrap();
        assert!(c.predicates.is_empty());
        assert_eq!(c.priorities.len(), 1);
        assert_eq!(
            (c.priorities[0].name.as_str(), c.priorities[0].weight),
            ("EqualPriority", 1)
        );
    }

    #[test]
    fn unknown_fields_are_named() {
        assert!(
            err(&format!(r#"{{{HEAD},"extenders":[]}}"#)).contains("unknown field `extenders`")
        );
        let e = err(&format!(
            r#"{{{HEAD},"predicates":[{{"name":"HostName","weight":1}}]}}"#
        ));
        assert!(
            e.contains("predicates[0]") && e.contains("unknown field `weight`"),
            "{e}"
        );
        let e = err(&format!(
            r#"{{{HEAD},"priorities":[{{"name":"EqualPriority","wieght":1}}]}}"#
        ));
        assert!(e.contains("priorities[0]") && e.contains("`wieght`"), "{e}");
    }

    #[test]
    fn unknown_names_and_wrong_lists_are_errors() {
        let e = err(&format!(
            r#"{{{HEAD},"priorities":[{{"name":"MostRequested","weight":1}}]}}"#
        ));
        assert!(
            e.contains("priorities[0]") && e.contains("\"MostRequested\""),
            "{e}"
        );
        let e = err(&format!(
            r#"{{{HEAD},"predicates":[{{"name":"EqualPriority"}}]}}"#
        ));
        assert!(e.contains("is a priority"), "{e}");
        let e = err(&format!(
            r#"{{{HEAD},"priorities":[{{"name":"HostName"}}]}}"#
        ));
        assert!(e.contains("is a predicate"), "{e}");
        let e = err(&format!(
            r#"{{{HEAD},"predicates":[{{"name":"CheckNodeLabelPresence"}}]}}"#
        ));
        assert!(e.contains("needs an argument"), "{e}");
        let e = err(&format!(
            r#"{{{HEAD},"priorities":[{{"name":"EqualPriority","weight":-1}}]}}"#
        ));
        assert!(e.contains("weight"), "{e}");
        let e = err(&format!(r#"{{{HEAD},"predicates":[{{}}]}}"#));
        assert!(e.contains("needs a \"name\""), "{e}");
    }

    #[test]
    fn kind_and_api_version_are_checked() {
        assert!(err(r#"{"kind":"Pod","apiVersion":"v1"}"#).contains("kind"));
        assert!(err(r#"{"kind":"Policy","apiVersion":"v2"}"#).contains("apiVersion"));
        assert!(err(r#"{"apiVersion":"v1"}"#).contains("kind"));
        assert!(err("not json").contains("invalid policy config"));
    }

    #[test]
    fn plugin_entries() {
        let c = parse(&format!(
            r#"{{{HEAD},"predicates":[{{"path":"/x/zones.wasm","options":{{"max":2}}}}],
              "priorities":[{{"name":"fast","path":"/x/fast.so","weight":5}}]}}"#
        ))
        .unwrap();
        assert_eq!(c.predicates[0].name, "zones");
        assert_eq!(
            c.predicates[0].source,
            PolicySource::Plugin {
                path: "/x/zones.wasm".into(),
                options: r#"{"max":2}"#.into()
            }
        );
        assert_eq!(
            (c.priorities[0].name.as_str(), c.priorities[0].weight),
            ("fast", 5)
        );
        assert!(
            matches!(&c.priorities[0].source, PolicySource::Plugin { options, .. } if options == "{}")
        );
        let e = err(&format!(
            r#"{{{HEAD},"predicates":[{{"path":"/x/a.wasm","argument":{{}}}}]}}"#
        ));
        assert!(e.contains("\"options\", not \"argument\""), "{e}");
        let e = err(&format!(
            r#"{{{HEAD},"predicates":[{{"name":"HostName","options":{{}}}}]}}"#
        ));
        assert!(e.contains("needs a plugin \"path\""), "{e}");
    }

    #[test]
    fn plugin_failure_policy() {
        let c = parse(&format!(
            r#"{{{HEAD},"predicates":[{{"path":"/x/a.wasm","failurePolicy":"Ignore"}},{{"path":"/x/b.wasm"}},
                {{"name":"HostName"}}],
              "priorities":[{{"path":"/x/c.wasm","failurePolicy":"Fail","weight":2}}]}}"#
        ))
        .unwrap();
        let policies: Vec<FailurePolicy> = c
            .predicates
            .iter()
            .chain(&c.priorities)
            .map(|e| e.failure_policy)
            .collect();
        assert_eq!(
            policies,
            [
                FailurePolicy::FailOpen,
                FailurePolicy::FailClosed,
                FailurePolicy::FailClosed,
                FailurePolicy::FailClosed
            ],
            "Ignore fails open; Fail, no policy and built-ins fail closed"
        );
        assert!(
            PolicyConfig::default_provider()
                .predicates
                .iter()
                .all(|e| e.failure_policy == FailurePolicy::FailClosed)
        );
    }

    #[test]
    fn bad_failure_policies_name_the_entry() {
        let e = err(&format!(
            r#"{{{HEAD},"priorities":[{{"name":"EqualPriority"}},{{"path":"/x/a.wasm"}},
                {{"path":"/x/b.wasm","failurePolicy":"FailOpen"}}]}}"#
        ));
        assert!(
            e.contains("priorities[2]")
                && e.contains(r#""failurePolicy" must be "Fail" or "Ignore", not "FailOpen""#),
            "{e}"
        );
        let e = err(&format!(
            r#"{{{HEAD},"predicates":[{{"path":"/x/a.wasm","failurePolicy":true}}]}}"#
        ));
        assert!(
            e.contains("predicates[0]") && e.contains("invalid type"),
            "{e}"
        );
        let e = err(&format!(
            r#"{{{HEAD},"predicates":[{{"name":"HostName","failurePolicy":"Ignore"}}]}}"#
        ));
        assert!(
            e.contains("predicates[0]") && e.contains(r#""failurePolicy" needs a plugin "path""#),
            "{e}"
        );
        let e = err(&format!(
            r#"{{{HEAD},"priorities":[{{"name":"EqualPriority","failurePolicy":"Fail"}}]}}"#
        ));
        assert!(
            e.contains("priorities[0]") && e.contains("needs a plugin"),
            "{e}"
        );
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("keelson-sched-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policy.json");
        std::fs::write(&path, r#"{"kind":"Policy","apiVersion":"v1","bogus":1}"#).unwrap();
        let e = PolicyConfig::load(Some(&path)).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: ", path.display())) && e.contains("bogus"),
            "{e}"
        );
        let missing = PolicyConfig::load(Some(&dir.join("nope.json"))).unwrap_err();
        assert!(matches!(missing, Error::Read { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
