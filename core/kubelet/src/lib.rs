//! Keelson's node agent. For now, its containerd side: a namespaced containerd client and
//! image import, unpack and listing.

pub mod containerd;
pub mod images;
pub mod node;
pub mod runtime;

pub use containerd::Containerd;
