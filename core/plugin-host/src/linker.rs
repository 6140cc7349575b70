//! One linker per plugin kind: each links exactly the imports its WIT world grants, plus the
//! WASI p2 interfaces a `wasm32-wasip2` guest's standard library needs (streams, the command
//! environment, clocks, randomness), backed by a context that grants nothing. Files and
//! sockets are not linked at all, so a component that imports them fails to load.

use wasmtime::Engine;
use wasmtime::component::{HasData, HasSelf, Linker, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::p2::bindings::sync as wasi;
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};

use crate::bindings::keelson::plugin as k;
use crate::format::PluginKind;
use crate::state::StoreState;

/// The WASI interfaces every kind may import, without versions (any 0.2.x is accepted).
pub(crate) const GRANTED_WASI: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// The `keelson:plugin` interfaces a kind's world imports, without the version.
pub(crate) fn granted_keelson(kind: PluginKind) -> &'static [&'static str] {
    match kind {
        PluginKind::SchedulerPolicy => &[
            "keelson:plugin/types",
            "keelson:plugin/log",
            "keelson:plugin/scheduler-types",
        ],
        PluginKind::AdmissionCheck => &[
            "keelson:plugin/types",
            "keelson:plugin/log",
            "keelson:plugin/admission",
            "keelson:plugin/cluster",
        ],
        PluginKind::NetworkBackend => &[
            "keelson:plugin/types",
            "keelson:plugin/log",
            "keelson:plugin/network-types",
            "keelson:plugin/host-net",
        ],
    }
}

/// Whether a component of `kind` may import `name` (`wasi:io/streams@0.2.6`).
pub(crate) fn is_granted(kind: PluginKind, name: &str) -> bool {
    let unversioned = name.split_once('@').map_or(name, |(n, _)| n);
    GRANTED_WASI.contains(&unversioned) || granted_keelson(kind).contains(&unversioned)
}

struct Table;

impl HasData for Table {
    type Data<'a> = &'a mut ResourceTable;
}

/// The linker for components of `kind`.
pub(crate) fn linker(engine: &Engine, kind: PluginKind) -> wasmtime::Result<Linker<StoreState>> {
    let mut l = Linker::<StoreState>::new(engine);
    add_wasi(&mut l)?;
    type Me = HasSelf<StoreState>;
    k::types::add_to_linker::<StoreState, Me>(&mut l, |s| s)?;
    k::log::add_to_linker::<StoreState, Me>(&mut l, |s| s)?;
    match kind {
        PluginKind::SchedulerPolicy => {
            k::scheduler_types::add_to_linker::<StoreState, Me>(&mut l, |s| s)?;
        }
        PluginKind::AdmissionCheck => {
            k::admission::add_to_linker::<StoreState, Me>(&mut l, |s| s)?;
            k::cluster::add_to_linker::<StoreState, Me>(&mut l, |s| s)?;
        }
        PluginKind::NetworkBackend => {
            k::network_types::add_to_linker::<StoreState, Me>(&mut l, |s| s)?;
            k::host_net::add_to_linker::<StoreState, Me>(&mut l, |s| s)?;
        }
    }
    Ok(l)
}

fn add_wasi(l: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    wasi::io::error::add_to_linker::<StoreState, Table>(l, StoreState::table)?;
    wasi::io::poll::add_to_linker::<StoreState, Table>(l, StoreState::table)?;
    wasi::io::streams::add_to_linker::<StoreState, Table>(l, StoreState::table)?;
    wasi::cli::environment::add_to_linker::<StoreState, WasiCli>(l, StoreState::cli)?;
    wasi::cli::exit::add_to_linker::<StoreState, WasiCli>(l, StoreState::cli)?;
    wasi::cli::stdin::add_to_linker::<StoreState, WasiCli>(l, StoreState::cli)?;
    wasi::cli::stdout::add_to_linker::<StoreState, WasiCli>(l, StoreState::cli)?;
    wasi::cli::stderr::add_to_linker::<StoreState, WasiCli>(l, StoreState::cli)?;
    wasi::cli::terminal_input::add_to_linker::<StoreState, WasiCli>(l, StoreState::cli)?;
    wasi::cli::terminal_output::add_to_linker::<StoreState, WasiCli>(l, StoreState::cli)?;
    wasi::cli::terminal_stdin::add_to_linker::<StoreState, WasiCli>(l, StoreState::cli)?;
    wasi::cli::terminal_stdout::add_to_linker::<StoreState, WasiCli>(l, StoreState::cli)?;
    wasi::cli::terminal_stderr::add_to_linker::<StoreState, WasiCli>(l, StoreState::cli)?;
    wasi::clocks::wall_clock::add_to_linker::<StoreState, WasiClocks>(l, StoreState::clocks)?;
    wasi::clocks::monotonic_clock::add_to_linker::<StoreState, WasiClocks>(l, StoreState::clocks)?;
    wasi::random::random::add_to_linker::<StoreState, WasiRandom>(l, StoreState::random)?;
    wasi::random::insecure::add_to_linker::<StoreState, WasiRandom>(l, StoreState::random)?;
    wasi::random::insecure_seed::add_to_linker::<StoreState, WasiRandom>(l, StoreState::random)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_granted_its_own_imports_only() {
        let s = PluginKind::SchedulerPolicy;
        assert!(is_granted(s, "wasi:io/streams@0.2.6"));
        assert!(is_granted(s, "keelson:plugin/log@0.1.0"));
        assert!(!is_granted(s, "keelson:plugin/host-net@0.1.0"));
        assert!(!is_granted(s, "wasi:filesystem/types@0.2.6"));
        assert!(!is_granted(s, "wasi:sockets/tcp@0.2.6"));
        assert!(is_granted(
            PluginKind::AdmissionCheck,
            "keelson:plugin/cluster@0.1.0"
        ));
        assert!(is_granted(
            PluginKind::NetworkBackend,
            "keelson:plugin/host-net@0.1.0"
        ));
        assert!(!is_granted(
            PluginKind::NetworkBackend,
            "keelson:plugin/cluster@0.1.0"
        ));
    }
}
