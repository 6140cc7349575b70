//! The crate's error type: what can be wrong with a policy's options.

use keelson_plugin_sdk::{ErrorKind, PluginError, plugin_error};

/// Why a policy could not be configured. Every variant becomes a [`PluginError`] of kind
/// [`ErrorKind::InvalidConfig`], which stops the scheduler from starting.
///
/// ```
/// use keelson_scheduler_policies::Error;
/// let e = Error::EmptyLabel { policy: "NodeLabelPriority" };
/// assert_eq!(e.to_string(), "NodeLabelPriority: a label name must not be empty");
/// let plugin: keelson_plugin_sdk::PluginError = e.into();
/// assert_eq!(plugin.kind, keelson_plugin_sdk::ErrorKind::InvalidConfig);
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The options are not valid JSON for the policy.
    #[error("{policy}: invalid options: {source}")]
    Options {
        /// The policy whose options were rejected.
        policy: &'static str,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },
    /// A label option is the empty string.
    #[error("{policy}: a label name must not be empty")]
    EmptyLabel {
        /// The policy.
        policy: &'static str,
    },
    /// `Builtin` was given a name that is neither a known policy nor, with an argument, a
    /// valid v1 custom policy name.
    #[error("unknown scheduler policy {name:?}; known policies: {known}")]
    UnknownPolicy {
        /// The name given.
        name: String,
        /// The known names and aliases, comma-separated.
        known: String,
    },
    /// A v1 custom policy name does not match `^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])$`.
    #[error("invalid scheduler policy name {name:?}: use letters, digits and inner dashes")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// The policy needs an argument and none was given.
    #[error("{policy} needs an argument {{\"{key}\": {{...}}}}")]
    MissingArgument {
        /// The policy.
        policy: &'static str,
        /// The argument's key in the v1 Policy file.
        key: &'static str,
    },
    /// An argument was given to a policy that takes none or takes another kind.
    #[error("{policy} does not take the argument {key:?}")]
    UnexpectedArgument {
        /// The policy.
        policy: &'static str,
        /// The key given.
        key: &'static str,
    },
    /// The argument object has no key, or more than one.
    #[error(
        "an argument must have exactly one of serviceAffinity, labelsPresence, \
         serviceAntiAffinity or labelPreference; found {found}"
    )]
    ArgumentShape {
        /// How many keys were found.
        found: usize,
    },
}

/// The crate's result type.
///
/// ```
/// fn check() -> keelson_scheduler_policies::Result<()> { Ok(()) }
/// assert!(check().is_ok());
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for PluginError {
    fn from(e: Error) -> PluginError {
        plugin_error(ErrorKind::InvalidConfig, e.to_string())
    }
}
