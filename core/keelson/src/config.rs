//! Daemon configuration: one YAML file per daemon, overridden by flags. Unknown keys are errors
//! naming the key and the file; everything is validated before a port is bound.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use keelson_apiserver::{Config, StoreConfig};

/// `keelson apiserver` flags. Each overrides the same key of `--config`.
#[derive(Args, Debug, Default)]
pub struct ApiserverArgs {
    /// YAML config file (keys: dataDir, bindAddress, securePort, tlsSan, writeKubeconfig,
    /// serviceClusterIPRange, serviceNodePortRange, advertiseAddress, etcdServers, etcdPrefix,
    /// tokenAuthFile).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where the store, certificates and kubeconfig live.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    pub bind_address: Option<IpAddr>,
    /// HTTPS port.
    #[arg(long)]
    pub secure_port: Option<u16>,
    /// Extra subject alternative names for the serving certificate (repeatable).
    #[arg(long = "tls-san")]
    pub tls_san: Vec<String>,
    /// Also write the admin kubeconfig here.
    #[arg(long)]
    pub write_kubeconfig: Option<PathBuf>,
    /// CIDR that service cluster IPs come from.
    #[arg(long)]
    pub service_cluster_ip_range: Option<String>,
    /// Inclusive port range for NodePort services, e.g. 30000-32767.
    #[arg(long)]
    pub service_node_port_range: Option<String>,
    /// Address advertised to clients and in the `kubernetes` endpoints.
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
    /// Use etcd at these URLs (comma separated) instead of the embedded store.
    #[arg(long, value_delimiter = ',')]
    pub etcd_servers: Vec<String>,
    /// Key prefix under which objects are stored in etcd.
    #[arg(long)]
    pub etcd_prefix: Option<String>,
    /// A static token file: `token,user,uid[,"group1,group2"]` per line; requests bearing one
    /// of its tokens authenticate as its user (how agents join; see `keelson agent`).
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// Seconds between watch bookmarks.
    #[arg(long, hide = true)]
    pub bookmark_interval_seconds: Option<u64>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ApiserverFile {
    data_dir: Option<PathBuf>,
    bind_address: Option<IpAddr>,
    secure_port: Option<u16>,
    #[serde(default)]
    tls_san: Vec<String>,
    write_kubeconfig: Option<PathBuf>,
    #[serde(rename = "serviceClusterIPRange")]
    service_cluster_ip_range: Option<String>,
    service_node_port_range: Option<String>,
    advertise_address: Option<IpAddr>,
    #[serde(default)]
    etcd_servers: Vec<String>,
    etcd_prefix: Option<String>,
    token_auth_file: Option<PathBuf>,
}

/// `15s`, `500ms`, `1m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (try 15s, 500ms, 1m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("{s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A daemon's YAML config file, or the defaults when none is named or it is empty. Unknown
/// keys are errors naming the key and the file (the file types deny unknown fields).
pub fn load_yaml<T: DeserializeOwned + Default>(path: Option<&Path>) -> anyhow::Result<T> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read config file {}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    serde_yaml_ng::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

/// The directory that paths in the config file `config` are relative to.
pub fn base_dir(config: Option<&Path>) -> PathBuf {
    config
        .and_then(Path::parent)
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// The kubeconfig a daemon uses: the flag, then the config file's key (relative to `base`),
/// then `$KUBECONFIG`, then `/var/lib/keelson/kubeconfig.yaml`.
pub fn kubeconfig(flag: Option<PathBuf>, file: Option<PathBuf>, base: &Path) -> PathBuf {
    flag.or(file.map(|p| base.join(p)))
        .or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/lib/keelson/kubeconfig.yaml"))
}

/// A duration from its flag, else from the config file's `key` (parsed, errors naming it).
pub fn duration(
    flag: Option<Duration>,
    key: &str,
    value: Option<String>,
) -> anyhow::Result<Option<Duration>> {
    flag.map(Ok)
        .or_else(|| value.map(|s| parse_duration(&s).map_err(|e| anyhow::anyhow!("{key}: {e}"))))
        .transpose()
}

fn parse_port_range(s: &str) -> anyhow::Result<(u16, u16)> {
    let (a, b) = s
        .split_once('-')
        .with_context(|| format!("serviceNodePortRange {s:?}: expected FROM-TO"))?;
    let a: u16 = a
        .trim()
        .parse()
        .with_context(|| format!("serviceNodePortRange {s:?}"))?;
    let b: u16 = b
        .trim()
        .parse()
        .with_context(|| format!("serviceNodePortRange {s:?}"))?;
    if a == 0 || a > b {
        bail!("serviceNodePortRange {s:?}: FROM must be between 1 and TO");
    }
    Ok((a, b))
}

impl ApiserverArgs {
    pub fn resolve(self) -> anyhow::Result<Config> {
        let file: ApiserverFile = load_yaml(self.config.as_deref())?;
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("/var/lib/keelson"));
        let mut cfg = Config::new(data_dir.clone());
        if let Some(a) = self.bind_address.or(file.bind_address) {
            cfg.bind_address = a;
        }
        if let Some(p) = self.secure_port.or(file.secure_port) {
            cfg.secure_port = p;
        }
        cfg.tls_sans = file.tls_san;
        cfg.tls_sans.extend(self.tls_san);
        cfg.write_kubeconfig = self.write_kubeconfig.or(file.write_kubeconfig);
        if let Some(r) = self
            .service_cluster_ip_range
            .or(file.service_cluster_ip_range)
        {
            cfg.service_cluster_ip_range = r
                .parse()
                .with_context(|| format!("serviceClusterIPRange {r:?} is not an IPv4 CIDR"))?;
            if cfg.service_cluster_ip_range.prefix_len() > 30 {
                bail!("serviceClusterIPRange {r:?} is too small: use a /30 or larger");
            }
        }
        if let Some(r) = self
            .service_node_port_range
            .or(file.service_node_port_range)
        {
            cfg.service_node_port_range = parse_port_range(&r)?;
        }
        cfg.advertise_address = self.advertise_address.or(file.advertise_address);
        let etcd = if self.etcd_servers.is_empty() {
            file.etcd_servers
        } else {
            self.etcd_servers
        };
        if !etcd.is_empty() {
            for s in &etcd {
                if !s.starts_with("http://") && !s.starts_with("https://") {
                    bail!("etcdServers: {s:?} must be an http:// or https:// URL");
                }
            }
            cfg.store = StoreConfig::Etcd {
                servers: etcd,
                prefix: self.etcd_prefix.or(file.etcd_prefix).unwrap_or_default(),
            };
        }
        cfg.token_auth_file = self.token_auth_file.or(file.token_auth_file);
        if let Some(s) = self.bookmark_interval_seconds {
            cfg.bookmark_interval = Duration::from_secs(s.max(1));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("3 days").is_err());
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, "securePort: 7443\nbogusKey: 1\n").unwrap();
        let args = ApiserverArgs {
            config: Some(p.clone()),
            ..Default::default()
        };
        let err = format!("{:#}", args.resolve().unwrap_err());
        assert!(err.contains("bogusKey"), "{err}");
        assert!(err.contains(&p.display().to_string()), "{err}");
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, "securePort: 7443\nserviceNodePortRange: 31000-31010\n").unwrap();
        let args = ApiserverArgs {
            config: Some(p),
            secure_port: Some(9443),
            ..Default::default()
        };
        let cfg = args.resolve().unwrap();
        assert_eq!(cfg.secure_port, 9443);
        assert_eq!(cfg.service_node_port_range, (31000, 31010));
    }

    #[test]
    fn bad_ranges_are_rejected() {
        assert!(parse_port_range("32000-31000").is_err());
        assert!(parse_port_range("abc").is_err());
        let args = ApiserverArgs {
            service_cluster_ip_range: Some("10.0.0.0/31".into()),
            ..Default::default()
        };
        assert!(args.resolve().is_err());
    }
}
