//! Keelson's API server: the Kubernetes REST API over a revisioned store, with TLS, client
//! certificate and service-account token authentication, an admission chain, and a watch cache.

pub mod admission;
pub mod alloc;
pub mod auth;
pub mod discovery;
pub mod pki;
pub mod request;
pub mod response;
pub mod rest;
pub mod server;
pub mod status;
pub mod watchcache;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use server::{Config, RunningServer, StoreConfig, start};

/// Errors that stop the API server from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pki: {0}")]
    Pki(String),
    #[error("store: {0}")]
    Store(#[from] keelson_store::Error),
    #[error("tls: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config: {0}")]
    Config(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Options the request handlers need.
#[derive(Clone, Debug)]
pub struct ApiOptions {
    /// Address clients reach this server at (discovery's `serverAddressByClientCIDRs`).
    pub advertise: IpAddr,
    pub secure_port: u16,
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    pub data_dir: PathBuf,
}

/// The request-serving core, shared by every connection.
pub struct ApiServer {
    pub(crate) store: Arc<dyn keelson_store::Store>,
    pub(crate) cache: Arc<watchcache::WatchCache>,
    pub(crate) alloc: Arc<alloc::Allocator>,
    pub(crate) admission: admission::AdmissionChain,
    /// Bearer tokens (service-account tokens) of requests without a client certificate.
    pub(crate) tokens: auth::TokenAuthenticator,
    /// Bearer tokens of the static token file, checked before service-account tokens.
    pub(crate) static_tokens: auth::StaticTokens,
    pub(crate) opts: ApiOptions,
}
