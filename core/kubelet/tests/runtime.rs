//! The container runtime against a real, private containerd with runc, as root: sandboxes,
//! app containers joining their namespaces, logs, limits, stopping and cleanup.
//!
//! Each test has its own containerd (killed on drop with its shims, its dirs unmounted and
//! removed) and its own log dir, so even a failing test leaves nothing behind.

use std::time::{Duration, Instant};

use containerd_client::services::v1::ListTasksRequest;
use containerd_client::services::v1::snapshots::ListSnapshotsRequest;
use keelson_api::k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
use keelson_api::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use keelson_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_kubelet::Containerd;
use keelson_kubelet::images;
use keelson_kubelet::runtime::{
    ContainerExtras, ContainerId, ContainerState, ContainerStatus, Error, Kind, Runtime, SandboxId,
};
use keelson_testsupport::{Containerd as PrivateContainerd, busybox_image};

const BUSYBOX: &str = "docker.io/library/busybox:latest";

/// A private containerd with busybox imported, a runtime on it and a log dir.
struct Fixture {
    rt: Runtime,
    cd: Containerd,
    logs: tempfile::TempDir,
    /// Taken in drop: kills containerd and its shims, whatever the test left.
    private: Option<PrivateContainerd>,
}

impl Drop for Fixture {
    /// After containerd and its shims are gone, removes the (then empty) cgroups runc made
    /// for this test's containers, which a failed test would otherwise leave.
    fn drop(&mut self) {
        let Some(private) = self.private.take() else {
            return;
        };
        private.stop_and_remove_cgroups();
    }
}

impl Fixture {
    async fn start() -> Self {
        if let Err(why) = PrivateContainerd::available() {
            panic!("runtime tests need a private containerd: {why}");
        }
        let private = PrivateContainerd::start();
        let cd = Containerd::connect(&private.socket, &private.namespace)
            .await
            .unwrap_or_else(|e| panic!("{e}\ncontainerd log:\n{}", private.log()));
        images::import(&cd, &busybox_image())
            .await
            .unwrap_or_else(|e| panic!("import busybox: {e}"));
        let logs = tempfile::tempdir().expect("log dir");
        let rt = Runtime::new(cd.clone(), logs.path())
            .await
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        Self {
            rt,
            cd,
            logs,
            private: Some(private),
        }
    }

    async fn sandbox(&self, pod: &Pod) -> SandboxId {
        self.rt
            .run_sandbox(pod)
            .await
            .unwrap_or_else(|e| panic!("run sandbox: {e}\ncontainerd log:\n{}", self.log()))
    }

    async fn run(&self, sandbox: &SandboxId, pod: &Pod, c: &Container) -> ContainerId {
        self.rt
            .start_container(sandbox, pod, c, &ContainerExtras::default())
            .await
            .unwrap_or_else(|e| panic!("start {}: {e}\ncontainerd log:\n{}", c.name, self.log()))
    }

    fn log(&self) -> String {
        let log = self.private.as_ref().map(|p| p.log()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn container_log(&self, pod: &Pod, name: &str) -> String {
        let path = self.rt.log_path(pod, name).expect("log path");
        assert!(path.starts_with(self.logs.path()), "{}", path.display());
        std::fs::read_to_string(&path).unwrap_or_default()
    }

    async fn wait_exited(&self, id: &ContainerId) -> ContainerStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self
                .rt
                .container_status(id)
                .await
                .unwrap_or_else(|e| panic!("status: {e}"));
            if status.state == ContainerState::Exited {
                return status;
            }
            assert!(Instant::now() < deadline, "{id} still {:?}", status.state);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Removes the sandbox (and its containers) and checks that containerd holds no
    /// container, task or active snapshot any more.
    async fn remove_and_check_clean(&self, sandbox: &SandboxId) {
        self.rt
            .remove_sandbox(sandbox, Duration::from_secs(2))
            .await
            .unwrap_or_else(|e| panic!("remove sandbox: {e}"));
        let left = self
            .rt
            .list_pod_containers()
            .await
            .expect("list containers");
        assert!(left.is_empty(), "containers left: {left:?}");
        let tasks = self
            .cd
            .tasks()
            .list(self.cd.request(ListTasksRequest::default(), None))
            .await
            .expect("list tasks")
            .into_inner()
            .tasks;
        assert!(tasks.is_empty(), "tasks left: {tasks:?}");
        let snapshotter = self.cd.default_snapshotter().await.expect("snapshotter");
        let mut stream = self
            .cd
            .snapshots()
            .list(self.cd.request(
                ListSnapshotsRequest {
                    snapshotter,
                    filters: vec![],
                },
                None,
            ))
            .await
            .expect("list snapshots")
            .into_inner();
        let mut active = Vec::new();
        while let Some(reply) = stream.message().await.expect("snapshot stream") {
            // 3 is Committed: the image's layers, which stay.
            active.extend(
                reply
                    .info
                    .into_iter()
                    .filter(|i| i.kind != 3)
                    .map(|i| i.name),
            );
        }
        assert!(active.is_empty(), "snapshots left: {active:?}");
    }
}

fn pod(name: &str, hostname: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!(
                "{:08x}-0000-4000-8000-000000000000",
                std::process::id()
            )),
            ..Default::default()
        },
        spec: Some(PodSpec {
            hostname: hostname.map(str::to_string),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container(name: &str, script: &str) -> Container {
    Container {
        name: name.into(),
        image: Some(BUSYBOX.into()),
        command: Some(vec!["sh".into(), "-c".into(), script.into()]),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_container_runs_and_logs_to_its_file() {
    let fx = Fixture::start().await;
    let p = pod("echo", None);
    let sandbox = fx.sandbox(&p).await;
    let c = Container {
        name: "hello".into(),
        image: Some(BUSYBOX.into()),
        command: Some(vec!["echo".into()]),
        args: Some(vec!["hello".into()]),
        ..Default::default()
    };
    let id = fx.run(&sandbox, &p, &c).await;
    let status = fx.wait_exited(&id).await;
    assert_eq!(status.exit_code, Some(0));
    let (started, finished) = (
        status.started_at.expect("started_at"),
        status.finished_at.expect("finished_at"),
    );
    assert!(started <= finished, "{started} > {finished}");
    assert_eq!(fx.container_log(&p, "hello"), "hello\n");

    let listed = fx.rt.list_pod_containers().await.expect("list");
    let kinds: Vec<(Kind, &str)> = listed
        .iter()
        .map(|c| (c.kind, c.container_name.as_str()))
        .collect();
    assert_eq!(kinds, [(Kind::Sandbox, ""), (Kind::Container, "hello")]);
    assert!(
        listed
            .iter()
            .all(|c| c.pod_name == "echo" && c.pod_namespace == "default")
    );

    // A failing command's exit code comes through too.
    fx.rt
        .stop_container(&id, Duration::from_secs(1))
        .await
        .expect("remove exited container");
    let id = fx.run(&sandbox, &p, &container("hello", "exit 3")).await;
    assert_eq!(fx.wait_exited(&id).await.exit_code, Some(3));
    fx.remove_and_check_clean(&sandbox).await;
}

#[tokio::test]
async fn containers_of_a_pod_share_network_and_hostname() {
    let fx = Fixture::start().await;
    let p = pod("web", Some("web-host"));
    let sandbox = fx.sandbox(&p).await;
    let server = fx
        .run(
            &sandbox,
            &p,
            &container(
                "server",
                "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www",
            ),
        )
        .await;
    let client = fx
        .run(
            &sandbox,
            &p,
            &container(
                "client",
                "hostname; for i in $(seq 100); do \
                 wget -q -O - http://127.0.0.1:8080/ && exit 0; sleep 0.1; done; exit 1",
            ),
        )
        .await;
    let status = fx.wait_exited(&client).await;
    let log = fx.container_log(&p, "client");
    assert_eq!(status.exit_code, Some(0), "client log:\n{log}");
    // Its own hostname, then the server's page: the server's hostname.
    assert_eq!(log, "web-host\nweb-host\n");
    let server_status = fx.rt.container_status(&server).await.expect("status");
    assert_eq!(server_status.state, ContainerState::Running);
    assert!(server_status.pid.is_some());
    fx.remove_and_check_clean(&sandbox).await;
}

#[tokio::test]
async fn a_memory_limit_reaches_the_cgroup() {
    let fx = Fixture::start().await;
    let p = pod("limited", None);
    let sandbox = fx.sandbox(&p).await;
    let mut c = container(
        "mem",
        // cgroup v2 inside, or the v1 memory hierarchy runc mounts at its usual place.
        "cat /sys/fs/cgroup/memory.max 2>/dev/null || \
         cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
    );
    c.resources = Some(ResourceRequirements {
        limits: Some(
            [
                ("memory".to_string(), Quantity("64Mi".into())),
                ("cpu".to_string(), Quantity("500m".into())),
            ]
            .into(),
        ),
        ..Default::default()
    });
    let id = fx.run(&sandbox, &p, &c).await;
    let status = fx.wait_exited(&id).await;
    let log = fx.container_log(&p, "mem");
    assert_eq!(status.exit_code, Some(0), "log:\n{log}");
    assert_eq!(log.trim(), (64u64 << 20).to_string());
    fx.remove_and_check_clean(&sandbox).await;
}

#[tokio::test]
async fn stop_kills_after_the_grace_period_and_removes() {
    let fx = Fixture::start().await;
    let p = pod("sleepy", None);
    let sandbox = fx.sandbox(&p).await;
    // PID 1 without a handler ignores SIGTERM: only SIGKILL ends it.
    let stubborn = fx
        .run(&sandbox, &p, &container("stubborn", "exec sleep 1000"))
        .await;
    // With a trap, SIGTERM is enough.
    let polite = fx
        .run(
            &sandbox,
            &p,
            &container(
                "polite",
                "trap 'exit 0' TERM; while :; do sleep 1 & wait; done",
            ),
        )
        .await;
    for id in [&stubborn, &polite] {
        let status = fx.rt.container_status(id).await.expect("status");
        assert_eq!(status.state, ContainerState::Running, "{id}");
    }

    let began = Instant::now();
    fx.rt
        .stop_container(&polite, Duration::from_secs(10))
        .await
        .expect("stop polite");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );

    let began = Instant::now();
    fx.rt
        .stop_container(&stubborn, Duration::from_secs(1))
        .await
        .expect("stop stubborn");
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "{took:?}"
    );
    for id in [&stubborn, &polite] {
        match fx.rt.container_status(id).await {
            Err(Error::NotFound { .. }) => {}
            other => panic!("{id} not removed: {other:?}"),
        }
    }
    // Stopping it again is harmless.
    fx.rt
        .stop_container(&stubborn, Duration::from_secs(1))
        .await
        .expect("stop again");
    fx.remove_and_check_clean(&sandbox).await;
}

#[tokio::test]
async fn a_missing_command_fails_clearly() {
    let fx = Fixture::start().await;
    let p = pod("broken", None);
    let sandbox = fx.sandbox(&p).await;
    let c = Container {
        name: "nope".into(),
        image: Some(BUSYBOX.into()),
        command: Some(vec!["/no/such/command".into()]),
        ..Default::default()
    };
    let began = Instant::now();
    let err = fx
        .rt
        .start_container(&sandbox, &p, &c, &ContainerExtras::default())
        .await
        .expect_err("no such command");
    assert!(began.elapsed() < Duration::from_secs(20));
    let text = err.to_string();
    assert!(
        text.contains("_nope") && text.contains("/no/such/command"),
        "{text}"
    );
    // Nothing of it is left: only the sandbox.
    let left = fx.rt.list_pod_containers().await.expect("list");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].kind, Kind::Sandbox);

    // An image that is not there names the image.
    let missing = Container {
        image: Some("example.com/not/imported:1".into()),
        ..c
    };
    let text = fx
        .rt
        .start_container(&sandbox, &p, &missing, &ContainerExtras::default())
        .await
        .expect_err("no such image")
        .to_string();
    assert!(text.contains("example.com/not/imported:1"), "{text}");
    fx.remove_and_check_clean(&sandbox).await;
}
