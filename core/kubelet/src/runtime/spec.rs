//! OCI runtime specs for pod sandboxes and app containers, built as JSON for runc.
//!
//! The defaults (mounts, masked paths, capabilities, device rules) follow containerd's own
//! `oci.WithDefaultSpec`, so a container here sees what `ctr run` would give it.

use keelson_api::k8s_openapi::api::core::v1::{Container, Pod};
use keelson_api::object::quantity::parse_quantity;
use serde_json::{Value, json};

use super::image::ImageConfig;

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const CPU_PERIOD: u64 = 100_000;
/// Smallest CFS quota the kernel takes (1ms).
const MIN_CPU_QUOTA: i64 = 1_000;

/// The capabilities a container gets unless its security context changes them (containerd's
/// and Docker's default set).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability, for privileged containers.
const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The sandbox's command: bring up loopback in its new network namespace, mark itself ready
/// (a file on its own /dev/shm, seen from the host through /proc/<pid>/root), then idle until
/// SIGTERM. PID 1 ignores signals it has no handler for, hence the trap.
pub const SANDBOX_READY_FILE: &str = "dev/shm/.keelson-sandbox-ready";
pub fn sandbox_command() -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "ip link set lo up || exit 1; : > /{SANDBOX_READY_FILE}; \
             trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done"
        ),
    ]
}

/// A namespace of a container: a new one, or joined by path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub kind: &'static str,
    pub path: Option<String>,
}

/// A host path bind-mounted into a container (`rbind`, read-only when asked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    pub source: std::path::PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// What the kubelet resolved for a container beyond its spec: the volumes and files mounted
/// into it and its environment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerExtras {
    pub mounts: Vec<BindMount>,
    /// The container's variables, resolved (`valueFrom`, `envFrom`, service variables,
    /// `$(VAR)` expansion) and in order; `None` takes the literal `env[].value`s of the
    /// container, refusing `valueFrom`.
    pub env: Option<Vec<(String, String)>>,
}

/// Everything the spec is built from, once Kubernetes' rules have been applied.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecInput {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub hostname: Option<String>,
    pub namespaces: Vec<Namespace>,
    pub capabilities: Vec<String>,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    pub no_new_privileges: bool,
    pub memory_limit: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cgroups_path: String,
    pub mounts: Vec<BindMount>,
}

/// The spec of a pod's sandbox: new namespaces of every kind, the pod's hostname.
pub fn sandbox_input(hostname: &str, image: &ImageConfig, cgroups_path: String) -> SpecInput {
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
    caps.push("CAP_NET_ADMIN".into());
    SpecInput {
        args: sandbox_command(),
        env: with_default_path(image.env.clone()),
        cwd: "/".into(),
        uid: 0,
        gid: 0,
        hostname: Some(hostname.to_string()),
        namespaces: ["pid", "ipc", "uts", "mount", "network"]
            .into_iter()
            .map(|kind| Namespace { kind, path: None })
            .collect(),
        capabilities: caps,
        privileged: false,
        readonly_rootfs: false,
        no_new_privileges: true,
        memory_limit: None,
        cpu_quota: None,
        cpu_shares: Some(2),
        cgroups_path,
        mounts: Vec::new(),
    }
}

/// The spec of an app container joining the sandbox whose init is `sandbox_pid`.
pub fn container_input(
    pod: &Pod,
    container: &Container,
    image: &ImageConfig,
    sandbox_pid: u32,
    cgroups_path: String,
    extras: &ContainerExtras,
) -> Result<SpecInput, String> {
    let args = command_line(container, image)?;
    let env = merge_env(&image.env, container, extras.env.as_deref())?;
    let cwd = container
        .working_dir
        .clone()
        .filter(|d| !d.is_empty())
        .or_else(|| Some(image.working_dir.clone()).filter(|d| !d.is_empty()))
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(format!("workingDir {cwd:?} is not an absolute path"));
    }
    let sc = container.security_context.clone().unwrap_or_default();
    let pod_sc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let (image_uid, image_gid) = parse_image_user(&image.user)?;
    let uid = sc
        .run_as_user
        .or(pod_sc.run_as_user)
        .map(id_u32)
        .transpose()?;
    let gid = sc
        .run_as_group
        .or(pod_sc.run_as_group)
        .map(id_u32)
        .transpose()?;
    let privileged = sc.privileged.unwrap_or(false);
    let capabilities = if privileged {
        ALL_CAPS.iter().map(|c| c.to_string()).collect()
    } else {
        let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
        if let Some(c) = &sc.capabilities {
            for add in c.add.iter().flatten() {
                if add.eq_ignore_ascii_case("ALL") {
                    caps = ALL_CAPS.iter().map(|c| c.to_string()).collect();
                } else {
                    let cap = cap_name(add);
                    if !caps.contains(&cap) {
                        caps.push(cap);
                    }
                }
            }
            for drop in c.drop.iter().flatten() {
                if drop.eq_ignore_ascii_case("ALL") {
                    caps.clear();
                } else {
                    let cap = cap_name(drop);
                    caps.retain(|c| *c != cap);
                }
            }
        }
        caps
    };
    let limits = container.resources.as_ref().and_then(|r| r.limits.as_ref());
    let requests = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref());
    let quantity = |map: Option<&std::collections::BTreeMap<String, _>>, key: &str| {
        map.and_then(|m| m.get(key))
            .map(
                |q: &keelson_api::k8s_openapi::apimachinery::pkg::api::resource::Quantity| {
                    parse_quantity(&q.0).map_err(|e| format!("resources {key} {:?}: {e}", q.0))
                },
            )
            .transpose()
    };
    let memory_limit = quantity(limits, "memory")?
        .map(|millis| i64::try_from(millis / 1000).map_err(|_| "memory limit too large"))
        .transpose()?;
    let cpu_limit = quantity(limits, "cpu")?;
    // As the kubelet does: CPU requests default to the limit when only a limit is given.
    let cpu_request = quantity(requests, "cpu")?.or(cpu_limit);
    let cpu_quota = cpu_limit.map(|millicores| {
        let quota = millicores.saturating_mul(i128::from(CPU_PERIOD)) / 1000;
        i64::try_from(quota).unwrap_or(i64::MAX).max(MIN_CPU_QUOTA)
    });
    let cpu_shares = Some(
        cpu_request
            .map(|m| u64::try_from(m.saturating_mul(1024) / 1000).unwrap_or(u64::MAX))
            .unwrap_or(2)
            .max(2),
    );
    let ns_path = |kind: &str| Some(format!("/proc/{sandbox_pid}/ns/{kind}"));
    Ok(SpecInput {
        args,
        env,
        cwd,
        uid: uid.or(image_uid).unwrap_or(0),
        gid: gid.or(image_gid).unwrap_or(0),
        hostname: None,
        namespaces: vec![
            Namespace {
                kind: "pid",
                path: None,
            },
            Namespace {
                kind: "mount",
                path: None,
            },
            Namespace {
                kind: "ipc",
                path: ns_path("ipc"),
            },
            Namespace {
                kind: "uts",
                path: ns_path("uts"),
            },
            Namespace {
                kind: "network",
                path: ns_path("net"),
            },
        ],
        capabilities,
        privileged,
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        no_new_privileges: !privileged && sc.allow_privilege_escalation == Some(false),
        memory_limit,
        cpu_quota,
        cpu_shares,
        cgroups_path,
        mounts: extras.mounts.clone(),
    })
}

/// Kubernetes' rule: `command` replaces the image's Entrypoint and drops its Cmd; `args`
/// replaces the Cmd.
pub fn command_line(container: &Container, image: &ImageConfig) -> Result<Vec<String>, String> {
    let entrypoint = container
        .command
        .clone()
        .unwrap_or_else(|| image.entrypoint.clone());
    let args = match (&container.command, &container.args) {
        (_, Some(args)) => args.clone(),
        (Some(_), None) => Vec::new(),
        (None, None) => image.cmd.clone(),
    };
    let line: Vec<String> = entrypoint.into_iter().chain(args).collect();
    if line.is_empty() {
        return Err("no command: neither the container nor its image gives one".into());
    }
    Ok(line)
}

/// The image's environment with the container's variables over it (`resolved`, or the
/// literal values of its `env`).
fn merge_env(
    image_env: &[String],
    container: &Container,
    resolved: Option<&[(String, String)]>,
) -> Result<Vec<String>, String> {
    let mut env: Vec<(String, String)> = image_env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect();
    let literal = |var: &keelson_api::k8s_openapi::api::core::v1::EnvVar| {
        if var.value_from.is_some() {
            return Err(format!(
                "env {}: valueFrom needs the kubelet to resolve it",
                var.name
            ));
        }
        Ok((var.name.clone(), var.value.clone().unwrap_or_default()))
    };
    let vars: Vec<(String, String)> = match resolved {
        Some(vars) => vars.to_vec(),
        None => container
            .env
            .iter()
            .flatten()
            .map(literal)
            .collect::<Result<_, _>>()?,
    };
    for (name, value) in vars {
        match env.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => env.push((name, value)),
        }
    }
    let env = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    Ok(with_default_path(env))
}

fn with_default_path(mut env: Vec<String>) -> Vec<String> {
    if !env.iter().any(|kv| kv.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.into());
    }
    env
}

fn cap_name(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

fn id_u32(id: i64) -> Result<u32, String> {
    u32::try_from(id).map_err(|_| format!("user or group id {id} is out of range"))
}

/// The image's `User` when numeric (`uid` or `uid:gid`); names need the image's
/// /etc/passwd, which is not read yet.
fn parse_image_user(user: &str) -> Result<(Option<u32>, Option<u32>), String> {
    if user.is_empty() {
        return Ok((None, None));
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let num = |s: &str| {
        s.parse::<u32>().map_err(|_| {
            format!("image user {user:?} is not numeric (user names are not supported yet)")
        })
    };
    Ok((Some(num(u)?), g.map(num).transpose()?))
}

/// The OCI runtime spec (JSON) for runc.
pub fn build(input: &SpecInput) -> Value {
    let caps = &input.capabilities;
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", if input.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    // Parents before children, as containerd orders them; the defaults stay first.
    let mut binds = input.mounts.clone();
    binds.sort_by_key(|m| std::path::Path::new(&m.destination).components().count());
    let defaults = mounts.len();
    for m in &binds {
        let mode = if m.read_only { "ro" } else { "rw" };
        mounts.push(json!({"destination": m.destination, "type": "bind",
                           "source": m.source, "options": ["rbind", "rprivate", mode]}));
    }
    if input.privileged {
        // Writable cgroupfs for privileged containers, as Kubernetes gives them.
        if let Some(m) = mounts.get_mut(defaults - 1) {
            m["options"] = json!(["nosuid", "noexec", "nodev", "relatime", "rw"]);
        }
    }
    let mut resources = json!({
        "devices": [{"allow": input.privileged, "access": "rwm"}],
    });
    if let Some(limit) = input.memory_limit {
        resources["memory"] = json!({"limit": limit});
    }
    let mut cpu = serde_json::Map::new();
    if let Some(quota) = input.cpu_quota {
        cpu.insert("quota".into(), json!(quota));
        cpu.insert("period".into(), json!(CPU_PERIOD));
    }
    if let Some(shares) = input.cpu_shares {
        cpu.insert("shares".into(), json!(shares));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    let namespaces: Vec<Value> = input
        .namespaces
        .iter()
        .map(|ns| match &ns.path {
            Some(path) => json!({"type": ns.kind, "path": path}),
            None => json!({"type": ns.kind}),
        })
        .collect();
    let mut linux = json!({
        "resources": resources,
        "cgroupsPath": input.cgroups_path,
        "namespaces": namespaces,
    });
    if !input.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": input.uid, "gid": input.gid},
            "args": input.args,
            "env": input.env,
            "cwd": input.cwd,
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
            },
            "noNewPrivileges": input.no_new_privileges,
        },
        "root": {"path": "rootfs", "readonly": input.readonly_rootfs},
        "mounts": mounts,
        "linux": linux,
    });
    if let Some(hostname) = &input.hostname {
        spec["hostname"] = json!(hostname);
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_api::k8s_openapi::api::core::v1::{
        Capabilities, EnvVar, ResourceRequirements, SecurityContext,
    };
    use keelson_api::k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["default".into()],
            env: vec!["PATH=/bin".into(), "A=image".into()],
            working_dir: "/work".into(),
            user: String::new(),
            chain_id: "sha256:x".into(),
        }
    }

    fn container() -> Container {
        Container {
            name: "app".into(),
            ..Default::default()
        }
    }

    #[test]
    fn command_follows_kubernetes_rules() {
        let img = image();
        let mut c = container();
        assert_eq!(
            command_line(&c, &img),
            Ok(vec!["/entry".into(), "default".into()])
        );
        c.args = Some(vec!["x".into()]);
        assert_eq!(
            command_line(&c, &img),
            Ok(vec!["/entry".into(), "x".into()])
        );
        c.command = Some(vec!["/cmd".into()]);
        assert_eq!(command_line(&c, &img), Ok(vec!["/cmd".into(), "x".into()]));
        c.args = None;
        assert_eq!(command_line(&c, &img), Ok(vec!["/cmd".into()]));
        let empty = ImageConfig::default();
        assert!(command_line(&container(), &empty).is_err());
    }

    #[test]
    fn env_resources_and_security() {
        let mut c = container();
        c.env = Some(vec![
            EnvVar {
                name: "A".into(),
                value: Some("pod".into()),
                ..Default::default()
            },
            EnvVar {
                name: "B".into(),
                value: Some("b".into()),
                ..Default::default()
            },
        ]);
        c.resources = Some(ResourceRequirements {
            limits: Some(
                [
                    ("cpu".to_string(), Quantity("250m".into())),
                    ("memory".to_string(), Quantity("64Mi".into())),
                ]
                .into(),
            ),
            ..Default::default()
        });
        c.security_context = Some(SecurityContext {
            run_as_user: Some(1000),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into()]),
                drop: Some(vec!["chown".into()]),
            }),
            ..Default::default()
        });
        let input = container_input(
            &Pod::default(),
            &c,
            &image(),
            42,
            "/k/x".into(),
            &ContainerExtras::default(),
        )
        .expect("valid container");
        assert_eq!(input.env, ["PATH=/bin", "A=pod", "B=b"]);
        assert_eq!(input.cwd, "/work");
        assert_eq!((input.uid, input.gid), (1000, 0));
        assert_eq!(input.memory_limit, Some(64 << 20));
        assert_eq!(input.cpu_quota, Some(25_000));
        assert_eq!(input.cpu_shares, Some(256));
        assert!(input.readonly_rootfs);
        assert!(input.capabilities.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!input.capabilities.contains(&"CAP_CHOWN".to_string()));
        let spec = build(&input);
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(spec["linux"]["namespaces"][4]["path"], "/proc/42/ns/net");
        assert_eq!(spec["root"]["readonly"], true);
        assert!(spec.get("hostname").is_none());
    }

    #[test]
    fn resolved_env_and_bind_mounts() {
        let mut c = container();
        c.env = Some(vec![EnvVar {
            name: "IGNORED".into(),
            value: Some("literal".into()),
            ..Default::default()
        }]);
        let extras = ContainerExtras {
            mounts: vec![
                BindMount {
                    source: "/k/pods/u/volumes/kubernetes.io~secret/s".into(),
                    destination: "/etc/secret/nested".into(),
                    read_only: true,
                },
                BindMount {
                    source: "/k/pods/u/etc-hosts".into(),
                    destination: "/etc/hosts".into(),
                    read_only: false,
                },
            ],
            env: Some(vec![
                ("A".into(), "resolved".into()),
                ("C".into(), "c".into()),
            ]),
        };
        let input = container_input(&Pod::default(), &c, &image(), 7, String::new(), &extras)
            .expect("valid container");
        assert_eq!(input.env, ["PATH=/bin", "A=resolved", "C=c"]);
        let spec = build(&input);
        let mounts = spec["mounts"].as_array().expect("mounts");
        let binds: Vec<&Value> = mounts.iter().filter(|m| m["type"] == "bind").collect();
        // Shallower destinations first, after the defaults.
        assert_eq!(binds[0]["destination"], "/etc/hosts");
        assert_eq!(binds[0]["options"], json!(["rbind", "rprivate", "rw"]));
        assert_eq!(binds[1]["destination"], "/etc/secret/nested");
        assert_eq!(binds[1]["options"], json!(["rbind", "rprivate", "ro"]));
        assert_eq!(mounts[0]["destination"], "/proc");

        // Without the kubelet's resolution, valueFrom cannot be honoured.
        c.env = Some(vec![EnvVar {
            name: "X".into(),
            value_from: Some(Default::default()),
            ..Default::default()
        }]);
        let plain = ContainerExtras::default();
        assert!(container_input(&Pod::default(), &c, &image(), 7, String::new(), &plain).is_err());
    }

    #[test]
    fn privileged_gets_every_capability() {
        let mut c = container();
        c.security_context = Some(SecurityContext {
            privileged: Some(true),
            ..Default::default()
        });
        let input = container_input(
            &Pod::default(),
            &c,
            &image(),
            1,
            String::new(),
            &ContainerExtras::default(),
        )
        .expect("valid container");
        assert_eq!(input.capabilities.len(), ALL_CAPS.len());
        let spec = build(&input);
        assert!(spec["linux"].get("maskedPaths").is_none());
        assert_eq!(spec["linux"]["resources"]["devices"][0]["allow"], true);
    }

    #[test]
    fn bad_input_is_refused() {
        let mut c = container();
        c.resources = Some(ResourceRequirements {
            limits: Some([("memory".to_string(), Quantity("lots".into()))].into()),
            ..Default::default()
        });
        let err = container_input(
            &Pod::default(),
            &c,
            &image(),
            1,
            String::new(),
            &ContainerExtras::default(),
        )
        .expect_err("bad quantity");
        assert!(err.contains("memory"), "{err}");
        let img = ImageConfig {
            user: "nobody".into(),
            ..image()
        };
        assert!(
            container_input(
                &Pod::default(),
                &container(),
                &img,
                1,
                String::new(),
                &ContainerExtras::default(),
            )
            .is_err()
        );
    }
}
