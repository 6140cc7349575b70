//! Service-account bearer tokens with real kubectl: a token signed with the data dir's
//! `pki/sa.key` and held by its Secret authenticates as the service account
//! (`kubectl auth whoami`); made-up tokens, tokens signed by another key and tokens whose
//! Secret is gone get 401 Unauthorized. The test plays the controller manager's token
//! controller: it signs the token and stores the Secret itself.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use keelson_api::sa_token::{self, LegacyClaims};
use keelson_testsupport::{KubectlOutput, kubectl, wait_until};

use common::{Admin, Server, empty_kubeconfig};

/// kubectl with only a bearer token: no client certificate anywhere.
fn with_token(admin: &Admin<'_>, token: &str, args: &[&str]) -> KubectlOutput {
    let server = admin.server;
    let kubeconfig = empty_kubeconfig(server.dir.path());
    let ca = server.pki("ca.crt").display().to_string();
    let mut all = vec![
        "--server",
        server.url.as_str(),
        "--certificate-authority",
        ca.as_str(),
        "--token",
        token,
    ];
    all.extend(args);
    kubectl(&admin.bin, &kubeconfig, &all, None)
}

fn whoami(admin: &Admin<'_>, token: &str) -> KubectlOutput {
    with_token(admin, token, &["auth", "whoami", "-o", "json"])
}

fn assert_unauthorized(out: &KubectlOutput, what: &str) {
    assert!(!out.ok, "{what}: accepted:\n{}", out.stdout);
    assert!(
        out.stderr.contains("Unauthorized") || out.stderr.contains("You must be logged in"),
        "{what}: {}",
        out.stderr
    );
}

fn secret_manifest(ns: &str, name: &str, account: &str, token: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(token);
    format!(
        r#"{{"apiVersion": "v1", "kind": "Secret",
  "metadata": {{"name": "{name}", "namespace": "{ns}",
               "annotations": {{"kubernetes.io/service-account.name": "{account}"}}}},
  "type": "kubernetes.io/service-account-token",
  "data": {{"token": "{b64}"}}}}"#
    )
}

#[test]
fn service_account_token_authenticates_until_its_secret_is_deleted() {
    let server = Server::start();
    let admin = Admin::new(&server);

    // The admin (client certificate) for comparison.
    let me = admin.json(&["auth", "whoami"]);
    assert_eq!(me["status"]["userInfo"]["username"], "admin", "{me}");

    admin.ok(&["create", "namespace", "ns1"]);
    admin.ok(&["create", "serviceaccount", "robot", "-n", "ns1"]);
    let uid = admin.ok(&[
        "get",
        "serviceaccount",
        "robot",
        "-n",
        "ns1",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    assert!(!uid.is_empty());

    let key = std::fs::read_to_string(server.pki("sa.key")).unwrap();
    let token = sa_token::sign(
        &key,
        &LegacyClaims::new("ns1", "robot", &uid, "robot-token-x1"),
    )
    .unwrap();

    // Signed but not (yet) held by its Secret: refused.
    assert_unauthorized(&whoami(&admin, &token), "token without its secret");

    admin.stdin(
        &["apply", "-f", "-"],
        &secret_manifest("ns1", "robot-token-x1", "robot", &token),
    );
    let out = whoami(&admin, &token);
    assert!(out.ok, "whoami with the token: {}", out.stderr);
    let review: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(review["kind"], "SelfSubjectReview", "{review}");
    let info = &review["status"]["userInfo"];
    assert_eq!(
        info["username"], "system:serviceaccount:ns1:robot",
        "{review}"
    );
    assert_eq!(info["uid"], uid.as_str(), "{review}");
    assert_eq!(
        info["groups"],
        serde_json::json!([
            "system:serviceaccounts",
            "system:serviceaccounts:ns1",
            "system:authenticated"
        ]),
        "{review}"
    );
    // Ordinary requests work with the token too.
    let out = with_token(&admin, &token, &["get", "serviceaccounts", "-n", "ns1"]);
    assert!(out.ok && out.stdout.contains("robot"), "{}", out.stderr);

    // A made-up token and a token signed by another key.
    assert_unauthorized(&whoami(&admin, "not-a-token"), "made-up token");
    let other = rcgen::KeyPair::generate().unwrap();
    let forged = sa_token::sign(
        &other.serialize_pem(),
        &LegacyClaims::new("ns1", "robot", &uid, "robot-token-x1"),
    )
    .unwrap();
    assert_unauthorized(&whoami(&admin, &forged), "token signed by another key");

    // Deleting the Secret revokes the token (once the server's cache has seen the delete).
    admin.ok(&["delete", "secret", "robot-token-x1", "-n", "ns1"]);
    assert!(
        wait_until(Duration::from_secs(10), || !whoami(&admin, &token).ok),
        "token still accepted after its secret was deleted"
    );
    assert_unauthorized(&whoami(&admin, &token), "token of a deleted secret");
}

#[test]
fn token_of_a_recreated_service_account_is_refused() {
    let server = Server::start();
    let admin = Admin::new(&server);
    admin.ok(&["create", "namespace", "ns2"]);
    admin.ok(&["create", "serviceaccount", "bot", "-n", "ns2"]);
    let uid = admin.ok(&[
        "get",
        "sa",
        "bot",
        "-n",
        "ns2",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let key = std::fs::read_to_string(server.pki("sa.key")).unwrap();
    let token = sa_token::sign(&key, &LegacyClaims::new("ns2", "bot", &uid, "bot-token")).unwrap();
    admin.stdin(
        &["apply", "-f", "-"],
        &secret_manifest("ns2", "bot-token", "bot", &token),
    );
    assert!(whoami(&admin, &token).ok);

    // Same name, new uid: the old account's token does not carry over.
    admin.ok(&["delete", "sa", "bot", "-n", "ns2"]);
    admin.ok(&["create", "sa", "bot", "-n", "ns2"]);
    assert!(
        wait_until(Duration::from_secs(10), || !whoami(&admin, &token).ok),
        "token of the old service account still accepted"
    );
    assert_unauthorized(&whoami(&admin, &token), "token of a re-created account");
}

#[test]
fn tokens_stay_valid_across_restarts() {
    let server = Server::start();
    let admin = Admin::new(&server);
    admin.ok(&["create", "sa", "keeper", "-n", "default"]);
    let uid = admin.ok(&[
        "get",
        "sa",
        "keeper",
        "-n",
        "default",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let key = std::fs::read_to_string(server.pki("sa.key")).unwrap();
    let token = sa_token::sign(
        &key,
        &LegacyClaims::new("default", "keeper", &uid, "keeper-token"),
    )
    .unwrap();
    admin.stdin(
        &["apply", "-f", "-"],
        &secret_manifest("default", "keeper-token", "keeper", &token),
    );
    assert!(whoami(&admin, &token).ok);
    drop(admin);

    // The signing key is made once: a restart on the same data dir keeps it, so tokens
    // already handed out keep working.
    let server = Server::start_in(server.stop());
    assert_eq!(std::fs::read_to_string(server.pki("sa.key")).unwrap(), key);
    let admin = Admin::new(&server);
    let out = whoami(&admin, &token);
    assert!(out.ok, "token refused after a restart: {}", out.stderr);
}

#[test]
fn discovery_lists_selfsubjectreviews_for_every_kubectl() {
    let server = Server::start();
    for bin in keelson_testsupport::kubectl_binaries() {
        let out = kubectl(
            &bin,
            &server.kubeconfig,
            &[
                "api-resources",
                "--api-group=authentication.k8s.io",
                "-o",
                "wide",
            ],
            None,
        );
        assert!(out.ok, "{}: {}", bin.display(), out.stderr);
        assert!(
            out.stdout.contains("selfsubjectreviews")
                && out.stdout.contains("authentication.k8s.io/v1")
                && out.stdout.contains("SelfSubjectReview")
                && out.stdout.contains("create"),
            "{}: {}",
            bin.display(),
            out.stdout
        );
        // The rest of discovery is unaffected.
        let all = kubectl(&bin, &server.kubeconfig, &["api-resources"], None);
        assert!(
            all.ok && all.stdout.contains("replicationcontrollers"),
            "{}",
            all.stderr
        );
    }
}
