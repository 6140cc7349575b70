//! The operations of every served resource, modelled once and rendered as Swagger 2.0 or
//! OpenAPI 3.0 path items.
//!
//! What clients read here: kubectl looks for the `fieldValidation` query parameter on each PATCH
//! operation of a kind (by `x-kubernetes-group-version-kind`) to decide whether the server
//! validates fields itself, and `kubectl explain` finds a resource's kind from the
//! group-version-kind of the operations on its collection and object paths.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use super::resources::{GroupVersion, RESOURCES, Resource, Subresource, Verb};
use super::schemas::{PATCH, V2_REF_PREFIX, V3_REF_PREFIX, gvk};

const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";

/// Media types of patch bodies, as listed by Kubernetes.
const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];
const OBJECT_TYPES: &[&str] = &[
    "application/json",
    "application/vnd.kubernetes.protobuf",
    "application/yaml",
];
const STREAM_TYPES: &[&str] = &[
    "application/json",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf",
    "application/vnd.kubernetes.protobuf;stream=watch",
    "application/yaml",
];

#[derive(Clone, Copy)]
enum Type {
    String,
    Integer,
    Boolean,
}

#[derive(Clone)]
struct Param {
    name: &'static str,
    path: bool,
    ty: Type,
    description: Cow<'static, str>,
}

const fn query(name: &'static str, ty: Type, description: &'static str) -> Param {
    Param {
        name,
        path: false,
        ty,
        description: Cow::Borrowed(description),
    }
}

const PRETTY: Param = query(
    "pretty",
    Type::String,
    "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).",
);
const NAMESPACE: Param = Param {
    name: "namespace",
    path: true,
    ty: Type::String,
    description: Cow::Borrowed("object name and auth scope, such as for teams and projects"),
};
const DRY_RUN: Param = query(
    "dryRun",
    Type::String,
    "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed",
);
const FIELD_MANAGER: Param = query(
    "fieldManager",
    Type::String,
    "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters.",
);
const FIELD_VALIDATION: Param = query(
    "fieldValidation",
    Type::String,
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: unknown fields are silently dropped and all but the last duplicate field are ignored. - Warn: a warning is sent for each unknown and each duplicate field; the request still succeeds. This is the default. - Strict: the request fails with a BadRequest error naming every unknown and duplicate field.",
);
const FORCE: Param = query(
    "force",
    Type::Boolean,
    "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.",
);
const ALLOW_WATCH_BOOKMARKS: Param = query(
    "allowWatchBookmarks",
    Type::Boolean,
    "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion.",
);
const CONTINUE: Param = query(
    "continue",
    Type::String,
    "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue).",
);
const FIELD_SELECTOR: Param = query(
    "fieldSelector",
    Type::String,
    "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
);
const LABEL_SELECTOR: Param = query(
    "labelSelector",
    Type::String,
    "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
);
const LIMIT: Param = query(
    "limit",
    Type::Integer,
    "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results.",
);
const RESOURCE_VERSION: Param = query(
    "resourceVersion",
    Type::String,
    "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset",
);
const RESOURCE_VERSION_MATCH: Param = query(
    "resourceVersionMatch",
    Type::String,
    "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that resourceVersionMatch be set for list calls where resourceVersion is set See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset",
);
const SEND_INITIAL_EVENTS: Param = query(
    "sendInitialEvents",
    Type::Boolean,
    "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection, followed by a \"Bookmark\" event.",
);
const TIMEOUT_SECONDS: Param = query(
    "timeoutSeconds",
    Type::Integer,
    "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.",
);
const WATCH: Param = query(
    "watch",
    Type::Boolean,
    "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.",
);
const GRACE_PERIOD_SECONDS: Param = query(
    "gracePeriodSeconds",
    Type::Integer,
    "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used.",
);
const ORPHAN_DEPENDENTS: Param = query(
    "orphanDependents",
    Type::Boolean,
    "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned.",
);
const PROPAGATION_POLICY: Param = query(
    "propagationPolicy",
    Type::String,
    "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - allow the garbage collector to delete the dependents in the background; 'Foreground' - a cascading policy that deletes all dependents in the foreground.",
);

const LIST_PARAMS: &[Param] = &[
    ALLOW_WATCH_BOOKMARKS,
    CONTINUE,
    FIELD_SELECTOR,
    LABEL_SELECTOR,
    LIMIT,
    RESOURCE_VERSION,
    RESOURCE_VERSION_MATCH,
    SEND_INITIAL_EVENTS,
    TIMEOUT_SECONDS,
    WATCH,
];
const WRITE_PARAMS: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION];
const PATCH_PARAMS: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE];
const DELETE_PARAMS: &[Param] = &[
    DRY_RUN,
    GRACE_PERIOD_SECONDS,
    ORPHAN_DEPENDENTS,
    PROPAGATION_POLICY,
];
const DELETE_COLLECTION_PARAMS: &[Param] = &[
    CONTINUE,
    DRY_RUN,
    FIELD_SELECTOR,
    GRACE_PERIOD_SECONDS,
    LABEL_SELECTOR,
    LIMIT,
    ORPHAN_DEPENDENTS,
    PROPAGATION_POLICY,
    RESOURCE_VERSION,
    RESOURCE_VERSION_MATCH,
    SEND_INITIAL_EVENTS,
    TIMEOUT_SECONDS,
];
const LOG_PARAMS: &[Param] = &[
    query(
        "container",
        Type::String,
        "The container for which to stream logs. Defaults to only container if there is one container in the pod.",
    ),
    query(
        "follow",
        Type::Boolean,
        "Follow the log stream of the pod. Defaults to false.",
    ),
    query(
        "insecureSkipTLSVerifyBackend",
        Type::Boolean,
        "insecureSkipTLSVerifyBackend indicates that the apiserver should not confirm the validity of the serving certificate of the backend it is connecting to.",
    ),
    query(
        "limitBytes",
        Type::Integer,
        "If set, the number of bytes to read from the server before terminating the log output.",
    ),
    query(
        "previous",
        Type::Boolean,
        "Return previous terminated container logs. Defaults to false.",
    ),
    query(
        "sinceSeconds",
        Type::Integer,
        "A relative time in seconds before the current time from which to show logs.",
    ),
    query(
        "tailLines",
        Type::Integer,
        "If set, the number of lines from the end of the logs to show.",
    ),
    query(
        "timestamps",
        Type::Boolean,
        "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false.",
    ),
];
const EXEC_PARAMS: &[Param] = &[
    query(
        "command",
        Type::String,
        "Command is the remote command to execute. argv array. Not executed within a shell.",
    ),
    query(
        "container",
        Type::String,
        "Container in which to execute the command. Defaults to only container if there is only one container in the pod.",
    ),
    query(
        "stderr",
        Type::Boolean,
        "Redirect the standard error stream of the pod for this call.",
    ),
    query(
        "stdin",
        Type::Boolean,
        "Redirect the standard input stream of the pod for this call. Defaults to false.",
    ),
    query(
        "stdout",
        Type::Boolean,
        "Redirect the standard output stream of the pod for this call.",
    ),
    query(
        "tty",
        Type::Boolean,
        "TTY if true indicates that a tty will be allocated for the exec call. Defaults to false.",
    ),
];
const ATTACH_PARAMS: &[Param] = &[
    query(
        "container",
        Type::String,
        "The container in which to execute the command. Defaults to only container if there is only one container in the pod.",
    ),
    query(
        "stderr",
        Type::Boolean,
        "Stderr if true indicates that stderr is to be redirected for the attach call. Defaults to true.",
    ),
    query(
        "stdin",
        Type::Boolean,
        "Stdin if true, redirects the standard input stream of the pod for this call. Defaults to false.",
    ),
    query(
        "stdout",
        Type::Boolean,
        "Stdout if true indicates that stdout is to be redirected for the attach call. Defaults to true.",
    ),
    query(
        "tty",
        Type::Boolean,
        "TTY if true indicates that a tty will be allocated for the attach call.",
    ),
];
const PORT_FORWARD_PARAMS: &[Param] = &[query(
    "ports",
    Type::Integer,
    "List of ports to forward Required when using WebSockets",
)];

/// What a request or response carries.
#[derive(Clone)]
enum Payload {
    /// A definition, by name.
    Object(String),
    /// A stream of watch events.
    Watch,
    /// Plain text (logs, streaming subresources).
    Text,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    /// An object of the given definition in any media type; required.
    Object,
    /// A patch document in one of the patch media types; required.
    Patch,
    /// Optional DeleteOptions.
    DeleteOptions,
}

struct Operation {
    method: &'static str,
    action: Option<&'static str>,
    id: String,
    description: String,
    params: Vec<Param>,
    body: Body,
    /// Definition sent in the body (for `Body::Object`).
    body_definition: String,
    responses: Vec<(u16, &'static str, Option<Payload>)>,
    produces: &'static [&'static str],
    tag: String,
    gvk: Option<Value>,
}

struct PathItem {
    path: String,
    params: Vec<Param>,
    operations: Vec<Operation>,
}

fn name_param(kind: &str) -> Param {
    Param {
        name: "name",
        path: true,
        ty: Type::String,
        description: Cow::Owned(format!("name of the {kind}")),
    }
}

fn camel(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `CoreV1`, `CoordinationV1`, `AutoscalingV1`: the group-version part of operation IDs.
fn gv_id(group: &str, version: &str) -> String {
    let group = match group {
        "" => "core",
        other => other.split('.').next().unwrap_or(other),
    };
    format!("{}{}", camel(group), camel(version))
}

/// `core_v1`, `coordination_v1`: the tag of a group version's operations.
fn gv_tag(group: &str, version: &str) -> String {
    let group = match group {
        "" => "core",
        other => other.split('.').next().unwrap_or(other),
    };
    format!("{group}_{version}")
}

fn prefix(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

struct Ctx<'a> {
    resource: &'a Resource,
    gv: String,
    tag: String,
    scope: &'static str,
}

impl Ctx<'_> {
    fn op(
        &self,
        method: &'static str,
        action: &'static str,
        id: String,
        description: String,
    ) -> Operation {
        let r = self.resource;
        Operation {
            method,
            action: Some(action),
            id,
            description,
            params: Vec::new(),
            body: Body::None,
            body_definition: r.definition.to_owned(),
            responses: Vec::new(),
            produces: OBJECT_TYPES,
            tag: self.tag.clone(),
            gvk: Some(gvk(r.group, r.version, r.kind)),
        }
    }

    fn id(&self, verb: &str, suffix: &str) -> String {
        format!(
            "{verb}{}{}{}{suffix}",
            self.gv, self.scope, self.resource.kind
        )
    }
}

fn object(definition: &str) -> Option<Payload> {
    Some(Payload::Object(definition.to_owned()))
}

const UNAUTHORIZED: (u16, &str, Option<Payload>) = (401, "Unauthorized", None);

fn read(op: Operation, definition: &str) -> Operation {
    Operation {
        responses: vec![(200, "OK", object(definition)), UNAUTHORIZED],
        ..op
    }
}

fn replace(op: Operation, definition: &str) -> Operation {
    Operation {
        params: WRITE_PARAMS.to_vec(),
        body: Body::Object,
        body_definition: definition.to_owned(),
        responses: vec![
            (200, "OK", object(definition)),
            (201, "Created", object(definition)),
            UNAUTHORIZED,
        ],
        ..op
    }
}

fn patch(op: Operation, definition: &str) -> Operation {
    Operation {
        params: PATCH_PARAMS.to_vec(),
        body: Body::Patch,
        responses: vec![
            (200, "OK", object(definition)),
            (201, "Created", object(definition)),
            UNAUTHORIZED,
        ],
        ..op
    }
}

fn create(op: Operation, definition: &str) -> Operation {
    Operation {
        params: WRITE_PARAMS.to_vec(),
        body: Body::Object,
        body_definition: definition.to_owned(),
        responses: vec![
            (200, "OK", object(definition)),
            (201, "Created", object(definition)),
            (202, "Accepted", object(definition)),
            UNAUTHORIZED,
        ],
        ..op
    }
}

fn watch(op: Operation) -> Operation {
    Operation {
        params: LIST_PARAMS.to_vec(),
        responses: vec![(200, "OK", Some(Payload::Watch)), UNAUTHORIZED],
        produces: STREAM_TYPES,
        ..op
    }
}

/// All path items of one resource.
fn resource_paths(r: &Resource) -> Vec<PathItem> {
    let ctx = Ctx {
        resource: r,
        gv: gv_id(r.group, r.version),
        tag: gv_tag(r.group, r.version),
        scope: if r.namespaced { "Namespaced" } else { "" },
    };
    let kind = r.kind;
    let root = prefix(r.group, r.version);
    let scoped = if r.namespaced {
        format!("{root}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{root}/{}", r.plural)
    };
    let scope_params = |mut params: Vec<Param>| {
        if r.namespaced {
            params.push(NAMESPACE);
        }
        params.push(PRETTY);
        params
    };
    let mut items = Vec::new();

    // Collection.
    let mut ops = Vec::new();
    if r.has(Verb::List) {
        ops.push(Operation {
            params: LIST_PARAMS.to_vec(),
            responses: vec![(200, "OK", object(&r.list_definition())), UNAUTHORIZED],
            produces: STREAM_TYPES,
            ..ctx.op(
                "get",
                "list",
                ctx.id("list", ""),
                format!("list or watch objects of kind {kind}"),
            )
        });
    }
    if r.has(Verb::Create) {
        ops.push(create(
            ctx.op(
                "post",
                "post",
                ctx.id("create", ""),
                format!("create {}", article(kind)),
            ),
            r.definition,
        ));
    }
    if r.has(Verb::DeleteCollection) {
        let id = format!("delete{}Collection{}{kind}", ctx.gv, ctx.scope);
        ops.push(Operation {
            params: DELETE_COLLECTION_PARAMS.to_vec(),
            body: Body::DeleteOptions,
            responses: vec![(200, "OK", object(STATUS)), UNAUTHORIZED],
            ..ctx.op(
                "delete",
                "deletecollection",
                id,
                format!("delete collection of {kind}"),
            )
        });
    }
    items.push(PathItem {
        path: scoped.clone(),
        params: scope_params(Vec::new()),
        operations: ops,
    });

    if !r.has(Verb::Get) {
        // Bindings are create-only: nothing below applies.
        return items;
    }

    // One object.
    let object_params = scope_params(vec![name_param(kind)]);
    let mut ops = vec![read(
        ctx.op(
            "get",
            "get",
            ctx.id("read", ""),
            format!("read the specified {kind}"),
        ),
        r.definition,
    )];
    if r.has(Verb::Update) {
        ops.push(replace(
            ctx.op(
                "put",
                "put",
                ctx.id("replace", ""),
                format!("replace the specified {kind}"),
            ),
            r.definition,
        ));
    }
    if r.has(Verb::Patch) {
        ops.push(patch(
            ctx.op(
                "patch",
                "patch",
                ctx.id("patch", ""),
                format!("partially update the specified {kind}"),
            ),
            r.definition,
        ));
    }
    if r.has(Verb::Delete) {
        // Pods are deleted gracefully and the response is the pod being deleted.
        let returned = if kind == "Pod" { r.definition } else { STATUS };
        ops.push(Operation {
            params: DELETE_PARAMS.to_vec(),
            body: Body::DeleteOptions,
            responses: vec![
                (200, "OK", object(returned)),
                (202, "Accepted", object(returned)),
                UNAUTHORIZED,
            ],
            ..ctx.op(
                "delete",
                "delete",
                ctx.id("delete", ""),
                format!("delete {}", article(kind)),
            )
        });
    }
    items.push(PathItem {
        path: format!("{scoped}/{{name}}"),
        params: object_params.clone(),
        operations: ops,
    });

    for sub in r.subresources {
        items.push(subresource_path(&ctx, &scoped, &object_params, *sub));
    }

    if r.has(Verb::Watch) {
        let watch_scoped = if r.namespaced {
            format!("{root}/watch/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{root}/watch/{}", r.plural)
        };
        items.push(PathItem {
            path: watch_scoped.clone(),
            params: scope_params(Vec::new()),
            operations: vec![watch(ctx.op(
                "get",
                "watchlist",
                ctx.id("watch", "List"),
                format!("watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."),
            ))],
        });
        items.push(PathItem {
            path: format!("{watch_scoped}/{{name}}"),
            params: object_params.clone(),
            operations: vec![watch(ctx.op(
                "get",
                "watch",
                ctx.id("watch", ""),
                format!("watch changes to an object of kind {kind}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter."),
            ))],
        });
    }

    if r.namespaced && r.has(Verb::List) {
        let cluster = Ctx { scope: "", ..ctx };
        items.push(PathItem {
            path: format!("{root}/{}", r.plural),
            params: vec![PRETTY],
            operations: vec![Operation {
                params: LIST_PARAMS.to_vec(),
                responses: vec![(200, "OK", object(&r.list_definition())), UNAUTHORIZED],
                produces: STREAM_TYPES,
                ..cluster.op(
                    "get",
                    "list",
                    cluster.id("list", "ForAllNamespaces"),
                    format!("list or watch objects of kind {kind}"),
                )
            }],
        });
        if r.has(Verb::Watch) {
            items.push(PathItem {
                path: format!("{root}/watch/{}", r.plural),
                params: vec![PRETTY],
                operations: vec![watch(cluster.op(
                    "get",
                    "watchlist",
                    cluster.id("watch", "ListForAllNamespaces"),
                    format!("watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."),
                ))],
            });
        }
    }
    items
}

fn subresource_path(
    ctx: &Ctx<'_>,
    scoped: &str,
    object_params: &[Param],
    sub: Subresource,
) -> PathItem {
    let r = ctx.resource;
    let kind = r.kind;
    let name = sub.name();
    let suffix = camel(name);
    let path = format!("{scoped}/{{name}}/{name}");
    let mut params = object_params.to_vec();
    let operations = match sub {
        Subresource::Status => vec![
            read(
                ctx.op(
                    "get",
                    "get",
                    ctx.id("read", &suffix),
                    format!("read status of the specified {kind}"),
                ),
                r.definition,
            ),
            replace(
                ctx.op(
                    "put",
                    "put",
                    ctx.id("replace", &suffix),
                    format!("replace status of the specified {kind}"),
                ),
                r.definition,
            ),
            patch(
                ctx.op(
                    "patch",
                    "patch",
                    ctx.id("patch", &suffix),
                    format!("partially update status of the specified {kind}"),
                ),
                r.definition,
            ),
        ],
        Subresource::Scale => {
            let scale_gvk = Some(gvk("autoscaling", "v1", "Scale"));
            vec![
                Operation {
                    gvk: scale_gvk.clone(),
                    ..read(
                        ctx.op(
                            "get",
                            "get",
                            ctx.id("read", &suffix),
                            format!("read scale of the specified {kind}"),
                        ),
                        SCALE,
                    )
                },
                Operation {
                    gvk: scale_gvk.clone(),
                    ..replace(
                        ctx.op(
                            "put",
                            "put",
                            ctx.id("replace", &suffix),
                            format!("replace scale of the specified {kind}"),
                        ),
                        SCALE,
                    )
                },
                Operation {
                    gvk: scale_gvk,
                    ..patch(
                        ctx.op(
                            "patch",
                            "patch",
                            ctx.id("patch", &suffix),
                            format!("partially update scale of the specified {kind}"),
                        ),
                        SCALE,
                    )
                },
            ]
        }
        Subresource::Binding => {
            let binding = "io.k8s.api.core.v1.Binding";
            vec![Operation {
                gvk: Some(gvk("", "v1", "Binding")),
                ..create(
                    ctx.op(
                        "post",
                        "post",
                        ctx.id("create", &suffix),
                        format!("create binding of {}", article(kind)),
                    ),
                    binding,
                )
            }]
        }
        Subresource::Finalize => {
            vec![replace(
                ctx.op(
                    "put",
                    "put",
                    ctx.id("replace", &suffix),
                    format!("replace finalize of the specified {kind}"),
                ),
                r.definition,
            )]
        }
        Subresource::Log => {
            vec![Operation {
                params: LOG_PARAMS.to_vec(),
                responses: vec![(200, "OK", Some(Payload::Text)), UNAUTHORIZED],
                produces: &[
                    "text/plain",
                    "application/json",
                    "application/yaml",
                    "application/vnd.kubernetes.protobuf",
                ],
                ..ctx.op(
                    "get",
                    "get",
                    ctx.id("read", &suffix),
                    format!("read log of the specified {kind}"),
                )
            }]
        }
        Subresource::Connect { options_kind, .. } => {
            // Streaming subresources take their options as query parameters and answer with
            // an upgraded connection.
            params.retain(|p| p.name != "pretty");
            let options = match name {
                "exec" => EXEC_PARAMS,
                "attach" => ATTACH_PARAMS,
                _ => PORT_FORWARD_PARAMS,
            };
            ["get", "post"]
                .into_iter()
                .map(|method| {
                    let id = format!(
                        "connect{}{}{}{kind}{suffix}",
                        camel(method),
                        ctx.gv,
                        ctx.scope
                    );
                    Operation {
                        params: options.to_vec(),
                        responses: vec![(200, "OK", Some(Payload::Text)), UNAUTHORIZED],
                        produces: &["*/*"],
                        gvk: Some(gvk("", "v1", options_kind)),
                        ..ctx.op(
                            method,
                            "connect",
                            id,
                            format!(
                                "connect {} requests to {name} of {kind}",
                                method.to_uppercase()
                            ),
                        )
                    }
                })
                .collect()
        }
    };
    PathItem {
        path,
        params,
        operations,
    }
}

fn article(kind: &str) -> String {
    let vowel = kind.starts_with(['A', 'E', 'I', 'O', 'U']);
    format!("{} {kind}", if vowel { "an" } else { "a" })
}

/// The discovery document of a group version (`GET /api/v1/`).
fn discovery_path(gv: &GroupVersion) -> PathItem {
    PathItem {
        path: format!("{}/", prefix(gv.group, gv.version)),
        params: Vec::new(),
        operations: vec![Operation {
            method: "get",
            action: None,
            id: format!("get{}APIResources", gv_id(gv.group, gv.version)),
            description: "get available resources".to_owned(),
            params: Vec::new(),
            body: Body::None,
            body_definition: String::new(),
            responses: vec![(200, "OK", object(API_RESOURCE_LIST)), UNAUTHORIZED],
            produces: OBJECT_TYPES,
            tag: gv_tag(gv.group, gv.version),
            gvk: None,
        }],
    }
}

fn path_items(group: Option<(&str, &str)>) -> Vec<PathItem> {
    let mut items = Vec::new();
    for gv in super::resources::GROUP_VERSIONS {
        if group.is_some_and(|(g, v)| (g, v) != (gv.group, gv.version)) {
            continue;
        }
        items.push(discovery_path(gv));
        for r in RESOURCES
            .iter()
            .filter(|r| (r.group, r.version) == (gv.group, gv.version))
        {
            items.extend(resource_paths(r));
        }
    }
    items.sort_by(|a, b| a.path.cmp(&b.path));
    items
}

/// Which OpenAPI version to render.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    V2,
    V3,
}

fn reference(flavor: Flavor, definition: &str) -> Value {
    let prefix = match flavor {
        Flavor::V2 => V2_REF_PREFIX,
        Flavor::V3 => V3_REF_PREFIX,
    };
    json!({ "$ref": format!("{prefix}{definition}") })
}

fn render_param(flavor: Flavor, p: &Param) -> Value {
    let ty = match p.ty {
        Type::String => "string",
        Type::Integer => "integer",
        Type::Boolean => "boolean",
    };
    let mut out = Map::new();
    out.insert("description".into(), p.description.as_ref().into());
    out.insert("in".into(), if p.path { "path" } else { "query" }.into());
    out.insert("name".into(), p.name.into());
    if p.path {
        out.insert("required".into(), true.into());
    }
    match flavor {
        Flavor::V2 => {
            out.insert("type".into(), ty.into());
            out.insert("uniqueItems".into(), true.into());
        }
        Flavor::V3 => {
            out.insert("schema".into(), json!({ "type": ty, "uniqueItems": true }));
        }
    }
    Value::Object(out)
}

fn payload_schema(flavor: Flavor, payload: &Payload) -> Value {
    match payload {
        Payload::Object(definition) => reference(flavor, definition),
        Payload::Watch => reference(flavor, WATCH_EVENT),
        Payload::Text => json!({ "type": "string" }),
    }
}

fn render_operation(flavor: Flavor, op: &Operation) -> Value {
    let mut out = Map::new();
    let mut params: Vec<Value> = op.params.iter().map(|p| render_param(flavor, p)).collect();
    let body_schema = match op.body {
        Body::None => None,
        Body::Object => Some((reference(flavor, &op.body_definition), true)),
        Body::Patch => Some((reference(flavor, PATCH), true)),
        Body::DeleteOptions => Some((reference(flavor, DELETE_OPTIONS), false)),
    };
    if flavor == Flavor::V2 {
        let consumes: Vec<&str> = if op.body == Body::Patch {
            PATCH_TYPES.to_vec()
        } else {
            vec!["*/*"]
        };
        out.insert("consumes".into(), json!(consumes));
    }
    out.insert("description".into(), op.description.clone().into());
    out.insert("operationId".into(), op.id.clone().into());
    if let Some((schema, required)) = body_schema {
        match flavor {
            Flavor::V2 => {
                let mut body = Map::new();
                body.insert("in".into(), "body".into());
                body.insert("name".into(), "body".into());
                if required {
                    body.insert("required".into(), true.into());
                }
                body.insert("schema".into(), schema);
                params.insert(0, Value::Object(body));
            }
            Flavor::V3 => {
                let types: Vec<&str> = if op.body == Body::Patch {
                    PATCH_TYPES.to_vec()
                } else {
                    vec!["*/*"]
                };
                let content: Map<String, Value> = types
                    .into_iter()
                    .map(|t| (t.to_owned(), json!({ "schema": schema.clone() })))
                    .collect();
                let mut body = Map::new();
                body.insert("content".into(), Value::Object(content));
                if required {
                    body.insert("required".into(), true.into());
                }
                out.insert("requestBody".into(), Value::Object(body));
            }
        }
    }
    if !params.is_empty() {
        out.insert("parameters".into(), Value::Array(params));
    }
    if flavor == Flavor::V2 {
        out.insert("produces".into(), json!(op.produces));
    }
    let mut responses = Map::new();
    for (code, description, payload) in &op.responses {
        let mut response = Map::new();
        if let Some(payload) = payload {
            let schema = payload_schema(flavor, payload);
            match flavor {
                Flavor::V2 => {
                    response.insert("description".into(), (*description).into());
                    response.insert("schema".into(), schema);
                }
                Flavor::V3 => {
                    let content: Map<String, Value> = op
                        .produces
                        .iter()
                        .map(|t| ((*t).to_owned(), json!({ "schema": schema.clone() })))
                        .collect();
                    response.insert("content".into(), Value::Object(content));
                    response.insert("description".into(), (*description).into());
                }
            }
        } else {
            response.insert("description".into(), (*description).into());
        }
        responses.insert(code.to_string(), Value::Object(response));
    }
    out.insert("responses".into(), Value::Object(responses));
    if flavor == Flavor::V2 {
        out.insert("schemes".into(), json!(["https"]));
    }
    out.insert("tags".into(), json!([op.tag]));
    if let Some(action) = op.action {
        out.insert("x-kubernetes-action".into(), action.into());
    }
    if let Some(gvk) = &op.gvk {
        out.insert("x-kubernetes-group-version-kind".into(), gvk.clone());
    }
    Value::Object(out)
}

/// The `paths` object, for one group version (v3) or all of them (v2, `group = None`).
pub(crate) fn render(flavor: Flavor, group: Option<(&str, &str)>) -> Map<String, Value> {
    let mut paths = Map::new();
    for item in path_items(group) {
        let mut rendered = Map::new();
        for op in &item.operations {
            rendered.insert(op.method.into(), render_operation(flavor, op));
        }
        if !item.params.is_empty() {
            let params = item
                .params
                .iter()
                .map(|p| render_param(flavor, p))
                .collect();
            rendered.insert("parameters".into(), Value::Array(params));
        }
        // Methods and parameters in the alphabetical order Kubernetes serializes them.
        let mut keys: Vec<String> = rendered.keys().cloned().collect();
        keys.sort();
        let sorted: Map<String, Value> = keys
            .into_iter()
            .filter_map(|k| rendered.remove(&k).map(|v| (k, v)))
            .collect();
        paths.insert(item.path, Value::Object(sorted));
    }
    paths
}
