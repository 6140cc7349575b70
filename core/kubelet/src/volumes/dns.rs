//! The files the kubelet writes for each pod: `/etc/resolv.conf` per `dnsPolicy` and
//! `dnsConfig`, and the managed `/etc/hosts`.

use keelson_api::k8s_openapi::api::core::v1::{HostAlias, Pod, PodDNSConfig};

/// Kubernetes' limits on what a resolver takes.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCH_PATHS: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;

pub const HOSTS_HEADER: &str = "# Kubernetes-managed hosts file.\n";
pub const HOSTS_HEADER_HOST_NETWORK: &str = "# Kubernetes-managed hosts file (host network).\n";

/// A resolver configuration: what a resolv.conf says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl DnsConfig {
    /// Reads a resolv.conf: `nameserver` lines add up, the last `search` line wins (trailing
    /// dots dropped), `options` merge by name.
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["nameserver", server, ..] => out.nameservers.push(server.to_string()),
                ["search", domains @ ..] => {
                    out.searches = domains
                        .iter()
                        .filter(|d| **d != ".")
                        .map(|d| d.trim_end_matches('.').to_string())
                        .collect();
                }
                ["options", opts @ ..] => {
                    let merged: Vec<(String, Option<String>)> =
                        opts.iter().map(|o| split_option(o)).collect();
                    out.options = merge_options(&out.options, &merged);
                }
                _ => {}
            }
        }
        out
    }

    /// The file, as containerd writes it for a sandbox: search, nameservers, options.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for server in &self.nameservers {
            out.push_str(&format!("nameserver {server}\n"));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// What the pod's resolver configuration depends on besides the pod.
#[derive(Clone, Debug, Default)]
pub struct DnsSettings<'a> {
    pub cluster_dns: &'a [String],
    pub cluster_domain: &'a str,
    /// The node's resolver configuration (`--resolv-conf`), `None` when that flag is empty.
    pub host: Option<&'a DnsConfig>,
}

/// The pod's resolver configuration, and the warning the kubelet records when it falls back
/// (`MissingClusterDNS`, `DNSConfigForming`).
pub fn pod_dns(pod: &Pod, settings: &DnsSettings) -> (DnsConfig, Vec<(&'static str, String)>) {
    let spec = pod.spec.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host_network = spec.host_network.unwrap_or(false);
    let mut warnings = Vec::new();
    #[derive(PartialEq)]
    enum Kind {
        Cluster,
        Host,
        None,
    }
    let mut kind = match spec.dns_policy.as_deref().unwrap_or("ClusterFirst") {
        "None" => Kind::None,
        "ClusterFirstWithHostNet" => Kind::Cluster,
        "Default" => Kind::Host,
        _ if host_network => Kind::Host,
        _ => Kind::Cluster,
    };
    if kind == Kind::Cluster && settings.cluster_dns.is_empty() {
        warnings.push((
            "MissingClusterDNS",
            "kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.".to_string(),
        ));
        kind = Kind::Host;
    }
    let host = settings.host.cloned().unwrap_or_else(|| DnsConfig {
        // No resolv.conf (`--resolv-conf=""`): lookups go nowhere.
        nameservers: vec!["127.0.0.1".into()],
        searches: vec![".".into()],
        options: Vec::new(),
    });
    let mut config = match kind {
        Kind::None => DnsConfig::default(),
        Kind::Host => host,
        Kind::Cluster => {
            let mut searches = Vec::new();
            if !settings.cluster_domain.is_empty() {
                let d = settings.cluster_domain;
                searches = vec![format!("{namespace}.svc.{d}"), format!("svc.{d}"), d.into()];
            }
            searches.extend(host.searches);
            DnsConfig {
                nameservers: settings.cluster_dns.to_vec(),
                searches: dedup(searches),
                options: vec!["ndots:5".into()],
            }
        }
    };
    if let Some(extra) = &spec.dns_config {
        config = append_dns_config(config, extra);
    }
    if config.nameservers.len() > MAX_NAMESERVERS {
        warnings.push((
            "DNSConfigForming",
            format!(
                "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {}",
                config.nameservers[..MAX_NAMESERVERS].join(" ")
            ),
        ));
        config.nameservers.truncate(MAX_NAMESERVERS);
    }
    let mut searches = Vec::new();
    let mut chars = 0;
    for s in config.searches.iter().take(MAX_SEARCH_PATHS) {
        if chars + s.len() + usize::from(!searches.is_empty()) > MAX_SEARCH_CHARS {
            break;
        }
        chars += s.len() + usize::from(!searches.is_empty());
        searches.push(s.clone());
    }
    if searches.len() < config.searches.len() {
        warnings.push((
            "DNSConfigForming",
            format!(
                "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
                searches.join(" ")
            ),
        ));
    }
    config.searches = searches;
    (config, warnings)
}

fn append_dns_config(mut config: DnsConfig, extra: &PodDNSConfig) -> DnsConfig {
    config
        .nameservers
        .extend(extra.nameservers.iter().flatten().cloned());
    config.nameservers = dedup(config.nameservers);
    config
        .searches
        .extend(extra.searches.iter().flatten().cloned());
    config.searches = dedup(config.searches);
    let opts: Vec<(String, Option<String>)> = extra
        .options
        .iter()
        .flatten()
        .map(|o| (o.name.clone().unwrap_or_default(), o.value.clone()))
        .filter(|(n, _)| !n.is_empty())
        .collect();
    config.options = merge_options(&config.options, &opts);
    config
}

fn split_option(option: &str) -> (String, Option<String>) {
    match option.split_once(':') {
        Some((n, v)) => (n.to_string(), Some(v.to_string())),
        None => (option.to_string(), None),
    }
}

/// Options by name, later ones replacing earlier ones in place.
fn merge_options(existing: &[String], more: &[(String, Option<String>)]) -> Vec<String> {
    let mut merged: Vec<(String, Option<String>)> =
        existing.iter().map(|o| split_option(o)).collect();
    for (name, value) in more {
        match merged.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value.clone(),
            None => merged.push((name.clone(), value.clone())),
        }
    }
    merged
        .into_iter()
        .map(|(n, v)| match v.filter(|v| !v.is_empty()) {
            Some(v) => format!("{n}:{v}"),
            None => n,
        })
        .collect()
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// The pod's hostname and, with a subdomain, its domain (`<subdomain>.<ns>.svc.<domain>`).
pub fn hostname_and_domain(pod: &Pod, cluster_domain: &str) -> (String, Option<String>) {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut hostname = spec
        .hostname
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    hostname.truncate(63);
    let hostname = hostname.trim_end_matches(['-', '.']).to_string();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let domain = spec
        .subdomain
        .filter(|s| !s.is_empty())
        .map(|sub| format!("{sub}.{namespace}.svc.{cluster_domain}"));
    (hostname, domain)
}

/// The managed hosts file of a pod with its own network namespace.
pub fn managed_hosts(
    pod_ips: &[String],
    hostname: &str,
    domain: Option<&str>,
    aliases: &[HostAlias],
) -> String {
    let mut out = String::from(HOSTS_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in pod_ips {
        match domain {
            Some(d) => out.push_str(&format!("{ip}\t{hostname}.{d}\t{hostname}\n")),
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    out.push_str(&alias_entries(aliases));
    out
}

/// The hosts file of a host-network pod: the node's, with the pod's aliases.
pub fn host_network_hosts(node_hosts: &str, aliases: &[HostAlias]) -> String {
    format!(
        "{HOSTS_HEADER_HOST_NETWORK}{node_hosts}{}",
        alias_entries(aliases)
    )
}

fn alias_entries(aliases: &[HostAlias]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for a in aliases {
        let names = a.hostnames.clone().unwrap_or_default().join("\t");
        out.push_str(&format!("{}\t{names}\n", a.ip));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_api::k8s_openapi::api::core::v1::{PodDNSConfigOption, PodSpec};
    use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(policy: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("team".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                dns_policy: policy.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const HOST: &str = "# generated\nnameserver 192.0.2.53\nnameserver 192.0.2.54 ; second\nsearch example.com. corp.example.com\noptions edns0 ndots:2\noptions timeout:1 ndots:3\n";

    #[test]
    fn resolv_conf_is_read_and_written() {
        let host = DnsConfig::parse(HOST);
        assert_eq!(host.nameservers, ["192.0.2.53", "192.0.2.54"]);
        assert_eq!(host.searches, ["example.com", "corp.example.com"]);
        assert_eq!(host.options, ["edns0", "ndots:3", "timeout:1"]);
        assert_eq!(
            host.render(),
            "search example.com corp.example.com\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions edns0 ndots:3 timeout:1\n"
        );
    }

    #[test]
    fn cluster_first_default_and_none() {
        let host = DnsConfig::parse(HOST);
        let dns = vec!["10.96.0.10".to_string()];
        let with_dns = DnsSettings {
            cluster_dns: &dns,
            cluster_domain: "cluster.local",
            host: Some(&host),
        };
        let (c, warnings) = pod_dns(&pod(None), &with_dns);
        assert!(warnings.is_empty());
        assert_eq!(
            c.render(),
            "search team.svc.cluster.local svc.cluster.local cluster.local example.com corp.example.com\nnameserver 10.96.0.10\noptions ndots:5\n"
        );

        // No cluster DNS: the node's, with the kubelet's warning.
        let without = DnsSettings {
            cluster_dns: &[],
            cluster_domain: "cluster.local",
            host: Some(&host),
        };
        let (c, warnings) = pod_dns(&pod(Some("ClusterFirst")), &without);
        assert_eq!(c, host);
        assert_eq!(warnings[0].0, "MissingClusterDNS");
        assert!(
            warnings[0]
                .1
                .contains("Falling back to \"Default\" policy.")
        );

        let (c, _) = pod_dns(&pod(Some("Default")), &with_dns);
        assert_eq!(c, host);

        // A host-network pod with ClusterFirst gets the node's; ClusterFirstWithHostNet not.
        let mut hn = pod(None);
        if let Some(s) = hn.spec.as_mut() {
            s.host_network = Some(true);
        }
        assert_eq!(pod_dns(&hn, &with_dns).0, host);
        if let Some(s) = hn.spec.as_mut() {
            s.dns_policy = Some("ClusterFirstWithHostNet".into());
        }
        assert_eq!(pod_dns(&hn, &with_dns).0.nameservers, dns);

        let mut none = pod(Some("None"));
        if let Some(s) = none.spec.as_mut() {
            s.dns_config = Some(PodDNSConfig {
                nameservers: Some(vec!["1.1.1.1".into()]),
                searches: Some(vec!["a.example".into()]),
                options: Some(vec![
                    PodDNSConfigOption {
                        name: Some("ndots".into()),
                        value: Some("1".into()),
                    },
                    PodDNSConfigOption {
                        name: Some("rotate".into()),
                        value: None,
                    },
                ]),
            });
        }
        assert_eq!(
            pod_dns(&none, &with_dns).0.render(),
            "search a.example\nnameserver 1.1.1.1\noptions ndots:1 rotate\n"
        );

        // dnsConfig merges into ClusterFirst: options by name, servers capped at three.
        let mut merged = none.clone();
        if let Some(s) = merged.spec.as_mut() {
            s.dns_policy = None;
            if let Some(d) = s.dns_config.as_mut() {
                d.nameservers = Some(vec!["1.1.1.1".into(), "2.2.2.2".into(), "3.3.3.3".into()]);
            }
        }
        let (c, warnings) = pod_dns(&merged, &with_dns);
        assert_eq!(c.nameservers, ["10.96.0.10", "1.1.1.1", "2.2.2.2"]);
        assert_eq!(c.options, ["ndots:1", "rotate"]);
        assert_eq!(c.searches.last().map(String::as_str), Some("a.example"));
        assert_eq!(warnings[0].0, "DNSConfigForming");
    }

    #[test]
    fn hosts_files() {
        let mut p = pod(None);
        if let Some(s) = p.spec.as_mut() {
            s.hostname = Some("h".into());
            s.subdomain = Some("sub".into());
        }
        let (name, domain) = hostname_and_domain(&p, "cluster.local");
        assert_eq!(name, "h");
        assert_eq!(domain.as_deref(), Some("sub.team.svc.cluster.local"));
        let aliases = vec![HostAlias {
            ip: "10.0.0.9".into(),
            hostnames: Some(vec!["foo.local".into(), "bar.local".into()]),
        }];
        let hosts = managed_hosts(&["10.1.0.5".into()], &name, domain.as_deref(), &aliases);
        assert_eq!(
            hosts,
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n10.1.0.5\th.sub.team.svc.cluster.local\th\n\n# Entries added by HostAliases.\n10.0.0.9\tfoo.local\tbar.local\n"
        );
        let (name, domain) = hostname_and_domain(&pod(None), "cluster.local");
        assert_eq!((name.as_str(), domain), ("web", None));
        assert!(managed_hosts(&["10.1.0.5".into()], "web", None, &[]).ends_with("10.1.0.5\tweb\n"));
        assert_eq!(
            host_network_hosts("127.0.0.1 localhost\n", &[]),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n"
        );
    }
}
