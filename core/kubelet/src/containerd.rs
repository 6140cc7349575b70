//! A connection to containerd's gRPC API, scoped to one containerd namespace.
//!
//! Every request made through [`Containerd::request`] carries the namespace header, and the
//! lease header when a lease is given, so callers cannot forget either.

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::{
    PluginsRequest, containers_client::ContainersClient, content_client::ContentClient,
    diff_client::DiffClient, images_client::ImagesClient,
    introspection_client::IntrospectionClient, leases_client::LeasesClient,
    tasks_client::TasksClient, version_client::VersionClient,
};
use containerd_client::tonic::{self, Request, transport::Channel};

/// containerd's socket on a host where it runs as a system service.
pub const DEFAULT_ADDRESS: &str = "/run/containerd/containerd.sock";
/// The containerd namespace Keelson keeps its images and containers in.
pub const DEFAULT_NAMESPACE: &str = "keelson";

/// Snapshotter used when its kernel support is there; `native` (plain copies) otherwise.
pub const PREFERRED_SNAPSHOTTER: &str = "overlayfs";
pub const FALLBACK_SNAPSHOTTER: &str = "native";

const NAMESPACE_HEADER: &str = "containerd-namespace";
const LEASE_HEADER: &str = "containerd-lease";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach containerd at {}: {detail} (is containerd running?)", .address.display())]
    Connect { address: PathBuf, detail: String },
    /// The status is in the message rather than a source: tonic's own text for it is a
    /// debug dump.
    #[error("containerd {op} failed: {}", status_text(.status))]
    Rpc {
        op: String,
        status: Box<tonic::Status>,
    },
    #[error("invalid containerd namespace {namespace:?}: {reason}")]
    Namespace { namespace: String, reason: String },
}

impl Error {
    /// The gRPC status code of a failed call (None for a connection error).
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Rpc { status, .. } => Some(status.code()),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(tonic::Code::NotFound)
    }

    pub fn is_already_exists(&self) -> bool {
        self.code() == Some(tonic::Code::AlreadyExists)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn status_text(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{:?}: {}", status.code(), status.message())
    }
}

/// An error and its sources, joined by ": " (tonic's transport errors say little on their own).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

/// Turns a gRPC reply into its message, naming the call on failure.
pub(crate) trait RpcExt<T> {
    fn rpc(self, op: impl Into<String>) -> Result<T>;
}

impl<T> RpcExt<T> for std::result::Result<tonic::Response<T>, tonic::Status> {
    fn rpc(self, op: impl Into<String>) -> Result<T> {
        self.map(tonic::Response::into_inner)
            .map_err(|status| rpc_error(op, status))
    }
}

/// Turns containerd's NotFound into `None`: for removals and lookups where "already gone"
/// is an answer, not a failure.
pub(crate) trait FoundExt<T> {
    fn found(self) -> Result<Option<T>>;
}

impl<T> FoundExt<T> for Result<T> {
    fn found(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

pub(crate) fn rpc_error(op: impl Into<String>, status: tonic::Status) -> Error {
    Error::Rpc {
        op: op.into(),
        status: Box::new(status),
    }
}

/// A connected containerd client bound to one namespace. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Containerd {
    channel: Channel,
    address: PathBuf,
    namespace: String,
}

impl Containerd {
    /// Connects to containerd's socket and checks that it answers.
    pub async fn connect(address: impl AsRef<Path>, namespace: &str) -> Result<Self> {
        let address = address.as_ref().to_path_buf();
        check_namespace(namespace)?;
        let connect_error = |detail: String| Error::Connect {
            address: address.clone(),
            detail,
        };
        let channel =
            match tokio::time::timeout(CONNECT_TIMEOUT, containerd_client::connect(&address)).await
            {
                Ok(Ok(channel)) => channel,
                Ok(Err(e)) => return Err(connect_error(error_chain(&e))),
                Err(_) => {
                    return Err(connect_error(format!(
                        "no connection within {}s",
                        CONNECT_TIMEOUT.as_secs()
                    )));
                }
            };
        let me = Self {
            channel,
            address: address.clone(),
            namespace: namespace.to_string(),
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, me.version()).await {
            Ok(Ok(version)) => {
                tracing::debug!(address = %address.display(), %version, "connected to containerd");
                Ok(me)
            }
            Ok(Err(e)) => Err(connect_error(e.to_string())),
            Err(_) => Err(connect_error(format!(
                "no answer to a version request within {}s",
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    pub fn address(&self) -> &Path {
        &self.address
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// containerd's version string, e.g. `1.6.20~ds1`.
    pub async fn version(&self) -> Result<String> {
        let reply = self
            .version_client()
            .version(Request::new(()))
            .await
            .rpc("version")?;
        Ok(reply.version)
    }

    /// A request in this client's namespace, and in `lease` when given (content and
    /// snapshots created under a lease survive garbage collection until the lease ends).
    pub fn request<T>(&self, message: T, lease: Option<&str>) -> Request<T> {
        let mut request = Request::new(message);
        let md = request.metadata_mut();
        // Both values were checked to be plain ASCII header values.
        if let Ok(ns) = self.namespace.parse() {
            md.insert(NAMESPACE_HEADER, ns);
        }
        if let Some(Ok(lease)) = lease.map(str::parse) {
            md.insert(LEASE_HEADER, lease);
        }
        request
    }

    pub fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone())
    }

    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }

    pub fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }

    pub fn diff(&self) -> DiffClient<Channel> {
        DiffClient::new(self.channel.clone())
    }

    pub fn leases(&self) -> LeasesClient<Channel> {
        LeasesClient::new(self.channel.clone())
    }

    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }

    pub fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }

    pub fn introspection(&self) -> IntrospectionClient<Channel> {
        IntrospectionClient::new(self.channel.clone())
    }

    fn version_client(&self) -> VersionClient<Channel> {
        VersionClient::new(self.channel.clone())
    }

    /// Why a snapshotter plugin cannot be used (`Some(reason)`), or `None` when it loaded.
    pub async fn snapshotter_unavailable(&self, name: &str) -> Result<Option<String>> {
        let reply = self
            .introspection()
            .plugins(Request::new(PluginsRequest {
                filters: vec![format!("type==io.containerd.snapshotter.v1,id=={name}")],
            }))
            .await
            .rpc("introspection plugins")?;
        Ok(match reply.plugins.first() {
            None => Some("containerd has no such snapshotter plugin".to_string()),
            Some(plugin) => plugin.init_err.as_ref().map(|e| e.message.clone()),
        })
    }

    /// The snapshotter to unpack images with: overlayfs, or `native` when overlayfs did not
    /// load (no kernel support, or containerd's root on a filesystem overlayfs cannot use).
    pub async fn default_snapshotter(&self) -> Result<String> {
        match self.snapshotter_unavailable(PREFERRED_SNAPSHOTTER).await? {
            None => {
                tracing::info!(snapshotter = PREFERRED_SNAPSHOTTER, "using snapshotter");
                Ok(PREFERRED_SNAPSHOTTER.to_string())
            }
            Some(why) => {
                tracing::warn!(
                    snapshotter = FALLBACK_SNAPSHOTTER,
                    "overlayfs snapshotter unavailable ({why}); using {FALLBACK_SNAPSHOTTER}"
                );
                Ok(FALLBACK_SNAPSHOTTER.to_string())
            }
        }
    }
}

/// containerd's namespace rule: labels of [a-z0-9] with inner '-' or '_', joined by '.'.
fn check_namespace(namespace: &str) -> Result<()> {
    let bad = |reason: &str| Error::Namespace {
        namespace: namespace.to_string(),
        reason: reason.to_string(),
    };
    if namespace.is_empty() || namespace.len() > 76 {
        return Err(bad("must be 1 to 76 characters"));
    }
    for label in namespace.split('.') {
        let bytes = label.as_bytes();
        let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let ok = bytes.first().is_some_and(alnum)
            && bytes.last().is_some_and(alnum)
            && bytes.iter().all(|b| alnum(b) || *b == b'-' || *b == b'_');
        if !ok {
            return Err(bad(
                "use lowercase letters, digits, '-' and '_', in labels joined by '.'",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        for ok in ["keelson", "k8s.io", "keelson-test-12-0", "a_b"] {
            assert!(check_namespace(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Keelson", "-a", "a-", "a..b", "a/b"] {
            assert!(check_namespace(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn missing_socket_says_so() {
        let err = Containerd::connect("/nonexistent/containerd.sock", DEFAULT_NAMESPACE)
            .await
            .expect_err("no socket");
        let text = err.to_string();
        assert!(
            text.starts_with("cannot reach containerd at /nonexistent/containerd.sock: ")
                && text.ends_with("(is containerd running?)"),
            "{text}"
        );
    }
}
