//! `keelson image import | pull | ls`: images in containerd, as the kubelet will see them.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use keelson_kubelet::Containerd;
use keelson_kubelet::containerd::{DEFAULT_ADDRESS, DEFAULT_NAMESPACE};
use keelson_kubelet::images;

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Import an OCI image-layout or `docker save` archive (tar) into containerd and unpack
    /// it, so that containers can be created from it.
    Import(ImportArgs),
    /// Pull an image from an OCI distribution registry into containerd and unpack it, as the
    /// kubelet does for a pod; prints progress, then the image's digest.
    Pull(PullArgs),
    /// List containerd's images: reference, digest and size.
    Ls(ContainerdArgs),
}

#[derive(clap::Args, Debug)]
pub struct ContainerdArgs {
    /// containerd's gRPC socket.
    #[arg(long, default_value = DEFAULT_ADDRESS)]
    address: PathBuf,
    /// The containerd namespace.
    #[arg(long, short = 'n', default_value = DEFAULT_NAMESPACE)]
    namespace: String,
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The archive to import.
    file: PathBuf,
    #[command(flatten)]
    containerd: ContainerdArgs,
}

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// The image reference (`busybox`, `registry.example:5000/app:v1`, `name@sha256:...`).
    reference: String,
    /// A registry (`host:port`) reached over plain HTTP instead of HTTPS; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registries: Vec<String>,
    #[command(flatten)]
    containerd: ContainerdArgs,
}

pub async fn run(command: ImageCommand) -> anyhow::Result<()> {
    match command {
        ImageCommand::Pull(args) => {
            let cd = connect(&args.containerd).await?;
            let options = images::PullOptions {
                insecure_registries: args.insecure_registries,
                progress: Some(std::sync::Arc::new(print_progress)),
                ..Default::default()
            };
            let pulled = images::pull(&cd, &args.reference, &options)
                .await
                .with_context(|| format!("pull {}", args.reference))?;
            println!(
                "pulled {} {} ({}, {} layers fetched, {} already present, in {})",
                pulled.name,
                pulled.target.digest,
                human_size(pulled.size),
                pulled.layers_fetched,
                pulled.layers_present,
                images::go_duration(pulled.duration)
            );
            Ok(())
        }
        ImageCommand::Import(args) => {
            let cd = connect(&args.containerd).await?;
            let imported = images::import(&cd, &args.file)
                .await
                .with_context(|| format!("import {}", args.file.display()))?;
            for image in imported {
                for name in &image.names {
                    println!(
                        "imported {name} {} (unpacked with {})",
                        image.target.digest, image.snapshotter
                    );
                }
            }
            Ok(())
        }
        ImageCommand::Ls(args) => {
            let cd = connect(&args).await?;
            let list = images::list(&cd).await.context("list images")?;
            print!("{}", table(&list));
            Ok(())
        }
    }
}

/// One line per finished step on stderr (stdout keeps the result), and a line per 10%
/// of a large layer.
fn print_progress(p: &images::Progress) {
    let short = p.digest.get(..19).unwrap_or(&p.digest);
    if p.present {
        eprintln!("{} {short}: already present", p.what);
    } else if p.done == p.total {
        eprintln!("{} {short}: done ({})", p.what, human_size(p.total));
    } else if p.total >= 10 << 20 {
        let step = (p.total / 10).max(1);
        // Reports come every MiB; print those that cross a tenth.
        if p.done % step < (1 << 20) {
            eprintln!(
                "{} {short}: {} of {}",
                p.what,
                human_size(p.done),
                human_size(p.total)
            );
        }
    }
}

async fn connect(args: &ContainerdArgs) -> anyhow::Result<Containerd> {
    Ok(Containerd::connect(&args.address, &args.namespace).await?)
}

/// `ctr images ls`-style columns, padded to the widest cell.
fn table(list: &[images::ImageSummary]) -> String {
    let mut rows = vec![["REF".to_string(), "DIGEST".to_string(), "SIZE".to_string()]];
    rows.extend(
        list.iter()
            .map(|i| [i.name.clone(), i.digest.clone(), human_size(i.size)]),
    );
    let width = |col: usize| rows.iter().map(|r| r[col].len()).max().unwrap_or(0);
    let (w0, w1) = (width(0), width(1));
    rows.iter()
        .map(|[r, d, s]| format!("{r:<w0$}  {d:<w1$}  {s}\n"))
        .collect()
}

/// Sizes as ctr prints them: binary units with one decimal.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(1_032_761), "1008.6 KiB");
        assert_eq!(human_size(2 * 1024 * 1024 + 104_858), "2.1 MiB");
    }

    #[test]
    fn table_columns_line_up() {
        let list = vec![images::ImageSummary {
            name: "docker.io/library/busybox:latest".into(),
            digest: "sha256:ab".into(),
            media_type: images::media_types::OCI_MANIFEST.into(),
            size: 2048,
        }];
        assert_eq!(
            table(&list),
            "REF                               DIGEST     SIZE\n\
             docker.io/library/busybox:latest  sha256:ab  2.0 KiB\n"
        );
    }
}
