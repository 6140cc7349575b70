//! Keelson's node agent: the node's registration and heartbeats, the pod workers that run
//! the pods bound to it, and its containerd side (a namespaced client, the container runtime,
//! image import, unpack and listing).

pub mod containerd;
pub mod images;
pub mod node;
pub mod pods;
pub mod runtime;

pub use containerd::Containerd;
