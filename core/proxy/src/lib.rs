//! Keelson's service proxy (`keelson proxy`): it watches Services and Endpoints and makes
//! each Service's cluster IP (and node port) reach the Service's ready endpoints.
//!
//! - [`model`] distils Services and Endpoints into the service ports the proxy serves.
//! - [`nft`] (kernel mode, the default) renders them as nftables rules in a table of
//!   Keelson's own and computes the transaction that takes the kernel from the last applied
//!   rules to the new ones.
//! - [`proxier`] is the watch loop that keeps the node in step, in either mode.
//! - [`userspace`] is the book's mode: a listener per service port (TCP and UDP), round robin
//!   with ClientIP affinity, dial retries to the next endpoint, UDP client sessions.
//! - [`conntrack`] flushes the conntrack entries of UDP flows whose endpoint went away.

pub mod conntrack;
pub mod model;
pub mod nft;
pub mod proxier;
pub mod userspace;

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Errors of the proxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run nft (Debian package nftables): {0}")]
    NftMissing(#[source] std::io::Error),
    #[error("nft refused the transaction: {0}")]
    Nft(String),
    #[error("cannot run conntrack (Debian package conntrack): {0}")]
    ConntrackMissing(#[source] std::io::Error),
    #[error("{0}")]
    Conntrack(String),
}

/// Runs `nft`, in the node's network namespace or in a named one (`ip netns`).
#[derive(Clone, Debug, Default)]
pub struct Nft {
    /// A network namespace made with `ip netns add`, for tests; `None` for the node's own.
    pub netns: Option<String>,
}

impl Nft {
    fn command(&self) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nft"]);
                c
            }
            None => Command::new("nft"),
        }
    }

    /// Applies `transaction` (text for `nft -f -`) atomically: all of it or nothing.
    pub fn apply(&self, transaction: &str) -> Result<(), Error> {
        if transaction.is_empty() {
            return Ok(());
        }
        let mut child = self
            .command()
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(Error::NftMissing)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(transaction.as_bytes())
                .map_err(|e| Error::Nft(format!("writing the transaction: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| Error::Nft(format!("waiting for nft: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Nft(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ))
        }
    }

    /// `nft list table ip <table>`; `None` when the table does not exist.
    pub fn list_table(&self, table: &str) -> Result<Option<String>, Error> {
        let out = self
            .command()
            .args(["list", "table", "ip", table])
            .output()
            .map_err(Error::NftMissing)?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    /// Deletes table `ip <table>` if it exists.
    pub fn delete_table(&self, table: &str) -> Result<(), Error> {
        self.apply(&format!("add table ip {table}\ndelete table ip {table}\n"))
    }
}
