//! The `bridge` network backend of `keelson-network-bridge` as a plugin.
//!
//! The kubelet links the backend directly and runs it as a built-in; this crate builds the very
//! same code as a Wasm component (`cargo build --release --target wasm32-wasip2`) or a native
//! library (`cargo build --release`), for running it sandboxed, for comparing the three paths,
//! or as a starting point for a custom backend. Options are those of
//! [`Bridge`](keelson_network_bridge::Bridge).

keelson_plugin_sdk::export_network_backend!(keelson_network_bridge::Bridge);
