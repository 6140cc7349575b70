//! Keelson's cluster DNS (`keelson dns`): names for Services and their endpoints under the
//! cluster domain, every other name forwarded to the node's resolvers.
//!
//! - [`zone`] builds the records from Services and Endpoints (Kubernetes' DNS schema) and
//!   answers a question from them.
//! - [`source`] watches Services and Endpoints and publishes a new zone on every change.
//! - [`server`] serves the zone over UDP and TCP (hickory-server), forwarding through
//!   [`forward`].
//! - [`register`] writes the `kube-dns` Service and Endpoints that give the server its
//!   cluster IP.
//! - [`client`] asks one question, for checks and tests.

pub mod client;
pub mod forward;
pub mod register;
pub mod server;
pub mod source;
pub mod zone;

use std::net::SocketAddr;

pub use hickory_proto::rr::{Name, RecordType};

/// Errors of the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr} (UDP and TCP): {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A request to the API server failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// An object could not be built.
    #[error("cannot build an object: {0}")]
    Object(#[source] serde_json::Error),
    /// A query (of [`client`]) failed.
    #[error("DNS query: {0}")]
    Query(String),
}
