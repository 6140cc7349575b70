//! Real kubectl against a real `keelson apiserver`, on both store backends and with the oldest
//! and newest kubectl the machine has.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use keelson_testsupport::{
    ApiServerProc, Backend, KubectlOutput, kubectl, kubectl_binaries, repo_root, wait_until,
};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keelson"))
}

struct K<'a> {
    bin: &'a Path,
    server: &'a ApiServerProc,
}

impl K<'_> {
    fn run(&self, args: &[&str]) -> KubectlOutput {
        kubectl(self.bin, &self.server.kubeconfig, args, None)
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.ok,
            "kubectl {} ({}) failed:\nstdout: {}\nstderr: {}\nserver log:\n{}",
            args.join(" "),
            self.bin.display(),
            out.stdout,
            out.stderr,
            tail(&self.server.log())
        );
        out.stdout
    }
    fn stdin(&self, args: &[&str], input: &str) -> KubectlOutput {
        kubectl(self.bin, &self.server.kubeconfig, args, Some(input))
    }
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }
}

fn kubectl_with_env(
    bin: &Path,
    kubeconfig: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> KubectlOutput {
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    KubectlOutput {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn guestbook() -> String {
    repo_root().join("examples/guestbook").display().to_string()
}

fn guestbook_flow(backend: Backend) {
    let server = ApiServerProc::start(&bin(), backend);
    for kbin in kubectl_binaries() {
        let k = K {
            bin: &kbin,
            server: &server,
        };
        let ns = format!(
            "gb-{}",
            kbin.extension()
                .and_then(|e| e.to_str())
                .unwrap_or("x")
                .replace('.', "-")
        );
        k.ok(&["create", "namespace", &ns]);

        // apply twice: the first creates, the second finds nothing to change.
        let first = k.ok(&["apply", "-n", &ns, "-f", &guestbook()]);
        assert!(
            first.contains("replicationcontroller/frontend created"),
            "{first}"
        );
        assert!(first.contains("service/frontend created"), "{first}");
        let second = k.ok(&["apply", "-n", &ns, "-f", &guestbook()]);
        assert!(
            second.contains("replicationcontroller/frontend unchanged"),
            "{second}"
        );

        // get: table output with Kubernetes' columns.
        let rcs = k.ok(&["get", "rc", "-n", &ns]);
        assert!(rcs.contains("DESIRED") && rcs.contains("CURRENT"), "{rcs}");
        assert!(rcs.contains("redis-slave"), "{rcs}");
        let svcs = k.ok(&["get", "svc", "-n", &ns, "-o", "wide"]);
        assert!(
            svcs.contains("80:30001/TCP") || svcs.contains("30001"),
            "{svcs}"
        );
        assert!(svcs.contains("SELECTOR"), "{svcs}");

        // defaults as Kubernetes sets them.
        let rc = k.json(&["get", "rc", "frontend", "-n", &ns]);
        assert_eq!(rc["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(rc["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(
            rc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
            30
        );
        // The manifests name locally built images and say IfNotPresent, which is kept (an
        // untagged image without a policy would default to Always).
        assert_eq!(
            rc["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(rc["metadata"]["generation"], 1);
        let svc = k.json(&["get", "svc", "frontend", "-n", &ns]);
        assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30001);
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(svc["spec"]["sessionAffinity"], "None");
        let ip = svc["spec"]["clusterIP"].as_str().unwrap();
        assert!(ip.starts_with("10.0.0."), "{ip}");

        // describe, label, annotate, scale, patch.
        let d = k.ok(&["describe", "rc", "frontend", "-n", &ns]);
        assert!(d.contains("frontend") && d.contains("Replicas"), "{d}");
        k.ok(&["label", "rc", "frontend", "-n", &ns, "tier=web"]);
        k.ok(&["annotate", "rc", "frontend", "-n", &ns, "note=hello"]);
        let rc = k.json(&["get", "rc", "frontend", "-n", &ns]);
        assert_eq!(rc["metadata"]["labels"]["tier"], "web");
        assert_eq!(rc["metadata"]["annotations"]["note"], "hello");
        k.ok(&["scale", "rc", "frontend", "-n", &ns, "--replicas=5"]);
        let rc = k.json(&["get", "rc", "frontend", "-n", &ns]);
        assert_eq!(rc["spec"]["replicas"], 5);
        assert_eq!(rc["metadata"]["generation"], 2);
        let sel = k.ok(&["get", "rc", "-n", &ns, "-l", "tier=web", "-o", "name"]);
        assert_eq!(sel.trim(), "replicationcontroller/frontend");
        // an edit-style strategic merge patch changing one container's image.
        k.ok(&[
            "patch", "rc", "frontend", "-n", &ns, "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"frontend","image":"kubeguide/guestbook-php-frontend:v2"}]}}}}"#,
        ]);
        let rc = k.json(&["get", "rc", "frontend", "-n", &ns]);
        let c = &rc["spec"]["template"]["spec"]["containers"];
        assert_eq!(c.as_array().unwrap().len(), 1);
        assert_eq!(c[0]["image"], "kubeguide/guestbook-php-frontend:v2");
        assert_eq!(
            c[0]["ports"][0]["containerPort"], 80,
            "the patch must merge, not replace"
        );
        // `kubectl edit` with an editor that changes the replica count.
        let edited = kubectl_with_env(
            &kbin,
            &server.kubeconfig,
            &["edit", "rc", "redis-slave", "-n", &ns],
            &[("KUBE_EDITOR", "sed -i -e s/replicas:\\ 2/replicas:\\ 3/")],
        );
        assert!(edited.ok, "{edited:?}");
        let rc = k.json(&["get", "rc", "redis-slave", "-n", &ns]);
        assert_eq!(rc["spec"]["replicas"], 3);
        // label removal and overwrite rules.
        let again = k.run(&["label", "rc", "frontend", "-n", &ns, "tier=db"]);
        assert!(!again.ok, "relabel without --overwrite must fail");
        k.ok(&["label", "rc", "frontend", "-n", &ns, "tier-"]);

        // delete.
        k.ok(&["delete", "-n", &ns, "-f", &guestbook()]);
        let left = k.ok(&["get", "rc,svc", "-n", &ns, "-o", "name"]);
        assert!(left.trim().is_empty(), "{left}");

        // namespace deletion leaves it Terminating for the namespace controller.
        k.ok(&["delete", "namespace", &ns, "--wait=false"]);
        let nsj = k.json(&["get", "namespace", &ns]);
        assert_eq!(nsj["status"]["phase"], "Terminating");
        let denied = k.run(&["create", "configmap", "x", "-n", &ns]);
        assert!(
            !denied.ok && denied.stderr.contains("being terminated"),
            "{denied:?}"
        );
    }
}

#[test]
fn guestbook_with_kubectl_on_sqlite() {
    guestbook_flow(Backend::Sqlite);
}

#[test]
fn guestbook_with_kubectl_on_etcd() {
    guestbook_flow(Backend::Etcd);
}

#[test]
fn errors_are_kubernetes_statuses() {
    let server = ApiServerProc::start(&bin(), Backend::Sqlite);
    for kbin in kubectl_binaries() {
        let k = K {
            bin: &kbin,
            server: &server,
        };
        let out = k.run(&["get", "pod", "nope"]);
        assert!(!out.ok);
        assert!(
            out.stderr.contains("pods \"nope\" not found"),
            "{}",
            out.stderr
        );

        let out = k.run(&["get", "frobnicators"]);
        assert!(!out.ok);
        assert!(
            out.stderr
                .contains("doesn't have a resource type \"frobnicators\""),
            "{}",
            out.stderr
        );

        // unknown fields are refused by server-side strict validation.
        let bad =
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: strict\ndata:\n  a: b\nbogus: 1\n";
        let out = k.stdin(&["create", "-f", "-"], bad);
        assert!(!out.ok, "{out:?}");
        assert!(
            out.stderr.contains("unknown field \"bogus\""),
            "{}",
            out.stderr
        );

        // invalid objects get 422 naming the field.
        let bad = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: Bad_Name\nspec:\n  containers:\n  - name: c\n";
        let out = k.stdin(&["create", "-f", "-"], bad);
        assert!(!out.ok);
        assert!(out.stderr.contains("is invalid"), "{}", out.stderr);
        assert!(out.stderr.contains("metadata.name"), "{}", out.stderr);

        // malformed YAML never reaches the server as an object.
        let out = k.stdin(&["create", "-f", "-"], "apiVersion: v1\nkind: [\n");
        assert!(!out.ok);
    }
}

#[test]
fn requests_with_unknown_credentials_are_unauthorized() {
    let server = ApiServerProc::start(&bin(), Backend::Sqlite);
    let kbin = &kubectl_binaries()[0];
    let anon = server.data_dir.path().join("anon.yaml");
    std::fs::write(
        &anon,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user: {{token: not-a-known-token}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
            server.url
        ),
    )
    .unwrap();
    let out = kubectl(kbin, &anon, &["get", "pods"], None);
    assert!(!out.ok);
    // kubectl's wording for a 401 Status.
    assert!(
        out.stderr.contains("You must be logged in to the server"),
        "{}",
        out.stderr
    );
    let out = kubectl(kbin, &anon, &["get", "--raw", "/healthz"], None);
    assert!(out.ok, "{out:?}");
    assert_eq!(out.stdout.trim(), "ok");
    let out = kubectl(kbin, &anon, &["get", "--raw", "/version"], None);
    assert!(out.ok && out.stdout.contains("gitVersion"), "{out:?}");
}

#[test]
fn get_watch_and_explain_on_sqlite() {
    get_watch_and_explain(Backend::Sqlite);
}

#[test]
fn get_watch_and_explain_on_etcd() {
    get_watch_and_explain(Backend::Etcd);
}

fn get_watch_and_explain(backend: Backend) {
    let server = ApiServerProc::start(&bin(), backend);
    for kbin in kubectl_binaries() {
        let k = K {
            bin: &kbin,
            server: &server,
        };
        let explain = k.ok(&["explain", "pod.spec.containers"]);
        assert!(
            explain.contains("FIELDS") || explain.contains("FIELD"),
            "{explain}"
        );
        assert!(explain.contains("image"), "{explain}");

        // `kubectl get pods -w` prints the existing pod, then later changes.
        let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: watched\nspec:\n  containers:\n  - name: c\n    image: busybox\n";
        let _ = k.run(&["delete", "pod", "watched", "--grace-period=0"]);
        k.stdin(&["create", "-f", "-"], pod);
        let mut child = std::process::Command::new(&kbin)
            .args(["--kubeconfig"])
            .arg(&server.kubeconfig)
            .args(["get", "pods", "-w", "--request-timeout=0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push(l);
            }
        });
        assert!(wait_until(Duration::from_secs(10), || lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("watched"))));
        k.ok(&["label", "pod", "watched", "seen=yes"]);
        k.ok(&["delete", "pod", "watched"]);
        let got = wait_until(Duration::from_secs(10), || {
            lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains("watched"))
                .count()
                >= 3
        });
        let _ = child.kill();
        let _ = child.wait();
        assert!(got, "watch output: {:?}", lines.lock().unwrap());
        let header = lines.lock().unwrap()[0].clone();
        assert!(
            header.contains("NAME") && header.contains("STATUS"),
            "{header}"
        );
    }
}

#[test]
fn tls_names_and_extra_kubeconfig() {
    let dir = tempfile_dir();
    let extra = dir.join("extra").join("admin.yaml");
    let extra_s = extra.display().to_string();
    let server = ApiServerProc::start_with(
        &bin(),
        Backend::Sqlite,
        &[
            "--tls-san",
            "api.keelson.test",
            "--write-kubeconfig",
            &extra_s,
        ],
    );
    let kbin = &kubectl_binaries()[0];
    assert!(extra.exists(), "--write-kubeconfig was not written");
    let out = kubectl(kbin, &extra, &["get", "ns", "default", "-o", "name"], None);
    assert!(out.ok, "{out:?}");
    // The serving certificate carries the extra name: verification against it succeeds...
    let out = kubectl(
        kbin,
        &server.kubeconfig,
        &[
            "--tls-server-name",
            "api.keelson.test",
            "get",
            "ns",
            "-o",
            "name",
        ],
        None,
    );
    assert!(out.ok, "{out:?}");
    // ...and against a name it does not carry, fails.
    let out = kubectl(
        kbin,
        &server.kubeconfig,
        &["--tls-server-name", "other.keelson.test", "get", "ns"],
        None,
    );
    assert!(!out.ok && out.stderr.contains("certificate"), "{out:?}");
    // The same PKI is reused on restart: the old kubeconfig keeps working.
    let mut server = server;
    server.restart();
    let out = kubectl(kbin, &extra, &["get", "ns", "default", "-o", "name"], None);
    assert!(out.ok, "{out:?}");
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("keelson-kc-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
