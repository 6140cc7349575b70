//! Masquerading for pod CIDRs with nftables, in Keelson's own tables (`ip keelson-nat` and
//! `ip6 keelson-nat`, chain `postrouting`): one rule per source CIDR, named by its comment and
//! replaced in one transaction. Other tables are never touched. Runs the `nft` binary.

use std::io::Write as _;
use std::process::{Command, Stdio};

use ipnet::IpNet;
use keelson_plugin_host::NetError;

/// The name of Keelson's NAT tables (one per family).
pub const TABLE: &str = "keelson-nat";
/// The chain the masquerade rules are in.
pub const CHAIN: &str = "postrouting";

/// The nftables family of a prefix.
pub fn family(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "ip",
        IpNet::V6(_) => "ip6",
    }
}

/// The comment that names the rule for `source`.
pub fn comment(source: &IpNet) -> String {
    format!("keelson masquerade {}", source.trunc())
}

fn nft(args: &[&str], stdin: Option<&str>) -> Result<String, NetError> {
    let mut cmd = Command::new("nft");
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            NetError::Unsupported("the nft binary (nftables) is not installed".into())
        }
        _ => NetError::Other(format!("cannot run nft: {e}")),
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| NetError::Other(format!("cannot write to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| NetError::Other(format!("nft failed: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if err.contains("Operation not permitted") {
            return Err(NetError::PermissionDenied);
        }
        if err.contains("No such file or directory") {
            return Err(NetError::NotFound);
        }
        return Err(NetError::Other(format!("nft {}: {err}", args.join(" "))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The handles of the rules in Keelson's chain of `fam` whose comment is `comment`; none when
/// the table or chain does not exist.
fn handles(fam: &str, comment: &str) -> Result<Vec<u64>, NetError> {
    let out = match nft(&["-j", "-a", "list", "chain", fam, TABLE, CHAIN], None) {
        Ok(out) => out,
        Err(NetError::NotFound) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(rule_handles(&out, comment))
}

/// Reads `nft -j -a list chain` output: the handles of the rules with `comment`.
pub fn rule_handles(json: &str, comment: &str) -> Vec<u64> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item.get("rule"))
        .filter(|r| r["comment"].as_str() == Some(comment))
        .filter_map(|r| r["handle"].as_u64())
        .collect()
}

/// The nft script that replaces the rule for `source` (deleting rules `old`).
pub fn masquerade_script(source: &IpNet, exempt: &[IpNet], old: &[u64]) -> String {
    let fam = family(source);
    let addr = if fam == "ip" { "ip" } else { "ip6" };
    let mut s = format!(
        "add table {fam} {TABLE}\n\
         add chain {fam} {TABLE} {CHAIN} {{ type nat hook postrouting priority srcnat; policy accept; }}\n"
    );
    for h in old {
        s.push_str(&format!("delete rule {fam} {TABLE} {CHAIN} handle {h}\n"));
    }
    let exempt: Vec<String> = exempt
        .iter()
        .filter(|e| family(e) == fam)
        .map(|e| e.trunc().to_string())
        .collect();
    let mut rule = format!("{addr} saddr {}", source.trunc());
    if !exempt.is_empty() {
        rule.push_str(&format!(" {addr} daddr != {{ {} }}", exempt.join(", ")));
    }
    s.push_str(&format!(
        "add rule {fam} {TABLE} {CHAIN} {rule} masquerade comment \"{}\"\n",
        comment(source)
    ));
    s
}

/// Installs or replaces the masquerade rule for `source`.
pub fn set_masquerade(source: IpNet, exempt: &[IpNet]) -> Result<(), NetError> {
    let source = source.trunc();
    let fam = family(&source);
    let old = handles(fam, &comment(&source))?;
    nft(
        &["-f", "-"],
        Some(&masquerade_script(&source, exempt, &old)),
    )
    .map(drop)
}

/// Removes the masquerade rule for `source`; a missing rule is not an error.
pub fn clear_masquerade(source: IpNet) -> Result<(), NetError> {
    let source = source.trunc();
    let fam = family(&source);
    let old = handles(fam, &comment(&source))?;
    if old.is_empty() {
        return Ok(());
    }
    let script: String = old
        .iter()
        .map(|h| format!("delete rule {fam} {TABLE} {CHAIN} handle {h}\n"))
        .collect();
    nft(&["-f", "-"], Some(&script)).map(drop)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_script_replaces_the_rule_of_one_source() {
        let src: IpNet = "10.244.1.0/24".parse().unwrap();
        let exempt: Vec<IpNet> = vec![
            "10.244.0.0/16".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ];
        let s = masquerade_script(&src, &exempt, &[7]);
        assert_eq!(
            s,
            "add table ip keelson-nat\n\
             add chain ip keelson-nat postrouting { type nat hook postrouting priority srcnat; policy accept; }\n\
             delete rule ip keelson-nat postrouting handle 7\n\
             add rule ip keelson-nat postrouting ip saddr 10.244.1.0/24 ip daddr != { 10.244.0.0/16 } masquerade comment \"keelson masquerade 10.244.1.0/24\"\n"
        );
    }

    #[test]
    fn handles_are_found_by_comment() {
        let json = r#"{"nftables": [{"metainfo": {}}, {"chain": {"name": "postrouting"}},
            {"rule": {"handle": 4, "comment": "keelson masquerade 10.0.0.0/24"}},
            {"rule": {"handle": 5, "comment": "other"}}]}"#;
        assert_eq!(
            rule_handles(json, "keelson masquerade 10.0.0.0/24"),
            vec![4]
        );
    }
}
