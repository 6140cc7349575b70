//! The built-in scheduler policies of `keelson-scheduler-policies` as one plugin.
//!
//! The daemon links those policies directly; this crate exists so that the very same code
//! can also run as a plugin, for comparing the in-process and sandboxed paths or for running
//! a v1 policy in a scheduler that loads only plugins. Configure it with one v1 Policy-file
//! entry, as [`Builtin`](keelson_scheduler_policies::Builtin) documents:
//!
//! ```json
//! {"name": "ServiceAntiAffinity", "argument": {"serviceAntiAffinity": {"label": "zone"}}}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (a Wasm component) or
//! `cargo build --release` (a native library). It exports pre-filter, filter and score:
//! priorities skip filtering from pre-filter, and predicates score 0, which leaves the ranking
//! to the other policies.

keelson_plugin_sdk::export_scheduler_policy!(
    keelson_scheduler_policies::Builtin,
    exports: [pre_filter, filter, score]
);
