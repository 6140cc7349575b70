//! Keelson's node agent: the node's registration and heartbeats ([`node`]), the pod workers
//! that run the pods bound to it ([`pods`], with [`probes`], [`volumes`] and [`static_pods`]),
//! the pod network through a network-backend plugin ([`network`]), its containerd side (a
//! namespaced client, the container runtime with exec, image import, pulls and listing), and
//! the kubelet server for logs, exec and stats ([`server`], [`stats`]).

pub mod containerd;
pub mod images;
pub mod network;
pub mod node;
pub mod pods;
pub mod probes;
pub mod runtime;
pub mod server;
pub mod static_pods;
pub mod stats;
pub mod volumes;

pub use containerd::Containerd;
