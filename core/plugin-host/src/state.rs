//! What a Wasm plugin's store holds (the WASI context, memory limits, the host imports) and the
//! log sink shared with native plugins.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::keelson::plugin::cluster::{self, LookupError};
use crate::bindings::keelson::plugin::host_net::{
    self, FdbEntry, LinkInfo, LinkSpec, Neighbour, NetError, OvsDatapath, OvsPortType,
};
use crate::bindings::keelson::plugin::network_types::{
    self, AddressFamily, IpAddress, IpPrefix, Netns, NodeAddress, Route,
};
use crate::bindings::keelson::plugin::types::{GroupVersionResource, LabelSelector};
use crate::bindings::keelson::plugin::{admission, log, scheduler_types, types};
use crate::format::PluginKind;
use crate::services::{ClusterLookup, HostNet, host_net_functions};

/// Longest log message kept; longer ones are truncated.
const MAX_LOG_MESSAGE: usize = 4096;
/// Log records a plugin may write per call before the rest of the call's records are dropped.
const MAX_LOG_RECORDS_PER_CALL: u32 = 100;

/// The embedder's services a plugin instance may call, and the kind that decides which.
#[derive(Clone)]
pub(crate) struct HostImports {
    pub(crate) kind: PluginKind,
    pub(crate) cluster: Arc<dyn ClusterLookup>,
    pub(crate) net: Arc<dyn HostNet>,
}

/// Where a plugin's log records go: `tracing`, with the plugin's and the call's names,
/// truncated and rate-limited per call as `wit/log.wit` promises.
pub(crate) struct LogSink {
    plugin: Arc<str>,
    call: &'static str,
    records: u32,
}

impl LogSink {
    pub(crate) fn new(plugin: Arc<str>) -> Self {
        LogSink {
            plugin,
            call: "instantiate",
            records: 0,
        }
    }

    pub(crate) fn begin_call(&mut self, call: &'static str) {
        self.call = call;
        self.records = 0;
    }

    pub(crate) fn enabled(&self, level: log::Level) -> bool {
        match level {
            log::Level::Trace => tracing::enabled!(tracing::Level::TRACE),
            log::Level::Debug => tracing::enabled!(tracing::Level::DEBUG),
            log::Level::Info => tracing::enabled!(tracing::Level::INFO),
            log::Level::Warn => tracing::enabled!(tracing::Level::WARN),
            log::Level::Error => tracing::enabled!(tracing::Level::ERROR),
        }
    }

    /// Applies the per-call record limit and the length cap: the text to log, or `None` when
    /// the record is dropped.
    fn admit(&mut self, mut message: String) -> Option<String> {
        self.records += 1;
        if self.records > MAX_LOG_RECORDS_PER_CALL {
            if self.records == MAX_LOG_RECORDS_PER_CALL + 1 {
                tracing::warn!(plugin = %self.plugin, call = self.call, "plugin logs too much; dropping its records until the next call");
            }
            return None;
        }
        if message.len() > MAX_LOG_MESSAGE {
            let mut end = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str("...");
        }
        Some(message)
    }

    pub(crate) fn log(&mut self, level: log::Level, message: String) {
        let Some(message) = self.admit(message) else {
            return;
        };
        let (plugin, call) = (&*self.plugin, self.call);
        match level {
            log::Level::Trace => tracing::trace!(plugin, call, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, call, "{message}"),
            log::Level::Info => tracing::info!(plugin, call, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, call, "{message}"),
            log::Level::Error => tracing::error!(plugin, call, "{message}"),
        }
    }
}

pub(crate) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: CappedLimits,
    log: LogSink,
    imports: HostImports,
}

impl StoreState {
    pub(crate) fn new(plugin: Arc<str>, memory_limit: usize, imports: HostImports) -> Self {
        let wasi = WasiCtx::builder()
            .stdout(TracingStdio {
                plugin: plugin.clone(),
                stream: "stdout",
            })
            .stderr(TracingStdio {
                plugin: plugin.clone(),
                stream: "stderr",
            })
            .build();
        StoreState {
            wasi,
            table: ResourceTable::new(),
            limits: CappedLimits {
                inner: StoreLimitsBuilder::new()
                    .memory_size(memory_limit)
                    .trap_on_grow_failure(true)
                    .build(),
                exceeded: false,
            },
            log: LogSink::new(plugin),
            imports,
        }
    }

    pub(crate) fn begin_call(&mut self, call: &'static str) {
        self.log.begin_call(call);
        self.limits.exceeded = false;
    }

    pub(crate) fn memory_cap_hit(&self) -> bool {
        self.limits.exceeded
    }

    pub(crate) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limits
    }

    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

/// `StoreLimits` that remembers whether it refused a growth, so the host can tell a memory-cap
/// trap from any other trap without parsing messages.
struct CappedLimits {
    inner: StoreLimits,
    exceeded: bool,
}

impl ResourceLimiter for CappedLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let r = self.inner.memory_growing(current, desired, maximum);
        if !matches!(r, Ok(true)) {
            self.exceeded = true;
        }
        r
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for StoreState {}
impl scheduler_types::Host for StoreState {}
impl admission::Host for StoreState {}
impl network_types::Host for StoreState {}

impl log::Host for StoreState {
    fn enabled(&mut self, level: log::Level) -> bool {
        self.log.enabled(level)
    }

    fn log(&mut self, level: log::Level, message: String) {
        self.log.log(level, message)
    }
}

impl cluster::Host for StoreState {
    fn get_object(
        &mut self,
        resource: GroupVersionResource,
        namespace: Option<String>,
        name: String,
    ) -> Result<Option<String>, LookupError> {
        self.imports
            .cluster
            .get_object(&resource, namespace.as_deref(), &name)
    }

    fn list_objects(
        &mut self,
        resource: GroupVersionResource,
        namespace: Option<String>,
        selector: LabelSelector,
    ) -> Result<Vec<String>, LookupError> {
        self.imports
            .cluster
            .list_objects(&resource, namespace.as_deref(), &selector)
    }
}

macro_rules! impl_host_net {
    ($($method:ident $wit:literal ($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        impl host_net::Host for StoreState {
            $(
                fn $method(&mut self, $($arg: $ty),*) -> Result<$ret, NetError> {
                    self.imports.net.$method($($arg),*)
                }
            )*
        }
    };
}
host_net_functions!(impl_host_net);

/// A guest's standard output or error, written line by line to the daemon's log.
struct TracingStdio {
    plugin: Arc<str>,
    stream: &'static str,
}

impl IsTerminal for TracingStdio {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for TracingStdio {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(TracingOutput {
            plugin: self.plugin.clone(),
            stream: self.stream,
            line: Vec::new(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASI p3 uses this, and the host links p2 only.
        Box::new(tokio::io::sink())
    }
}

const MAX_LINE: usize = 4096;

struct TracingOutput {
    plugin: Arc<str>,
    stream: &'static str,
    line: Vec<u8>,
}

impl TracingOutput {
    fn emit(&mut self) {
        if !self.line.is_empty() {
            let text = String::from_utf8_lossy(&self.line);
            tracing::info!(plugin = %self.plugin, stream = self.stream, "{}", text.trim_end());
            self.line.clear();
        }
    }
}

impl OutputStream for TracingOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        for &b in bytes.iter() {
            if b == b'\n' {
                self.emit();
            } else {
                self.line.push(b);
                if self.line.len() >= MAX_LINE {
                    self.emit();
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for TracingOutput {
    async fn ready(&mut self) {}
}

impl Drop for TracingOutput {
    fn drop(&mut self) {
        self.emit();
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let mut sink = LogSink::new("p".into());
        sink.begin_call("score");
        let long = "é".repeat(MAX_LOG_MESSAGE);
        let kept = sink.admit(long).expect("kept");
        assert!(kept.ends_with("..."));
        assert!(kept.len() <= MAX_LOG_MESSAGE + 3);
        assert_eq!(sink.admit("short".into()).as_deref(), Some("short"));
    }

    #[test]
    fn a_chatty_call_is_cut_off_until_the_next_call() {
        let mut sink = LogSink::new("p".into());
        sink.begin_call("filter");
        let kept = (0..MAX_LOG_RECORDS_PER_CALL + 50)
            .filter(|i| sink.admit(format!("record {i}")).is_some())
            .count();
        assert_eq!(kept, MAX_LOG_RECORDS_PER_CALL as usize);
        sink.begin_call("score");
        assert!(sink.admit("again".into()).is_some());
    }
}
