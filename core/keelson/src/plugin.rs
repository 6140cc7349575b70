//! `keelson plugin`: scaffold, build, inspect and check plugins.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Scaffold a plugin crate that builds and passes its own test.
    New(NewArgs),
    /// Build a plugin crate into a Wasm component, or a native library with --native.
    Build(BuildArgs),
    /// Print a plugin file's kind, contract, exports, imports, size and cache state.
    Inspect(InspectArgs),
    /// Load a plugin under its limits, configure it and make a smoke call.
    Check(CheckArgs),
}

/// The kinds of plugin `keelson plugin new` scaffolds.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A scheduler policy (filter and score nodes for a pod).
    SchedulerPolicy,
    /// An admission check (validate and/or mutate API requests).
    AdmissionCheck,
    /// A network backend (build the pod network through host operations).
    NetworkBackend,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::SchedulerPolicy => "scheduler-policy",
            Kind::AdmissionCheck => "admission-check",
            Kind::NetworkBackend => "network-backend",
        }
    }

    fn template(self) -> &'static str {
        match self {
            Kind::SchedulerPolicy => include_str!("../templates/scheduler-policy.rs"),
            Kind::AdmissionCheck => include_str!("../templates/admission-check.rs"),
            Kind::NetworkBackend => include_str!("../templates/network-backend.rs"),
        }
    }
}

#[derive(Args, Debug)]
pub struct NewArgs {
    /// What kind of plugin.
    #[arg(value_enum)]
    pub kind: Kind,
    /// The plugin's name: lowercase letters, digits and dashes, starting with a letter.
    pub name: String,
    /// The directory to create; defaults to ./<name>.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The keelson-plugin-sdk crate to depend on; defaults to the SDK of the source tree this
    /// binary was built from.
    #[arg(long, env = "KEELSON_PLUGIN_SDK")]
    pub sdk: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The plugin crate (a directory with Cargo.toml).
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Build a native library instead of a Wasm component.
    #[arg(long)]
    pub native: bool,
    /// Copy the result to this file.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Cargo's target directory; defaults to the crate's own.
    #[arg(long)]
    pub target_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The plugin file (.wasm component or native library).
    pub file: PathBuf,
    /// The compiled-code cache to look in.
    #[arg(long, default_value = "/var/lib/keelson/plugin-cache")]
    pub cache_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The plugin file (.wasm component or native library).
    pub file: PathBuf,
    /// The plugin's options as JSON.
    #[arg(long, default_value = "{}")]
    pub options: String,
    /// The per-call deadline in milliseconds (Wasm only).
    #[arg(long, default_value_t = 100)]
    pub deadline_ms: u64,
    /// The memory cap in MiB (Wasm only).
    #[arg(long, default_value_t = 64)]
    pub memory_mib: usize,
    /// The compiled-code cache to use.
    #[arg(long, default_value = "/var/lib/keelson/plugin-cache")]
    pub cache_dir: PathBuf,
}

pub fn run(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::New(args) => new(args),
        PluginCommand::Build(args) => build(args).map(|path| println!("{}", path.display())),
        PluginCommand::Inspect(args) => crate::plugin_check::inspect(args),
        PluginCommand::Check(args) => crate::plugin_check::check(args),
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

fn default_sdk() -> Option<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../sdk")
        .canonicalize()
        .ok()
        .filter(|p| p.join("Cargo.toml").is_file())
}

fn new(args: NewArgs) -> anyhow::Result<()> {
    if !valid_name(&args.name) {
        bail!(
            "plugin name {:?} is not valid: use lowercase letters, digits and dashes, starting \
             with a letter (for example zone-spread)",
            args.name
        );
    }
    let sdk = match args.sdk.or_else(default_sdk) {
        Some(sdk) => sdk
            .canonicalize()
            .with_context(|| format!("SDK path {}", sdk.display()))?,
        None => bail!(
            "cannot find keelson-plugin-sdk: pass --sdk <path to the sdk/ folder of a Keelson \
             source tree> or set KEELSON_PLUGIN_SDK"
        ),
    };
    if !sdk.join("Cargo.toml").is_file() {
        bail!(
            "{} has no Cargo.toml; --sdk must name the sdk/ folder",
            sdk.display()
        );
    }
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && dir
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!("{} already exists and is not empty", dir.display());
    }
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let fill = |text: &str| {
        text.replace("{{name}}", &args.name)
            .replace("{{kind}}", args.kind.name())
            .replace("{{sdk}}", &sdk.to_string_lossy().replace('\\', "/"))
    };
    let files = [
        (
            "Cargo.toml",
            fill(include_str!("../templates/Cargo.toml.in")),
        ),
        ("README.md", fill(include_str!("../templates/README.md.in"))),
        ("src/lib.rs", fill(args.kind.template())),
        (".gitignore", "/target\n".to_string()),
    ];
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "created {} plugin {:?} in {}\n\nnext:\n  cd {}\n  cargo test\n  keelson plugin build            # Wasm component\n  keelson plugin build --native   # native library",
        args.kind.name(),
        args.name,
        dir.display(),
        dir.display()
    );
    Ok(())
}

/// What `cargo metadata` says about the crate to build.
struct CrateInfo {
    target_dir: PathBuf,
    lib_name: String,
}

fn crate_info(manifest: &Path) -> anyhow::Result<CrateInfo> {
    let out = Command::new(cargo())
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed for {}:\n{}",
            manifest.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    let target_dir = meta["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    let manifest_abs = manifest.canonicalize()?;
    let package = meta["packages"]
        .as_array()
        .and_then(|ps| {
            ps.iter().find(|p| {
                p["manifest_path"]
                    .as_str()
                    .and_then(|m| Path::new(m).canonicalize().ok())
                    .is_some_and(|m| m == manifest_abs)
            })
        })
        .context("cargo metadata does not list the crate")?;
    let lib = package["targets"]
        .as_array()
        .and_then(|ts| {
            ts.iter().find(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
            })
        })
        .context(
            "the crate has no cdylib target: set crate-type = [\"cdylib\", \"rlib\"] in [lib]",
        )?;
    let name = lib["name"]
        .as_str()
        .context("the cdylib target has no name")?;
    Ok(CrateInfo {
        target_dir: PathBuf::from(target_dir),
        lib_name: name.replace('-', "_"),
    })
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn wasm_target_installed() -> Option<bool> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == "wasm32-wasip2")
    })
}

/// Builds the crate at `args.path` and returns the built file.
pub fn build(args: BuildArgs) -> anyhow::Result<PathBuf> {
    let manifest = args.path.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "{} has no Cargo.toml: give the plugin crate's directory",
            args.path.display()
        );
    }
    if !args.native && wasm_target_installed() == Some(false) {
        bail!(
            "the wasm32-wasip2 target is not installed: run `rustup target add wasm32-wasip2` \
             (or build a native library with --native)"
        );
    }
    let mut info = crate_info(&manifest)?;
    let mut cmd = Command::new(cargo());
    cmd.args(["build", "--release", "--lib", "--manifest-path"])
        .arg(&manifest);
    if !args.native {
        cmd.args(["--target", "wasm32-wasip2"]);
    }
    if let Some(dir) = &args.target_dir {
        cmd.arg("--target-dir").arg(dir);
        info.target_dir = dir.clone();
    }
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed for {}", manifest.display());
    }
    let built = if args.native {
        info.target_dir.join("release").join(format!(
            "{}{}{}",
            std::env::consts::DLL_PREFIX,
            info.lib_name,
            std::env::consts::DLL_SUFFIX
        ))
    } else {
        info.target_dir
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", info.lib_name))
    };
    if !built.is_file() {
        bail!("cargo reported success but {} is missing", built.display());
    }
    match args.out {
        Some(out) => {
            std::fs::copy(&built, &out)
                .with_context(|| format!("copying {} to {}", built.display(), out.display()))?;
            Ok(out)
        }
        None => Ok(built),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_are_checked() {
        for good in ["zone-spread", "a", "p2"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "Zone", "2p", "zone_spread", "zone-", "a b"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
