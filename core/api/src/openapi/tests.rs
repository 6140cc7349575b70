#![allow(clippy::unwrap_used)]

use serde_json::Value;

use super::*;

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc.pointer(&format!("/components/schemas/{}", name.replace('/', "~1")))
        .unwrap_or_else(|| panic!("schema {name} missing"))
}

fn core() -> &'static Value {
    v3_document_ref("api/v1").unwrap()
}

/// Every `$ref` in `value` that does not resolve inside `doc`.
fn dangling_refs(doc: &Value, prefix: &str) -> Vec<String> {
    let mut refs = Vec::new();
    schemas::collect_refs(doc, &mut refs);
    refs.sort();
    refs.dedup();
    refs.into_iter()
        .filter(|name| doc.pointer(&format!("{prefix}{name}")).is_none())
        .collect()
}

#[test]
fn v3_root_lists_every_group_version_with_its_hash() {
    let root = v3_root();
    let paths = root["paths"].as_object().unwrap();
    assert_eq!(
        paths.keys().collect::<Vec<_>>(),
        [
            "api/v1",
            "apis/autoscaling/v1",
            "apis/coordination.k8s.io/v1"
        ]
    );
    for (path, entry) in paths {
        let url = entry["serverRelativeURL"].as_str().unwrap();
        let hash = v3_document_hash(path).unwrap();
        assert_eq!(url, format!("/openapi/v3/{path}?hash={hash}"));
        assert_eq!(hash.len(), 128, "sha512 in hex");
        assert!(
            hash.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
        let bytes = v3_document_json(path).unwrap();
        assert_eq!(hex_upper(&Sha512::digest(bytes)), hash);
        let reparsed: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(&reparsed, v3_document_ref(path).unwrap());
    }
}

#[test]
fn documents_are_deterministic() {
    // The hash is a cache key: a rebuild must produce the same bytes.
    let again = build();
    for doc in &again.v3 {
        assert_eq!(
            Some(doc.hash.as_str()),
            v3_document_hash(&doc.path),
            "{}",
            doc.path
        );
    }
    assert_eq!(again.v2_json, v2_document_json());
}

#[test]
fn v3_document_lookup_accepts_url_forms() {
    assert!(v3_document("api/v1").is_some());
    assert!(v3_document("/openapi/v3/api/v1").is_some());
    assert!(v3_document("/apis/coordination.k8s.io/v1/").is_some());
    assert!(v3_document("apis/apps/v1").is_none());
    assert!(v3_document("").is_none());
}

#[test]
fn pod_schema_carries_its_group_version_kind() {
    let pod = schema(core(), "io.k8s.api.core.v1.Pod");
    assert_eq!(
        pod["x-kubernetes-group-version-kind"],
        serde_json::json!([{ "group": "", "kind": "Pod", "version": "v1" }])
    );
    assert!(
        pod["description"]
            .as_str()
            .unwrap()
            .starts_with("Pod is a collection of containers")
    );
    // k8s-openapi's non-optional metadata is not a Kubernetes requirement.
    assert!(pod.get("required").is_none());
    let event = schema(core(), "io.k8s.api.core.v1.Event");
    let required: Vec<&str> = event["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(required.contains(&"metadata") && required.contains(&"involvedObject"));
    let binding = schema(core(), "io.k8s.api.core.v1.Binding");
    assert_eq!(binding["required"], serde_json::json!(["target"]));

    let lease = schema(
        v3_document_ref("apis/coordination.k8s.io/v1").unwrap(),
        "io.k8s.api.coordination.v1.Lease",
    );
    assert_eq!(
        lease["x-kubernetes-group-version-kind"][0]["group"],
        "coordination.k8s.io"
    );
    let scale = schema(
        v3_document_ref("apis/autoscaling/v1").unwrap(),
        "io.k8s.api.autoscaling.v1.Scale",
    );
    assert_eq!(scale["x-kubernetes-group-version-kind"][0]["kind"], "Scale");
}

#[test]
fn every_served_kind_and_list_has_a_schema_with_gvk() {
    for r in resources::RESOURCES {
        let doc = v3_document_ref(
            &resources::GroupVersion {
                group: r.group,
                version: r.version,
            }
            .path(),
        )
        .unwrap();
        let kind = schema(doc, r.definition);
        assert_eq!(kind["x-kubernetes-group-version-kind"][0]["kind"], r.kind);
        if r.has(resources::Verb::List) {
            let list = schema(doc, &r.list_definition());
            assert_eq!(
                list["x-kubernetes-group-version-kind"][0]["kind"],
                format!("{}List", r.kind)
            );
            assert_eq!(
                list["properties"]["items"]["items"]["$ref"],
                format!("#/components/schemas/{}", r.definition)
            );
        }
    }
}

#[test]
fn definition_names_are_kubernetes_names() {
    for doc in GROUP_VERSIONS
        .iter()
        .map(|gv| v3_document_ref(&gv.path()).unwrap())
    {
        for name in doc["components"]["schemas"].as_object().unwrap().keys() {
            assert!(name.starts_with("io.k8s."), "{name}");
            // schemars appends a number to a name that clashes; Kubernetes names end in a
            // version (`FieldsV1`) at most.
            let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
            assert!(
                stem == name || stem.ends_with(['V', 'v']),
                "schemars renamed a clash: {name}"
            );
        }
    }
    for name in v2_document_ref()["definitions"].as_object().unwrap().keys() {
        assert!(name.starts_with("io.k8s."), "{name}");
    }
}

#[test]
fn references_resolve_inside_each_document() {
    for gv in GROUP_VERSIONS {
        let doc = v3_document_ref(&gv.path()).unwrap();
        assert_eq!(
            dangling_refs(doc, "/components/schemas/"),
            Vec::<String>::new(),
            "{}",
            gv.path()
        );
        // No Swagger 2.0 reference leaked into a v3 document.
        assert!(
            !String::from_utf8_lossy(v3_document_json(&gv.path()).unwrap())
                .contains("#/definitions/")
        );
    }
    let v2 = v2_document_ref();
    assert_eq!(dangling_refs(v2, "/definitions/"), Vec::<String>::new());
    assert!(!String::from_utf8_lossy(v2_document_json()).contains("#/components/"));
}

#[test]
fn v3_refs_with_siblings_are_wrapped_in_all_of() {
    // OpenAPI 3.0 ignores siblings of `$ref`, so a field's description needs the `allOf` form.
    let spec = &schema(core(), "io.k8s.api.core.v1.Pod")["properties"]["spec"];
    assert_eq!(
        spec["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.PodSpec"
    );
    assert!(
        spec["description"]
            .as_str()
            .unwrap()
            .contains("desired behavior")
    );
    assert!(spec.get("$ref").is_none());
    // Swagger 2.0 keeps the sibling form Kubernetes publishes.
    let v2_spec = &v2_document_ref()["definitions"]["io.k8s.api.core.v1.Pod"]["properties"]["spec"];
    assert_eq!(v2_spec["$ref"], "#/definitions/io.k8s.api.core.v1.PodSpec");
}

#[test]
fn pod_spec_containers_carry_patch_metadata() {
    let containers = &schema(core(), "io.k8s.api.core.v1.PodSpec")["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(
        containers["x-kubernetes-list-map-keys"],
        serde_json::json!(["name"])
    );
    assert_eq!(
        containers["items"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.Container"
    );
    assert!(
        containers["description"]
            .as_str()
            .unwrap()
            .starts_with("List of containers")
    );

    let spec = &schema(core(), "io.k8s.api.core.v1.PodSpec")["properties"];
    assert_eq!(
        spec["volumes"]["x-kubernetes-patch-strategy"],
        "merge,retainKeys"
    );
    assert_eq!(spec["tolerations"]["x-kubernetes-list-type"], "atomic");
    assert!(
        spec["tolerations"]
            .get("x-kubernetes-patch-strategy")
            .is_none()
    );
    assert_eq!(spec["nodeSelector"]["x-kubernetes-map-type"], "atomic");

    let container = &schema(core(), "io.k8s.api.core.v1.Container")["properties"];
    assert_eq!(
        container["ports"]["x-kubernetes-patch-merge-key"],
        "containerPort"
    );
    assert_eq!(
        container["ports"]["x-kubernetes-list-map-keys"],
        serde_json::json!(["containerPort", "protocol"])
    );
    assert_eq!(container["env"]["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(
        container["volumeMounts"]["x-kubernetes-patch-merge-key"],
        "mountPath"
    );
    assert_eq!(container["args"]["x-kubernetes-list-type"], "atomic");

    let service = &schema(core(), "io.k8s.api.core.v1.ServiceSpec")["properties"];
    assert_eq!(service["ports"]["x-kubernetes-patch-merge-key"], "port");

    let meta = &schema(core(), "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")["properties"];
    assert_eq!(meta["finalizers"]["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(meta["finalizers"]["x-kubernetes-list-type"], "set");
    assert_eq!(
        meta["ownerReferences"]["x-kubernetes-patch-merge-key"],
        "uid"
    );
}

#[test]
fn every_patch_table_entry_lands_on_a_property() {
    let defs = definitions();
    for entry in patch_meta::LIST_FIELDS {
        let property = defs
            .get(&entry.full())
            .and_then(|d| d.pointer(&format!("/properties/{}", entry.field)))
            .unwrap_or_else(|| panic!("{}.{} not found", entry.full(), entry.field));
        assert_eq!(
            property["type"],
            "array",
            "{}.{}",
            entry.full(),
            entry.field
        );
        assert!(property.get("x-kubernetes-list-type").is_some());
    }
    for name in patch_meta::ATOMIC_STRUCTS {
        let def = defs
            .get(&patch_meta::full_name(name))
            .unwrap_or_else(|| panic!("{name} not found"));
        assert_eq!(def["x-kubernetes-map-type"], "atomic", "{name}");
    }
    for (definition, field) in patch_meta::ATOMIC_MAP_FIELDS {
        assert_eq!(
            defs[&patch_meta::full_name(definition)]["properties"][field]["x-kubernetes-map-type"],
            "atomic"
        );
    }
}

#[test]
fn scalar_types_have_kubernetes_forms() {
    let quantity = schema(core(), schemas::QUANTITY);
    assert_eq!(
        quantity["oneOf"],
        serde_json::json!([{ "type": "string" }, { "type": "number" }])
    );
    assert!(
        quantity["description"]
            .as_str()
            .unwrap()
            .starts_with("Quantity is")
    );
    let int_or_string = schema(core(), schemas::INT_OR_STRING);
    assert_eq!(int_or_string["format"], "int-or-string");
    assert_eq!(int_or_string["x-kubernetes-int-or-string"], true);
    assert_eq!(
        int_or_string["oneOf"],
        serde_json::json!([{ "type": "integer" }, { "type": "string" }])
    );
    let time = schema(core(), "io.k8s.apimachinery.pkg.apis.meta.v1.Time");
    assert_eq!(
        (time["type"].as_str(), time["format"].as_str()),
        (Some("string"), Some("date-time"))
    );

    let defs = &v2_document_ref()["definitions"];
    assert_eq!(defs[schemas::QUANTITY]["type"], "string");
    assert_eq!(defs[schemas::INT_OR_STRING]["type"], "string");
    assert_eq!(defs[schemas::INT_OR_STRING]["format"], "int-or-string");
}

#[test]
fn schemas_keep_field_descriptions() {
    let mut missing = Vec::new();
    for (name, def) in core()["components"]["schemas"].as_object().unwrap() {
        if def.get("description").is_none() && name != schemas::PATCH {
            missing.push(name.clone());
        }
        for (field, property) in def["properties"].as_object().into_iter().flatten() {
            if property.get("description").is_none() {
                missing.push(format!("{name}.{field}"));
            }
        }
    }
    // A handful of Kubernetes fields have no doc comment; the rest must keep theirs.
    assert!(missing.len() < 10, "{missing:?}");
}

/// PATCH operations of a kind, as kubectl's query-parameter verifier finds them.
fn patch_operations<'a>(doc: &'a Value, group: &str, kind: &str) -> Vec<(&'a str, &'a Value)> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(path, item)| {
            let op = item.get("patch")?;
            let gvk = &op["x-kubernetes-group-version-kind"];
            (gvk["group"] == group && gvk["kind"] == kind).then_some((path.as_str(), op))
        })
        .collect()
}

#[test]
fn every_patch_operation_accepts_field_validation() {
    // kubectl checks the first PATCH operation it meets for the kind (map order is random in
    // Go), so every one of them must list the parameter at operation level.
    for (gv, group, kind) in [
        ("api/v1", "", "Pod"),
        ("api/v1", "", "Namespace"),
        ("api/v1", "", "ConfigMap"),
        ("api/v1", "", "ReplicationController"),
        ("api/v1", "autoscaling", "Scale"),
        (
            "apis/coordination.k8s.io/v1",
            "coordination.k8s.io",
            "Lease",
        ),
    ] {
        let doc = v3_document_ref(gv).unwrap();
        let ops = patch_operations(doc, group, kind);
        assert!(!ops.is_empty(), "{kind}");
        for (path, op) in ops {
            let names: Vec<&str> = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            for expected in ["fieldValidation", "dryRun", "fieldManager", "force"] {
                assert!(names.contains(&expected), "{path}: {expected}");
            }
            let content = op["requestBody"]["content"].as_object().unwrap();
            for media in [
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
                "application/apply-patch+yaml",
            ] {
                assert_eq!(
                    content[media]["schema"]["$ref"],
                    "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
                    "{path} {media}"
                );
            }
            assert_eq!(op["x-kubernetes-action"], "patch");
        }
    }
}

#[test]
fn pod_paths_have_kubernetes_operations() {
    let paths = &core()["paths"];
    let collection = &paths["/api/v1/namespaces/{namespace}/pods"];
    let list = &collection["get"];
    assert_eq!(list["x-kubernetes-action"], "list");
    assert_eq!(list["operationId"], "listCoreV1NamespacedPod");
    let list_params: Vec<&str> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for expected in [
        "labelSelector",
        "fieldSelector",
        "limit",
        "continue",
        "resourceVersion",
        "watch",
        "timeoutSeconds",
        "allowWatchBookmarks",
    ] {
        assert!(list_params.contains(&expected), "{expected}");
    }
    assert_eq!(
        list["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.PodList"
    );
    let create = &collection["post"];
    assert_eq!(create["x-kubernetes-action"], "post");
    assert_eq!(
        create["requestBody"]["content"]["*/*"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.Pod"
    );
    let create_params: Vec<&str> = create["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(create_params, ["dryRun", "fieldManager", "fieldValidation"]);
    assert_eq!(
        collection["delete"]["x-kubernetes-action"],
        "deletecollection"
    );
    assert_eq!(collection["parameters"][0]["name"], "namespace");
    assert_eq!(collection["parameters"][0]["in"], "path");

    let object = &paths["/api/v1/namespaces/{namespace}/pods/{name}"];
    for (method, action) in [
        ("get", "get"),
        ("put", "put"),
        ("patch", "patch"),
        ("delete", "delete"),
    ] {
        assert_eq!(object[method]["x-kubernetes-action"], action);
        assert_eq!(
            object[method]["x-kubernetes-group-version-kind"],
            serde_json::json!({"group": "", "kind": "Pod", "version": "v1"})
        );
    }
    assert_eq!(
        paths["/api/v1/pods"]["get"]["operationId"],
        "listCoreV1PodForAllNamespaces"
    );
    assert_eq!(
        paths["/api/v1/watch/namespaces/{namespace}/pods/{name}"]["get"]["x-kubernetes-action"],
        "watch"
    );
    assert_eq!(
        paths["/api/v1/watch/pods"]["get"]["x-kubernetes-action"],
        "watchlist"
    );
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/pods/{name}/status"]["patch"]["operationId"],
        "patchCoreV1NamespacedPodStatus"
    );
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"]["x-kubernetes-group-version-kind"]
            ["kind"],
        "Binding"
    );
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/pods/{name}/exec"]["post"]["x-kubernetes-action"],
        "connect"
    );
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/bindings"]["post"]["operationId"],
        "createCoreV1NamespacedBinding"
    );
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/replicationcontrollers/{name}/scale"]["patch"]["x-kubernetes-group-version-kind"],
        serde_json::json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
    );
    // Cluster-scoped kinds have no namespace in their paths and no all-namespaces list.
    assert_eq!(
        paths["/api/v1/nodes/{name}"]["get"]["operationId"],
        "readCoreV1Node"
    );
    assert!(paths.get("/api/v1/namespaces/{namespace}/nodes").is_none());
    // Namespaces cannot be deleted as a collection.
    assert!(paths["/api/v1/namespaces"].get("delete").is_none());
    assert_eq!(
        paths["/api/v1/namespaces/{name}/finalize"]["put"]["operationId"],
        "replaceCoreV1NamespaceFinalize"
    );
    assert_eq!(
        paths["/api/v1/"]["get"]["operationId"],
        "getCoreV1APIResources"
    );
}

#[test]
fn explain_finds_kinds_from_resource_paths() {
    // `kubectl explain` reads the GVK from the collection or object path of the resource, then
    // looks for a schema whose GVK list contains exactly that object.
    for r in resources::RESOURCES
        .iter()
        .filter(|r| r.has(resources::Verb::Get))
    {
        let gv = resources::GroupVersion {
            group: r.group,
            version: r.version,
        };
        let doc = v3_document_ref(&gv.path()).unwrap();
        let prefix = if r.group.is_empty() {
            format!("/api/{}", r.version)
        } else {
            format!("/apis/{}/{}", r.group, r.version)
        };
        let path = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        let gvk = &doc["paths"][&path]["get"]["x-kubernetes-group-version-kind"];
        let found = doc["components"]["schemas"]
            .as_object()
            .unwrap()
            .values()
            .filter(|s| {
                s["x-kubernetes-group-version-kind"]
                    .as_array()
                    .is_some_and(|l| l.contains(gvk))
            })
            .count();
        assert_eq!(found, 1, "{path}");
    }
}

#[test]
fn v2_document_is_swagger_with_all_groups() {
    let v2 = v2_document_ref();
    assert_eq!(v2["swagger"], "2.0");
    let paths = v2["paths"].as_object().unwrap();
    assert!(paths.contains_key("/api/v1/namespaces/{namespace}/pods/{name}"));
    assert!(
        paths.contains_key("/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")
    );
    let patch = &paths["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
    assert_eq!(patch["consumes"].as_array().unwrap().len(), 4);
    let body = &patch["parameters"][0];
    assert_eq!(
        (body["in"].as_str(), body["name"].as_str()),
        (Some("body"), Some("body"))
    );
    assert_eq!(
        body["schema"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
    );
    assert!(
        patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["type"] == "string")
    );
    let defs = v2["definitions"].as_object().unwrap();
    assert_eq!(
        defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]["x-kubernetes-patch-merge-key"],
        "name"
    );
    assert_eq!(
        defs["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"]["x-kubernetes-group-version-kind"].as_array().unwrap().len(),
        GROUP_VERSIONS.len()
    );
}

#[test]
fn kinds_resolve_to_definitions() {
    assert_eq!(
        definition_of_kind("", "Pod"),
        Some("io.k8s.api.core.v1.Pod")
    );
    assert_eq!(
        definition_of_kind("autoscaling", "Scale"),
        Some("io.k8s.api.autoscaling.v1.Scale")
    );
    assert_eq!(
        definition_of_kind("coordination.k8s.io", "Lease"),
        Some("io.k8s.api.coordination.v1.Lease")
    );
    assert_eq!(definition_of_kind("apps", "Deployment"), None);
}
