//! Telling plugin files apart by content, and what `keelson plugin inspect` reports.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::{Error, Result};

/// The contract version this host supports, as in `keelson:plugin@0.1.0`.
pub const CONTRACT_VERSION: &str = "0.1.0";

/// How a plugin file is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginFormat {
    /// A Wasm component (`cargo build --target wasm32-wasip2`), run under a deadline and a
    /// memory cap.
    WasmComponent,
    /// A native shared library with the C ABI of `keelson-plugin-abi`, run at full speed and
    /// without a sandbox.
    NativeLibrary,
    /// A plugin linked into the daemon's own binary, run through the native ABI like a
    /// native library but without a file.
    Builtin,
}

impl PluginFormat {
    /// The format's name: `wasm-component`, `native-library` or `builtin`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PluginFormat::WasmComponent => "wasm-component",
            PluginFormat::NativeLibrary => "native-library",
            PluginFormat::Builtin => "builtin",
        }
    }
}

impl fmt::Display for PluginFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PluginKind {
    /// `scheduler-policy`: exports `scheduler`.
    SchedulerPolicy,
    /// `admission-check`: exports `validate`, `mutate` or both.
    AdmissionCheck,
    /// `network-backend`: exports `backend`.
    NetworkBackend,
}

impl PluginKind {
    /// The world's name: `scheduler-policy`, `admission-check` or `network-backend`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PluginKind::SchedulerPolicy => "scheduler-policy",
            PluginKind::AdmissionCheck => "admission-check",
            PluginKind::NetworkBackend => "network-backend",
        }
    }

    /// The kind whose world the exported interfaces (short names such as `score`) belong to.
    pub(crate) fn from_exports<'a>(
        exports: impl IntoIterator<Item = &'a str>,
    ) -> std::result::Result<PluginKind, String> {
        let mut kinds: Vec<PluginKind> = Vec::new();
        for e in exports {
            let kind = match e {
                "scheduler" => PluginKind::SchedulerPolicy,
                "validate" | "mutate" => PluginKind::AdmissionCheck,
                "backend" => PluginKind::NetworkBackend,
                _ => continue,
            };
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        match kinds.as_slice() {
            [kind] => Ok(*kind),
            [] => Err(
                "exports none of `scheduler`, `validate`, `mutate` or `backend`, so it \
                       implements no plugin world"
                    .into(),
            ),
            several => Err(format!(
                "exports the interfaces of several worlds ({}); a plugin implements one",
                several
                    .iter()
                    .map(PluginKind::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PluginKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "scheduler-policy" => Ok(PluginKind::SchedulerPolicy),
            "admission-check" => Ok(PluginKind::AdmissionCheck),
            "network-backend" => Ok(PluginKind::NetworkBackend),
            other => Err(format!(
                "unknown plugin kind {other:?}: expected scheduler-policy, admission-check or \
                 network-backend"
            )),
        }
    }
}

/// What `keelson plugin inspect` prints about a plugin file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The file.
    pub path: PathBuf,
    /// How it is built.
    pub format: PluginFormat,
    /// Which world it implements.
    pub kind: PluginKind,
    /// The contract it was built for, such as `keelson:plugin@0.1.0`.
    pub contract: String,
    /// The native ABI version the library reports; `None` for a component.
    pub abi_version: Option<u32>,
    /// The name a native library's manifest gives; `None` for a component, whose name is known
    /// only by calling it (`reported_name`).
    pub name: Option<String>,
    /// The `keelson:plugin` interfaces it exports, by short name (`lifecycle`, `scheduler`,
    /// `score`), in the file's order.
    pub exports: Vec<String>,
    /// Everything a component imports, with versions (`wasi:io/streams@0.2.6`); empty for a
    /// native library, whose imports are the host's ABI callbacks.
    pub imports: Vec<String>,
    /// The file's size in bytes.
    pub size: u64,
    /// The SHA-256 of the file, in hex.
    pub sha256: String,
    /// Whether compiled code for the component is in the host's cache, so that loading it does
    /// not compile; `None` for a native library.
    pub compiled_cached: Option<bool>,
}

/// What a file's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detected {
    Component,
    CoreModule,
    Native,
    Unknown,
}

/// Tells a file's format from its magic number.
pub(crate) fn detect(bytes: &[u8]) -> Detected {
    const ELF: &[u8] = b"\x7fELF";
    const MACH_O: &[[u8; 4]] = &[
        [0xfe, 0xed, 0xfa, 0xce],
        [0xfe, 0xed, 0xfa, 0xcf],
        [0xce, 0xfa, 0xed, 0xfe],
        [0xcf, 0xfa, 0xed, 0xfe],
        [0xca, 0xfe, 0xba, 0xbe],
    ];
    if bytes.len() >= 8 && bytes.starts_with(b"\0asm") {
        // The 4 bytes after the magic are a version and a layer: layer 0 is a core module,
        // layer 1 a component.
        return match (bytes[6], bytes[7]) {
            (0, 0) => Detected::CoreModule,
            (1, 0) => Detected::Component,
            _ => Detected::Unknown,
        };
    }
    if bytes.starts_with(ELF)
        || bytes.starts_with(b"MZ")
        || MACH_O.iter().any(|m| bytes.starts_with(m))
    {
        return Detected::Native;
    }
    Detected::Unknown
}

/// The names a component imports and exports at its top level.
#[derive(Debug, Default)]
pub(crate) struct ComponentNames {
    pub(crate) imports: Vec<String>,
    pub(crate) exports: Vec<String>,
}

/// Reads the top-level import and export names of a component without compiling it.
pub(crate) fn component_names(
    bytes: &[u8],
) -> std::result::Result<ComponentNames, wasmparser::BinaryReaderError> {
    use wasmparser::{Parser, Payload};
    let mut names = ComponentNames::default();
    // `parse_all` walks nested modules and components too, each closed by its own `End`.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    names.imports.push(import?.name.0.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    names.exports.push(export?.name.0.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

/// Splits `keelson:plugin/score@0.1.0` into `("score", Some("0.1.0"))`; `None` for names of
/// other packages.
pub(crate) fn keelson_interface(name: &str) -> Option<(&str, Option<&str>)> {
    let rest = name.strip_prefix("keelson:plugin/")?;
    Some(match rest.split_once('@') {
        Some((interface, version)) => (interface, Some(version)),
        None => (rest, None),
    })
}

/// Refuses a component that names another version of the contract in any import or export.
pub(crate) fn check_contract(plugin: &str, names: &ComponentNames) -> Result<()> {
    for name in names.imports.iter().chain(&names.exports) {
        if let Some((_, version)) = keelson_interface(name)
            && version != Some(CONTRACT_VERSION)
        {
            return Err(Error::ContractVersion {
                plugin: plugin.to_string(),
                found: version.unwrap_or("none").to_string(),
                supported: CONTRACT_VERSION,
            });
        }
    }
    Ok(())
}

/// The version of a contract string such as `keelson:plugin@0.1.0`.
pub(crate) fn contract_version(contract: &str) -> &str {
    contract.strip_prefix("keelson:plugin@").unwrap_or(contract)
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers_tell_formats_apart() {
        assert_eq!(detect(b"\0asm\x01\0\0\0"), Detected::CoreModule);
        assert_eq!(detect(b"\0asm\x0d\0\x01\0rest"), Detected::Component);
        assert_eq!(detect(b"\x7fELF\x02\x01\x01"), Detected::Native);
        assert_eq!(
            detect(&[0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1]),
            Detected::Native
        );
        assert_eq!(detect(b"MZ\x90\0"), Detected::Native);
        assert_eq!(detect(b"#!/bin/sh\n"), Detected::Unknown);
        assert_eq!(detect(b""), Detected::Unknown);
    }

    #[test]
    fn the_kind_follows_from_the_exports() {
        let k = |e: &[&str]| PluginKind::from_exports(e.iter().copied());
        assert_eq!(
            k(&["lifecycle", "scheduler", "score"]),
            Ok(PluginKind::SchedulerPolicy)
        );
        assert_eq!(
            k(&["lifecycle", "validate", "mutate"]),
            Ok(PluginKind::AdmissionCheck)
        );
        assert_eq!(k(&["lifecycle", "backend"]), Ok(PluginKind::NetworkBackend));
        assert!(k(&["lifecycle"]).is_err());
        assert!(k(&["scheduler", "backend"]).is_err());
    }

    #[test]
    fn another_contract_version_is_refused_naming_both_versions() {
        let names = ComponentNames {
            imports: vec!["keelson:plugin/types@0.2.0".into()],
            exports: vec![],
        };
        let err = check_contract("p", &names).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "plugin \"p\": built for contract keelson:plugin@0.2.0, but this host supports \
             keelson:plugin@0.1.0; rebuild it against the supported contract"
        );
    }
}
