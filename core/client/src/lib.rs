//! What Keelson's daemons share as clients of the API server.
//!
//! - [`connect`]: a [`kube::Client`] from a kubeconfig file, as `kubectl` reads it;
//! - [`changes`]: a watch of one resource as [`Change`]s, re-listing after a broken watch
//!   and reporting the objects that disappeared meanwhile as deletions;
//! - [`events::EventRecorder`]: core/v1 Events as `kubectl describe` shows them, repeated
//!   ones counted on one Event instead of piling up;
//! - [`leader::LeaderElector`]: leader election through a coordination.k8s.io Lease, so two
//!   schedulers or controller managers can run and only one acts.

pub mod events;
pub mod leader;
mod watch;

use std::path::Path;

pub use watch::{Change, ObjectKey, changes};

/// What can go wrong talking to the API server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A request failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A client for the cluster that the kubeconfig at `path` names (its current context),
/// identifying itself as `user_agent` so the API server's logs say who asked.
pub async fn connect(path: &Path, user_agent: &str) -> Result<kube::Client> {
    let bad = |e: &dyn std::fmt::Display| Error::Kubeconfig {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| bad(&e))?;
    let options = kube::config::KubeConfigOptions::default();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| bad(&e))?;
    if let Ok(agent) = http::HeaderValue::from_str(user_agent) {
        config.headers.push((http::header::USER_AGENT, agent));
    }
    kube::Client::try_from(config).map_err(|e| bad(&e))
}
