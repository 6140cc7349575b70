//! Keelson's controller manager: the loops that turn stored objects into a cluster that heals
//! itself.
//!
//! Every controller is a reconcile loop: handlers on the shared watch caches
//! ([`informer::Informer`]) put keys on the controller's [`queue::Queue`], and workers read the
//! current state from the caches and write what should change through the API server. No
//! controller reaches into the store, so the controller manager can run on any machine.
//!
//! [`manager::run`] runs the enabled controllers while this process holds the leader Lease
//! and stops them when it loses it, so two controller managers can run and only one acts.

pub mod informer;
pub mod manager;
pub mod queue;

mod endpoints;
mod gc;
mod ipam;
mod namespace;
mod nodelifecycle;
mod podgc;
mod quota;
mod replication;
mod serviceaccount;

pub use manager::{Config, Context, Informers, run};

/// What can go wrong in a controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// The configuration cannot work.
    #[error("{0}")]
    Config(String),
    /// A service-account token could not be made.
    #[error("service account token: {0}")]
    Token(String),
    /// Something the controller needs is missing or inconsistent.
    #[error("{0}")]
    Other(String),
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether `e` is the API server's 404 (the object is gone: nothing left to do).
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether `e` is the API server's 409 (someone else wrote first or it exists already).
pub(crate) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}
