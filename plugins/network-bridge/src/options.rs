//! The backend's options: parsed and validated entirely in `configure`.

use keelson_plugin_sdk::{ErrorKind, PluginError, plugin_error};
use serde::Deserialize;

use crate::cidr::Ipv4Cidr;

/// The options as written (JSON).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default = "default_bridge")]
    bridge: String,
    #[serde(default = "default_mtu")]
    mtu: u32,
    #[serde(default, rename = "clusterCIDR")]
    cluster_cidr: Option<String>,
    #[serde(default = "yes")]
    masquerade: bool,
    #[serde(default = "yes")]
    hairpin: bool,
}

fn default_bridge() -> String {
    "keelson0".into()
}

fn default_mtu() -> u32 {
    1500
}

fn yes() -> bool {
    true
}

/// The validated options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    /// The bridge's name.
    pub(crate) bridge: String,
    /// The MTU of the bridge and of both ends of every veth.
    pub(crate) mtu: u32,
    /// The whole pod network, exempt from masquerading; the node's pod CIDR when not given.
    pub(crate) cluster_cidr: Option<Ipv4Cidr>,
    /// Whether pod traffic leaving the pod network is source-NATed to the node's address.
    pub(crate) masquerade: bool,
    /// Whether a pod may reach itself through the bridge (hairpin mode on its port).
    pub(crate) hairpin: bool,
}

impl Options {
    /// Parses `text`; every error names the option and says what is accepted.
    pub(crate) fn parse(text: &str) -> Result<Options, PluginError> {
        let invalid = |message: String| plugin_error(ErrorKind::InvalidConfig, message);
        let text = if text.trim().is_empty() { "{}" } else { text };
        let raw: Raw = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if raw.bridge.is_empty()
            || raw.bridge.len() > 15
            || raw
                .bridge
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
            || raw.bridge == "."
            || raw.bridge == ".."
        {
            return Err(invalid(format!(
                "option \"bridge\": {:?} is not a valid interface name (1 to 15 bytes, no '/', \
                 ':' or whitespace)",
                raw.bridge
            )));
        }
        if !(576..=65535).contains(&raw.mtu) {
            return Err(invalid(format!(
                "option \"mtu\": {} is out of range (576 to 65535)",
                raw.mtu
            )));
        }
        let cluster_cidr = raw
            .cluster_cidr
            .as_deref()
            .map(Ipv4Cidr::parse)
            .transpose()
            .map_err(|e| invalid(format!("option \"clusterCIDR\": {e}")))?;
        Ok(Options {
            bridge: raw.bridge,
            mtu: raw.mtu,
            cluster_cidr,
            masquerade: raw.masquerade,
            hairpin: raw.hairpin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_to_an_empty_object() {
        let o = Options::parse("{}").expect("valid");
        assert_eq!(
            o,
            Options {
                bridge: "keelson0".into(),
                mtu: 1500,
                cluster_cidr: None,
                masquerade: true,
                hairpin: true,
            }
        );
        assert_eq!(Options::parse("").expect("empty is {}"), o);
    }

    #[test]
    fn every_option_is_read() {
        let o = Options::parse(
            r#"{"bridge": "cbr0", "mtu": 1450, "clusterCIDR": "10.244.0.0/16",
                "masquerade": false, "hairpin": false}"#,
        )
        .expect("valid");
        assert_eq!(o.bridge, "cbr0");
        assert_eq!(o.mtu, 1450);
        assert_eq!(
            o.cluster_cidr.map(|c| c.to_string()).as_deref(),
            Some("10.244.0.0/16")
        );
        assert!(!o.masquerade && !o.hairpin);
    }

    #[test]
    fn errors_name_the_option() {
        let message = |text: &str| {
            let e = Options::parse(text).expect_err(text);
            assert_eq!(e.kind, ErrorKind::InvalidConfig, "{text}");
            e.message
        };
        assert!(message(r#"{"bridgee": "x"}"#).contains("unknown field `bridgee`"));
        assert_eq!(
            message(r#"{"bridge": "a-very-long-bridge-name"}"#),
            "option \"bridge\": \"a-very-long-bridge-name\" is not a valid interface name (1 to \
             15 bytes, no '/', ':' or whitespace)"
        );
        assert!(message(r#"{"bridge": "br/0"}"#).starts_with("option \"bridge\""));
        assert_eq!(
            message(r#"{"mtu": 100}"#),
            "option \"mtu\": 100 is out of range (576 to 65535)"
        );
        assert_eq!(
            message(r#"{"clusterCIDR": "10.244.0.1/16"}"#),
            "option \"clusterCIDR\": \"10.244.0.1/16\" has host bits set; the network is \
             10.244.0.0/16"
        );
        assert!(message(r#"{"masquerade": "yes"}"#).contains("invalid type"));
        assert!(message("\"keelson0\"").contains("invalid type"));
    }
}
