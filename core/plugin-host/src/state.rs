//! What a plugin's store holds: the WASI context, memory limits and the host imports.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::scheduler::bindings::keelson::plugin::{log, scheduler_types, types};

pub use types::ErrorKind;

impl std::fmt::Display for ErrorKind {
    /// The WIT name of the kind, such as `invalid-config`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorKind::InvalidConfig => "invalid-config",
            ErrorKind::InvalidInput => "invalid-input",
            ErrorKind::Unschedulable => "unschedulable",
            ErrorKind::Unresolvable => "unresolvable",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        })
    }
}

/// Longest log message kept; longer ones are truncated.
const MAX_LOG_MESSAGE: usize = 4096;
/// Log records a plugin may write per call before the rest of the call's records are dropped.
const MAX_LOG_RECORDS_PER_CALL: u32 = 100;

pub(crate) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: CappedLimits,
    plugin: Arc<str>,
    pub(crate) call: &'static str,
    log_records: u32,
}

impl StoreState {
    pub(crate) fn new(plugin: Arc<str>, memory_limit: usize) -> Self {
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
            plugin,
            call: "instantiate",
            log_records: 0,
        }
    }

    pub(crate) fn begin_call(&mut self, call: &'static str) {
        self.call = call;
        self.log_records = 0;
        self.limits.exceeded = false;
    }

    pub(crate) fn memory_cap_hit(&self) -> bool {
        self.limits.exceeded
    }

    pub(crate) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limits
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

fn tracing_level(level: log::Level) -> tracing::Level {
    match level {
        log::Level::Trace => tracing::Level::TRACE,
        log::Level::Debug => tracing::Level::DEBUG,
        log::Level::Info => tracing::Level::INFO,
        log::Level::Warn => tracing::Level::WARN,
        log::Level::Error => tracing::Level::ERROR,
    }
}

impl log::Host for StoreState {
    fn enabled(&mut self, level: log::Level) -> bool {
        match tracing_level(level) {
            tracing::Level::TRACE => tracing::enabled!(tracing::Level::TRACE),
            tracing::Level::DEBUG => tracing::enabled!(tracing::Level::DEBUG),
            tracing::Level::INFO => tracing::enabled!(tracing::Level::INFO),
            tracing::Level::WARN => tracing::enabled!(tracing::Level::WARN),
            _ => tracing::enabled!(tracing::Level::ERROR),
        }
    }

    fn log(&mut self, level: log::Level, mut message: String) {
        self.log_records += 1;
        if self.log_records > MAX_LOG_RECORDS_PER_CALL {
            if self.log_records == MAX_LOG_RECORDS_PER_CALL + 1 {
                tracing::warn!(plugin = %self.plugin, call = self.call, "plugin logs too much; dropping its records until the next call");
            }
            return;
        }
        if message.len() > MAX_LOG_MESSAGE {
            let mut end = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str("...");
        }
        let (plugin, call) = (&*self.plugin, self.call);
        match tracing_level(level) {
            tracing::Level::TRACE => tracing::trace!(plugin, call, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(plugin, call, "{message}"),
            tracing::Level::INFO => tracing::info!(plugin, call, "{message}"),
            tracing::Level::WARN => tracing::warn!(plugin, call, "{message}"),
            _ => tracing::error!(plugin, call, "{message}"),
        }
    }
}

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
