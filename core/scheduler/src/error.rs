//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong loading a policy configuration or running a cycle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policy file could not be read.
    #[error("reading policy config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The policy file is not a valid v1 Policy.
    #[error("{file}invalid policy config: {message}")]
    Config {
        /// `"<path>: "` when the config came from a file, else empty.
        file: String,
        /// What is wrong, naming the field or entry.
        message: String,
    },
    /// A plugin could not be loaded or configured, or one of its calls failed.
    #[error("scheduler plugin {plugin}: {call}: {message}")]
    Plugin {
        /// The plugin's name.
        plugin: String,
        /// The call that failed (`load`, `configure`, `filter`, ...).
        call: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A plugin judged the pod unschedulable in this cycle (a call's error of kind
    /// `unschedulable` or `unresolvable`). This is a verdict, not a failure:
    /// [`Framework::schedule`](crate::framework::Framework::schedule) turns it into
    /// [`Outcome::Unschedulable`](crate::framework::Outcome::Unschedulable) with `message` as
    /// the reason, so it only reaches callers of an
    /// [`ExternalPolicy`](crate::framework::ExternalPolicy) directly.
    #[error("scheduler plugin {plugin}: {call}: pod is unschedulable: {message}")]
    Unschedulable {
        /// The plugin's name.
        plugin: String,
        /// The call that returned the verdict.
        call: &'static str,
        /// The plugin's reason, shown on the pod.
        message: String,
    },
    /// More nodes than node indexes.
    #[error("too many nodes")]
    TooManyNodes,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn config_error(message: impl Into<String>) -> Error {
    Error::Config {
        file: String::new(),
        message: message.into(),
    }
}
