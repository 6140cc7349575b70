//! The resources the OpenAPI documents describe.
//!
//! A small table of its own rather than the crate's registry: the documents only need group,
//! version, kind, plural, scope, verbs and the typed schema, and must stay byte-stable (their
//! hash is part of the URL clients cache them under).

use k8s_openapi::api::autoscaling::v1 as autoscaling;
use k8s_openapi::api::coordination::v1 as coordination;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::{JsonSchema, Schema, SchemaGenerator};

/// A verb on the collection or on one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    List,
    Create,
    Get,
    Update,
    Patch,
    Delete,
    DeleteCollection,
    Watch,
}

const ALL_VERBS: &[Verb] = &[
    Verb::List,
    Verb::Create,
    Verb::Get,
    Verb::Update,
    Verb::Patch,
    Verb::Delete,
    Verb::DeleteCollection,
    Verb::Watch,
];

/// Namespaces cannot be deleted as a collection in Kubernetes.
const NAMESPACE_VERBS: &[Verb] = &[
    Verb::List,
    Verb::Create,
    Verb::Get,
    Verb::Update,
    Verb::Patch,
    Verb::Delete,
    Verb::Watch,
];

/// A subresource of a resource, by the kind of operations Kubernetes publishes for it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Subresource {
    /// `/status`: get, replace and patch of the parent kind.
    Status,
    /// `/scale`: get, replace and patch of `autoscaling/v1` Scale.
    Scale,
    /// `pods/{name}/binding`: create of a Binding.
    Binding,
    /// `pods/{name}/log`: get returning text.
    Log,
    /// `namespaces/{name}/finalize`: replace of the Namespace.
    Finalize,
    /// Streaming subresources (exec, attach, portforward): GET and POST connect operations.
    Connect {
        name: &'static str,
        options_kind: &'static str,
    },
}

impl Subresource {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Log => "log",
            Subresource::Finalize => "finalize",
            Subresource::Connect { name, .. } => name,
        }
    }
}

/// One served resource.
pub(crate) struct Resource {
    pub(crate) group: &'static str,
    pub(crate) version: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) plural: &'static str,
    pub(crate) namespaced: bool,
    pub(crate) verbs: &'static [Verb],
    pub(crate) subresources: &'static [Subresource],
    /// Kubernetes definition name of the kind, e.g. `io.k8s.api.core.v1.Pod`.
    pub(crate) definition: &'static str,
    /// Adds the kind's schema (and everything it references) to a generator.
    pub(crate) seed: fn(&mut SchemaGenerator) -> Schema,
}

impl Resource {
    pub(crate) fn has(&self, verb: Verb) -> bool {
        self.verbs.contains(&verb)
    }

    /// Definition name of the list kind, e.g. `io.k8s.api.core.v1.PodList`.
    pub(crate) fn list_definition(&self) -> String {
        format!("{}List", self.definition)
    }
}

fn seed<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

const fn core_resource(
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    definition: &'static str,
    seed: fn(&mut SchemaGenerator) -> Schema,
) -> Resource {
    Resource {
        group: "",
        version: "v1",
        kind,
        plural,
        namespaced,
        verbs: ALL_VERBS,
        subresources: &[],
        definition,
        seed,
    }
}

/// The resources, in the order Kubernetes lists them in discovery.
pub(crate) static RESOURCES: &[Resource] = &[
    Resource {
        verbs: &[Verb::Create],
        ..core_resource(
            "Binding",
            "bindings",
            true,
            "io.k8s.api.core.v1.Binding",
            seed::<core::Binding>,
        )
    },
    core_resource(
        "ConfigMap",
        "configmaps",
        true,
        "io.k8s.api.core.v1.ConfigMap",
        seed::<core::ConfigMap>,
    ),
    core_resource(
        "Endpoints",
        "endpoints",
        true,
        "io.k8s.api.core.v1.Endpoints",
        seed::<core::Endpoints>,
    ),
    core_resource(
        "Event",
        "events",
        true,
        "io.k8s.api.core.v1.Event",
        seed::<core::Event>,
    ),
    core_resource(
        "LimitRange",
        "limitranges",
        true,
        "io.k8s.api.core.v1.LimitRange",
        seed::<core::LimitRange>,
    ),
    Resource {
        verbs: NAMESPACE_VERBS,
        subresources: &[Subresource::Finalize, Subresource::Status],
        ..core_resource(
            "Namespace",
            "namespaces",
            false,
            "io.k8s.api.core.v1.Namespace",
            seed::<core::Namespace>,
        )
    },
    Resource {
        subresources: &[Subresource::Status],
        ..core_resource(
            "Node",
            "nodes",
            false,
            "io.k8s.api.core.v1.Node",
            seed::<core::Node>,
        )
    },
    Resource {
        subresources: &[
            ATTACH,
            Subresource::Binding,
            EXEC,
            Subresource::Log,
            PORT_FORWARD,
            Subresource::Status,
        ],
        ..core_resource(
            "Pod",
            "pods",
            true,
            "io.k8s.api.core.v1.Pod",
            seed::<core::Pod>,
        )
    },
    core_resource(
        "PodTemplate",
        "podtemplates",
        true,
        "io.k8s.api.core.v1.PodTemplate",
        seed::<core::PodTemplate>,
    ),
    Resource {
        subresources: &[Subresource::Scale, Subresource::Status],
        ..core_resource(
            "ReplicationController",
            "replicationcontrollers",
            true,
            "io.k8s.api.core.v1.ReplicationController",
            seed::<core::ReplicationController>,
        )
    },
    Resource {
        subresources: &[Subresource::Status],
        ..core_resource(
            "ResourceQuota",
            "resourcequotas",
            true,
            "io.k8s.api.core.v1.ResourceQuota",
            seed::<core::ResourceQuota>,
        )
    },
    core_resource(
        "Secret",
        "secrets",
        true,
        "io.k8s.api.core.v1.Secret",
        seed::<core::Secret>,
    ),
    core_resource(
        "ServiceAccount",
        "serviceaccounts",
        true,
        "io.k8s.api.core.v1.ServiceAccount",
        seed::<core::ServiceAccount>,
    ),
    Resource {
        subresources: &[Subresource::Status],
        ..core_resource(
            "Service",
            "services",
            true,
            "io.k8s.api.core.v1.Service",
            seed::<core::Service>,
        )
    },
    Resource {
        group: "coordination.k8s.io",
        ..core_resource(
            "Lease",
            "leases",
            true,
            "io.k8s.api.coordination.v1.Lease",
            seed::<coordination::Lease>,
        )
    },
];

const EXEC: Subresource = Subresource::Connect {
    name: "exec",
    options_kind: "PodExecOptions",
};
const ATTACH: Subresource = Subresource::Connect {
    name: "attach",
    options_kind: "PodAttachOptions",
};
const PORT_FORWARD: Subresource = Subresource::Connect {
    name: "portforward",
    options_kind: "PodPortForwardOptions",
};

/// Kinds that appear in the documents without being resources of their own.
pub(crate) struct ExtraKind {
    pub(crate) group: &'static str,
    pub(crate) version: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) definition: &'static str,
    pub(crate) seed: fn(&mut SchemaGenerator) -> Schema,
}

/// `autoscaling/v1` Scale is served as the `scale` subresource of replication controllers;
/// the meta kinds are request and response bodies of every group.
pub(crate) static EXTRA_KINDS: &[ExtraKind] = &[
    ExtraKind {
        group: "autoscaling",
        version: "v1",
        kind: "Scale",
        definition: "io.k8s.api.autoscaling.v1.Scale",
        seed: seed::<autoscaling::Scale>,
    },
    ExtraKind {
        group: "",
        version: "v1",
        kind: "Status",
        definition: "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
        seed: seed::<meta::Status>,
    },
    ExtraKind {
        group: "",
        version: "v1",
        kind: "APIResourceList",
        definition: "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList",
        seed: seed::<meta::APIResourceList>,
    },
];

/// Meta kinds registered in every served group version (their definitions carry one
/// group-version-kind per group, as in Kubernetes).
pub(crate) static SHARED_META_KINDS: &[ExtraKind] = &[
    ExtraKind {
        group: "",
        version: "v1",
        kind: "DeleteOptions",
        definition: "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
        seed: seed::<meta::DeleteOptions>,
    },
    ExtraKind {
        group: "",
        version: "v1",
        kind: "WatchEvent",
        definition: "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
        seed: seed::<meta::WatchEvent<core::Pod>>,
    },
];

/// A group version with its own v3 document.
pub(crate) struct GroupVersion {
    pub(crate) group: &'static str,
    pub(crate) version: &'static str,
}

impl GroupVersion {
    /// The key of the group version in `/openapi/v3`: `api/v1` or `apis/<group>/<version>`.
    pub(crate) fn path(&self) -> String {
        if self.group.is_empty() {
            format!("api/{}", self.version)
        } else {
            format!("apis/{}/{}", self.group, self.version)
        }
    }
}

/// Group versions served, core first.
pub(crate) static GROUP_VERSIONS: &[GroupVersion] = &[
    GroupVersion {
        group: "",
        version: "v1",
    },
    GroupVersion {
        group: "autoscaling",
        version: "v1",
    },
    GroupVersion {
        group: "coordination.k8s.io",
        version: "v1",
    },
];
