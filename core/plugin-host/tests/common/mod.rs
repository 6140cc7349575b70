//! What the plugin-host tests share: guests built by the harness (once per guest and format
//! per test process), fixtures, and fakes of the embedder's services.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use keelson_plugin_host::*;

/// How a guest is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Build {
    /// `cargo build --release --target wasm32-wasip2` into `target/wasm-guests`.
    Wasm,
    /// `cargo build --release` into `target/native-guests`.
    Native,
}

pub const BOTH: [Build; 2] = [Build::Wasm, Build::Native];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The built-in plugins whose `component/` crate builds them as guests: guest name, crate
/// folder, library name.
const BUILTIN_COMPONENTS: &[(&str, &str, &str)] = &[(
    "network-bridge",
    "plugins/network-bridge/component",
    "keelson_network_bridge_component",
)];

/// The crate of guest `name` and its library's name: a built-in plugin's component, an
/// example plugin, or a test guest of this crate.
fn guest_dir(name: &str) -> (PathBuf, String) {
    if let Some((_, dir, lib)) = BUILTIN_COMPONENTS.iter().find(|(n, _, _)| *n == name) {
        return (workspace_root().join(dir), lib.to_string());
    }
    let lib = name.replace('-', "_");
    let example = workspace_root().join("examples/plugins").join(name);
    if example.is_dir() {
        return (example, lib);
    }
    let guest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/guests")
        .join(name);
    (guest, lib)
}

/// Builds guest `name` (once per test process) and returns the built file.
pub fn guest(name: &str, build: Build) -> PathBuf {
    type Built = HashMap<(String, Build), Result<PathBuf, String>>;
    static BUILT: Mutex<Option<Built>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let r = built
        .get_or_insert_with(HashMap::new)
        .entry((name.to_string(), build))
        .or_insert_with(|| build_guest(name, build))
        .clone();
    match r {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

fn build_guest(name: &str, build: Build) -> Result<PathBuf, String> {
    let root = workspace_root();
    let (dir, crate_name) = guest_dir(name);
    let manifest = dir.join("Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--release", "--manifest-path"])
        .arg(&manifest)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    let (target_dir, file) = match build {
        Build::Wasm => {
            let dir = root.join("target/wasm-guests");
            cmd.args(["--target", "wasm32-wasip2"]);
            let file = dir.join(format!("wasm32-wasip2/release/{crate_name}.wasm"));
            (dir, file)
        }
        Build::Native => {
            let dir = root.join("target/native-guests");
            let file = dir.join(format!(
                "release/{}{crate_name}{}",
                std::env::consts::DLL_PREFIX,
                std::env::consts::DLL_SUFFIX
            ));
            (dir, file)
        }
    };
    let out = cmd
        .arg("--target-dir")
        .arg(&target_dir)
        .output()
        .map_err(|e| format!("could not run {cargo}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if build == Build::Wasm && stderr.contains("wasm32-wasip2") {
            "\nhint: run `rustup target add wasm32-wasip2` (scripts/setup.sh installs it)"
        } else {
            ""
        };
        return Err(format!(
            "building guest {name} ({build:?}) failed:\n{stderr}{hint}"
        ));
    }
    Ok(file)
}

pub fn host() -> PluginHost {
    PluginHost::new(HostConfig::default()).expect("host starts")
}

pub fn spec(name: &str, guest_name: &str, build: Build) -> PluginSpec {
    PluginSpec::new(name, guest(guest_name, build))
}

// ---- scheduler fixtures ----

pub const GI: u64 = 1 << 30;

pub use keelson_plugin_host::records::resources;
use keelson_plugin_host::records::{blank_node, blank_pod};

pub fn node(name: &str, requested_cpu: u64, requested_memory: u64, pod_count: u32) -> NodeInfo {
    NodeInfo {
        labels: vec![],
        allocatable: resources(4000, 8 * GI),
        requested: resources(requested_cpu, requested_memory),
        non_zero_requested: resources(requested_cpu, requested_memory),
        pod_count,
        ..blank_node(name)
    }
}

pub fn pod(cpu: u64, memory: u64) -> PodInfo {
    PodInfo {
        uid: "uid-1".into(),
        requests: resources(cpu, memory),
        non_zero_requests: resources(cpu, memory),
        ..blank_pod("default", "web-0")
    }
}

// ---- admission fixtures ----

pub fn core_resource(resource: &str) -> GroupVersionResource {
    GroupVersionResource {
        group: String::new(),
        version: "v1".into(),
        resource: resource.into(),
    }
}

/// A create request for a pod in `namespace` whose object is `object` (JSON).
pub fn create_pod(uid: &str, namespace: &str, object: &str) -> AdmissionRequest {
    AdmissionRequest {
        uid: uid.into(),
        kind: GroupVersionKind {
            group: String::new(),
            version: "v1".into(),
            kind: "Pod".into(),
        },
        resource: core_resource("pods"),
        sub_resource: None,
        namespace: Some(namespace.into()),
        name: Some("web".into()),
        operation: Operation::Create,
        user_info: UserInfo {
            username: "alice".into(),
            uid: String::new(),
            groups: vec!["system:authenticated".into()],
            extra: vec![],
        },
        object: Some(object.into()),
        old_object: None,
        dry_run: false,
        options: None,
    }
}

/// A [`ClusterLookup`] over a fixed set of objects, recording every lookup.
#[derive(Default)]
pub struct FakeCluster {
    /// `(resource, namespace, name, json)`.
    pub objects: Vec<(GroupVersionResource, Option<String>, String, String)>,
    /// When set, every lookup fails with this error.
    pub fail: Option<LookupError>,
    pub lookups: Mutex<Vec<String>>,
}

impl ClusterLookup for FakeCluster {
    fn get_object(
        &self,
        resource: &GroupVersionResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<String>, LookupError> {
        self.lookups
            .lock()
            .expect("lock")
            .push(format!("get {}/{namespace:?}/{name}", resource.resource));
        if let Some(e) = &self.fail {
            return Err(e.clone());
        }
        Ok(self
            .objects
            .iter()
            .find(|(r, ns, n, _)| r == resource && ns.as_deref() == namespace && n == name)
            .map(|(_, _, _, json)| json.clone()))
    }

    fn list_objects(
        &self,
        resource: &GroupVersionResource,
        namespace: Option<&str>,
        _selector: &LabelSelector,
    ) -> Result<Vec<String>, LookupError> {
        self.lookups
            .lock()
            .expect("lock")
            .push(format!("list {}/{namespace:?}", resource.resource));
        if let Some(e) = &self.fail {
            return Err(e.clone());
        }
        Ok(self
            .objects
            .iter()
            .filter(|(r, ns, _, _)| {
                r == resource && (namespace.is_none() || ns.as_deref() == namespace)
            })
            .map(|(_, _, _, json)| json.clone())
            .collect())
    }
}

// ---- network fixtures ----

pub fn ipv4(a: u8, b: u8, c: u8, d: u8) -> IpAddress {
    IpAddress::Ipv4((a, b, c, d))
}

pub fn network_node(name: &str, is_local: bool, cidr: Option<(u8, u8, u8)>) -> NodeNetworkInfo {
    NodeNetworkInfo {
        name: name.into(),
        is_local,
        pod_cidrs: cidr
            .map(|(a, b, c)| IpPrefix {
                address: ipv4(a, b, c, 0),
                prefix_length: 24,
            })
            .into_iter()
            .collect(),
        addresses: vec![NodeAddress {
            kind: NodeAddressKind::InternalIp,
            address: ipv4(192, 168, 0, 10),
        }],
        labels: vec![],
        annotations: vec![],
    }
}

pub fn attach_request(pod_name: &str, uid: &str) -> AttachRequest {
    AttachRequest {
        pod_namespace: "default".into(),
        pod_name: pod_name.into(),
        pod_uid: uid.into(),
        sandbox_id: format!("sandbox-{uid}"),
        netns_path: format!("/var/run/netns/{uid}"),
        interface_name: "eth0".into(),
        labels: vec![],
        annotations: vec![],
    }
}

pub fn detach_request(pod_name: &str, uid: &str) -> DetachRequest {
    DetachRequest {
        pod_namespace: "default".into(),
        pod_name: pod_name.into(),
        pod_uid: uid.into(),
        sandbox_id: format!("sandbox-{uid}"),
        netns_path: Some(format!("/var/run/netns/{uid}")),
        interface_name: "eth0".into(),
    }
}

/// A [`HostNet`] that performs nothing and records every call with its arguments: lookups of
/// one link fail with `not-found`, lists are empty, everything else succeeds.
#[derive(Default)]
pub struct RecordingNet {
    pub calls: Mutex<Vec<(&'static str, String)>>,
}

impl RecordingNet {
    pub fn new() -> Arc<Self> {
        Arc::new(RecordingNet::default())
    }

    pub fn calls(&self) -> Vec<(&'static str, String)> {
        self.calls.lock().expect("lock").clone()
    }

    fn record(&self, name: &'static str, args: String) {
        self.calls.lock().expect("lock").push((name, args));
    }
}

macro_rules! recording {
    ($($method:ident $wit:literal ($($arg:ident: $ty:ty),*) -> $ret:ty = $answer:expr;)*) => {
        impl HostNet for RecordingNet {
            $(
                fn $method(&self, $($arg: $ty),*) -> Result<$ret, NetError> {
                    self.record($wit, format!("{:?}", ($(&$arg,)*)));
                    $answer
                }
            )*
        }
    };
}

recording! {
    create_link "create-link" (spec: LinkSpec) -> () = Ok(());
    delete_link "delete-link" (netns: Netns, name: String) -> () = Ok(());
    get_link "get-link" (netns: Netns, name: String) -> LinkInfo = Err(NetError::NotFound);
    list_links "list-links" (netns: Netns) -> Vec<LinkInfo> = Ok(vec![]);
    move_link "move-link" (name: String, source: Netns, target: Netns, new_name: Option<String>) -> () = Ok(());
    set_link_up "set-link-up" (netns: Netns, name: String, up: bool) -> () = Ok(());
    set_link_mtu "set-link-mtu" (netns: Netns, name: String, mtu: u32) -> () = Ok(());
    set_link_master "set-link-master" (netns: Netns, name: String, master: Option<String>) -> () = Ok(());
    add_address "add-address" (netns: Netns, name: String, address: IpPrefix) -> () = Ok(());
    del_address "del-address" (netns: Netns, name: String, address: IpPrefix) -> () = Ok(());
    list_addresses "list-addresses" (netns: Netns, name: String) -> Vec<IpPrefix> = Ok(vec![]);
    add_route "add-route" (netns: Netns, route: Route) -> () = Ok(());
    replace_route "replace-route" (netns: Netns, route: Route) -> () = Ok(());
    del_route "del-route" (netns: Netns, route: Route) -> () = Ok(());
    list_routes "list-routes" (netns: Netns, table: Option<u32>) -> Vec<Route> = Ok(vec![]);
    set_neighbour "set-neighbour" (netns: Netns, entry: Neighbour) -> () = Ok(());
    del_neighbour "del-neighbour" (netns: Netns, dev: String, address: IpAddress) -> () = Ok(());
    add_fdb "add-fdb" (netns: Netns, entry: FdbEntry) -> () = Ok(());
    del_fdb "del-fdb" (netns: Netns, entry: FdbEntry) -> () = Ok(());
    set_forwarding "set-forwarding" (netns: Netns, family: AddressFamily, dev: Option<String>, enabled: bool) -> () = Ok(());
    ovs_add_bridge "ovs-add-bridge" (name: String, datapath: OvsDatapath) -> () = Ok(());
    ovs_del_bridge "ovs-del-bridge" (name: String) -> () = Ok(());
    ovs_add_port "ovs-add-port" (bridge: String, port: String, port_type: OvsPortType, options: Vec<(String, String)>) -> () = Ok(());
    ovs_del_port "ovs-del-port" (bridge: String, port: String) -> () = Ok(());
    ovs_add_flows "ovs-add-flows" (bridge: String, flows: Vec<String>) -> () = Ok(());
    ovs_del_flows "ovs-del-flows" (bridge: String, flow_match: Option<String>) -> () = Ok(());
    node_pod_cidrs "node-pod-cidrs" () -> Vec<IpPrefix> = Ok(vec![]);
    node_addresses "node-addresses" () -> Vec<NodeAddress> = Ok(vec![]);
    default_interface "default-interface" (family: AddressFamily) -> LinkInfo = Err(NetError::NotFound);
    set_masquerade "set-masquerade" (source: IpPrefix, exempt: Vec<IpPrefix>) -> () = Ok(());
    clear_masquerade "clear-masquerade" (source: IpPrefix) -> () = Ok(());
    set_link_hairpin "set-link-hairpin" (netns: Netns, name: String, on: bool) -> () = Ok(());
}
