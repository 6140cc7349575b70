#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use super::*;

// ---------------------------------------------------------------------------------------------
// Strategic merge patch on a small schema, to pin down the algorithm itself (the list-order
// cases follow the behaviour of apimachinery's strategicpatch on its own test type).

fn test_definitions() -> &'static Map<String, Value> {
    static DEFS: OnceLock<Map<String, Value>> = OnceLock::new();
    DEFS.get_or_init(|| {
        let item = json!({
            "type": "object",
            "properties": {
                "name": { "type": "string" },
                "value": { "type": "string" },
                "other": { "type": "string" },
                "mergingList": {
                    "type": "array",
                    "items": { "$ref": "#/definitions/test.Item" },
                    "x-kubernetes-patch-strategy": "merge",
                    "x-kubernetes-patch-merge-key": "name",
                },
                "nonMergingList": { "type": "array", "items": { "$ref": "#/definitions/test.Item" } },
                "mergingIntList": {
                    "type": "array",
                    "items": { "type": "integer" },
                    "x-kubernetes-patch-strategy": "merge",
                },
                "nonMergingIntList": { "type": "array", "items": { "type": "integer" } },
                "mergeItemPtr": { "$ref": "#/definitions/test.Item" },
                "replacingItem": { "$ref": "#/definitions/test.Item", "x-kubernetes-patch-strategy": "replace" },
                "retainKeysMap": { "$ref": "#/definitions/test.Item", "x-kubernetes-patch-strategy": "retainKeys" },
                "simpleMap": { "type": "object", "additionalProperties": { "type": "string" } },
            },
        });
        let mut defs = Map::new();
        defs.insert("test.Item".to_owned(), item);
        defs
    })
}

fn smp_test(current: Value, patch: Value) -> Result<Value, PatchError> {
    strategic::apply_with_definitions(test_definitions(), "test.Item", &current, &patch)
}

/// List-order outcomes of apimachinery's strategic merge patch for 3-way patches (as kubectl
/// apply computes them) applied to live lists with extra, server-only elements.
#[test]
fn smp_ordering_matches_kubernetes() {
    let item = |name: &str| json!({"name": name});
    let with = |name: &str, field: &str, value: &str| json!({"name": name, field: value});
    let order = |names: &[&str]| Value::Array(names.iter().map(|n| item(n)).collect());
    let cases = [
        // Scalars: new values take their place in the order; server-only ones stay near theirs.
        (
            json!({"mergingIntList": [1, 2, 4]}),
            json!({"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3]}),
            json!({"mergingIntList": [1, 2, 3, 4]}),
        ),
        (
            json!({"mergingIntList": [1, 4, 2]}),
            json!({"$setElementOrder/mergingIntList": [3, 1, 2], "mergingIntList": [3]}),
            json!({"mergingIntList": [3, 1, 4, 2]}),
        ),
        (
            json!({"mergingIntList": [1, 2, 3]}),
            json!({"$setElementOrder/mergingIntList": [2, 1], "$deleteFromPrimitiveList/mergingIntList": [3]}),
            json!({"mergingIntList": [2, 1]}),
        ),
        // Maps.
        (
            json!({"mergingList": [with("1", "other", "a"), json!({"name": "2", "value": "2", "other": "b"})]}),
            json!({
                "$setElementOrder/mergingList": order(&["1", "4", "2", "3"]),
                "mergingList": [with("4", "value", "4"), with("3", "value", "3")],
            }),
            json!({"mergingList": [
                with("1", "other", "a"),
                with("4", "value", "4"),
                json!({"name": "2", "value": "2", "other": "b"}),
                with("3", "value", "3"),
            ]}),
        ),
        (
            json!({"mergingList": [with("1", "other", "a"), with("2", "other", "b"), with("3", "value", "3")]}),
            json!({
                "$setElementOrder/mergingList": order(&["2", "1"]),
                "mergingList": [{"name": "3", "$patch": "delete"}],
            }),
            json!({"mergingList": [with("2", "other", "b"), with("1", "other", "a")]}),
        ),
        (
            json!({"mergingList": [with("1", "other", "a"), with("2", "other", "b"), with("3", "value", "3")]}),
            json!({
                "$setElementOrder/mergingList": order(&["2", "3", "1"]),
                "mergingList": [with("3", "value", "x")],
            }),
            json!({"mergingList": [with("2", "other", "b"), with("3", "value", "x"), with("1", "other", "a")]}),
        ),
        (
            json!({"mergingList": [with("1", "other", "a"), with("2", "other", "b"), with("3", "value", "3")]}),
            json!({
                "$setElementOrder/mergingList": order(&["4", "2", "1"]),
                "mergingList": [with("4", "value", "4"), {"name": "3", "$patch": "delete"}],
            }),
            json!({"mergingList": [with("4", "value", "4"), with("2", "other", "b"), with("1", "other", "a")]}),
        ),
        (
            json!({"mergingList": [with("1", "other", "a"), item("2"), item("9"), item("3"), item("4")]}),
            json!({"$setElementOrder/mergingList": order(&["2", "1", "4", "3"])}),
            json!({"mergingList": [item("2"), with("1", "other", "a"), item("9"), item("4"), item("3")]}),
        ),
        (
            json!({"mergingList": [item("1"), item("2"), item("7"), item("9"), item("8"), item("3"), item("4")]}),
            json!({"$setElementOrder/mergingList": order(&["2", "1", "4", "3"])}),
            json!({"mergingList": [item("2"), item("1"), item("7"), item("9"), item("8"), item("4"), item("3")]}),
        ),
    ];
    for (current, patch, expected) in cases {
        assert_eq!(
            smp_test(current.clone(), patch.clone()).unwrap(),
            expected,
            "{current} + {patch}"
        );
    }
}

#[test]
fn smp_adds_and_deletes_with_element_order() {
    // Apply of [2, 3] over a last-applied [1, 2]: 1 is deleted, 3 added; 4 exists only live.
    let current = json!({"mergingList": [{"name": "1"}, {"name": "2", "other": "b"}, {"name": "4", "other": "c"}]});
    let patch = json!({
        "$setElementOrder/mergingList": [{"name": "2"}, {"name": "3"}],
        "mergingList": [{"name": "3"}, {"name": "1", "$patch": "delete"}],
    });
    assert_eq!(
        smp_test(current, patch).unwrap(),
        json!({"mergingList": [{"name": "2", "other": "b"}, {"name": "4", "other": "c"}, {"name": "3"}]})
    );
}

#[test]
fn smp_orders_new_elements_by_set_element_order() {
    let current = json!({"mergingList": [{"name": "1", "other": "a"}, {"name": "2", "value": "2", "other": "b"}]});
    let patch = json!({
        "$setElementOrder/mergingList": [{"name": "4"}, {"name": "1"}, {"name": "2"}, {"name": "3"}],
        "mergingList": [{"name": "4", "value": "4"}, {"name": "3", "value": "3"}],
    });
    assert_eq!(
        smp_test(current, patch).unwrap(),
        json!({"mergingList": [
            {"name": "4", "value": "4"},
            {"name": "1", "other": "a"},
            {"name": "2", "value": "2", "other": "b"},
            {"name": "3", "value": "3"},
        ]})
    );
}

#[test]
fn smp_merges_elements_by_key_and_keeps_live_fields() {
    let current = json!({"mergingList": [{"name": "1", "other": "a"}, {"name": "2", "value": "3", "other": "b"}]});
    let patch = json!({
        "$setElementOrder/mergingList": [{"name": "1"}, {"name": "2"}, {"name": "3"}],
        "mergingList": [{"name": "2", "value": "2"}, {"name": "3", "value": "3"}],
    });
    assert_eq!(
        smp_test(current, patch).unwrap(),
        json!({"mergingList": [
            {"name": "1", "other": "a"},
            {"name": "2", "value": "2", "other": "b"},
            {"name": "3", "value": "3"},
        ]})
    );
}

#[test]
fn smp_deleting_a_missing_element_is_harmless() {
    let current = json!({"mergingList": [{"name": "3", "other": "a"}]});
    let patch = json!({
        "$setElementOrder/mergingList": [{"name": "2"}],
        "mergingList": [{"name": "2"}, {"name": "1", "$patch": "delete"}],
    });
    assert_eq!(
        smp_test(current, patch).unwrap(),
        json!({"mergingList": [{"name": "2"}, {"name": "3", "other": "a"}]})
    );
}

#[test]
fn smp_new_elements_without_order_go_first() {
    // Without $setElementOrder (hand-written patches), new elements precede the live ones.
    let current = json!({"mergingList": [{"name": "a"}, {"name": "b"}], "mergingIntList": [1, 2]});
    let patch = json!({"mergingList": [{"name": "c"}], "mergingIntList": [3, 2]});
    assert_eq!(
        smp_test(current, patch).unwrap(),
        json!({"mergingList": [{"name": "c"}, {"name": "a"}, {"name": "b"}], "mergingIntList": [3, 1, 2]})
    );
}

#[test]
fn smp_primitive_lists_merge_and_delete() {
    let current = json!({"mergingIntList": [1, 2, 3, 3, 4]});
    let patch = json!({
        "$setElementOrder/mergingIntList": [1, 2],
        "$deleteFromPrimitiveList/mergingIntList": [3],
    });
    assert_eq!(
        smp_test(current, patch).unwrap(),
        json!({"mergingIntList": [1, 2, 4]})
    );

    let current = json!({"mergingIntList": [1, 2, 3, 4]});
    let patch = json!({
        "$setElementOrder/mergingIntList": [1, 2, 4],
        "$deleteFromPrimitiveList/mergingIntList": [3],
        "mergingIntList": [4],
    });
    assert_eq!(
        smp_test(current, patch).unwrap(),
        json!({"mergingIntList": [1, 2, 4]})
    );

    // Deleting from a list the object does not have is a no-op.
    let patch = json!({"$deleteFromPrimitiveList/mergingIntList": [3]});
    assert_eq!(
        smp_test(json!({"name": "x"}), patch).unwrap(),
        json!({"name": "x"})
    );
}

#[test]
fn smp_lists_without_strategy_are_replaced() {
    let current =
        json!({"nonMergingList": [{"name": "1"}, {"name": "2"}], "nonMergingIntList": [1, 2]});
    let patch = json!({"nonMergingList": [{"name": "3"}], "nonMergingIntList": [5]});
    assert_eq!(
        smp_test(current, patch).unwrap(),
        json!({"nonMergingList": [{"name": "3"}], "nonMergingIntList": [5]})
    );
}

#[test]
fn smp_patch_directives_in_lists_and_maps() {
    // `$patch: replace` in a list makes the rest of the patch the list.
    let current = json!({"mergingList": [{"name": "1", "value": "a"}, {"name": "2"}]});
    let patch = json!({"mergingList": [{"name": "3"}, {"$patch": "replace"}]});
    assert_eq!(
        smp_test(current, patch).unwrap(),
        json!({"mergingList": [{"name": "3"}]})
    );

    // `$patch: replace` in a map replaces it; `$patch: delete` empties it.
    let current = json!({"mergeItemPtr": {"name": "x", "value": "1"}, "simpleMap": {"a": "1"}});
    let patch = json!({"mergeItemPtr": {"$patch": "replace", "other": "o"}, "simpleMap": {"$patch": "delete"}});
    assert_eq!(
        smp_test(current, patch).unwrap(),
        json!({"mergeItemPtr": {"other": "o"}, "simpleMap": {}})
    );

    // A directive for a field the object lacks adds nothing.
    let patch = json!({"mergeItemPtr": {"$patch": "delete"}, "mergingList": [{"name": "x", "$patch": "delete"}]});
    assert_eq!(
        smp_test(json!({"name": "n"}), patch).unwrap(),
        json!({"name": "n", "mergingList": []})
    );
}

#[test]
fn smp_maps_merge_and_null_deletes() {
    let current = json!({"simpleMap": {"a": "1", "b": "2"}, "mergeItemPtr": {"name": "x", "value": "v"}, "value": "keep"});
    let patch = json!({"simpleMap": {"a": null, "c": "3"}, "mergeItemPtr": {"value": null, "other": "o"}, "other": null});
    assert_eq!(
        smp_test(current, patch).unwrap(),
        json!({"simpleMap": {"b": "2", "c": "3"}, "mergeItemPtr": {"name": "x", "other": "o"}, "value": "keep"})
    );
    // Nulls inside a value that is added whole have nothing to delete and are dropped.
    let patch = json!({"mergeItemPtr": {"name": "y", "value": null}});
    assert_eq!(
        smp_test(json!({}), patch).unwrap(),
        json!({"mergeItemPtr": {"name": "y"}})
    );
}

#[test]
fn smp_replace_strategy_and_retain_keys() {
    let current = json!({"replacingItem": {"name": "a", "value": "1"}});
    let patch = json!({"replacingItem": {"other": "2"}});
    assert_eq!(
        smp_test(current, patch).unwrap(),
        json!({"replacingItem": {"other": "2"}})
    );

    let current = json!({"retainKeysMap": {"name": "a", "value": "1", "other": "x"}});
    let patch = json!({"retainKeysMap": {"$retainKeys": ["name", "other"], "other": "y"}});
    assert_eq!(
        smp_test(current, patch).unwrap(),
        json!({"retainKeysMap": {"name": "a", "other": "y"}})
    );

    // Setting a field the directive does not retain is a malformed patch.
    let current = json!({"retainKeysMap": {"name": "a"}});
    let patch = json!({"retainKeysMap": {"$retainKeys": ["name"], "value": "v"}});
    let err = smp_test(current, patch).unwrap_err();
    assert_eq!(
        err,
        PatchError::BadRequest("invalid patch format of retainKeys".to_owned())
    );
    assert_eq!(err.code(), 400);
}

#[test]
fn smp_errors_are_kubernetes_errors() {
    let err = smp_test(
        json!({"mergingList": [{"name": "1"}]}),
        json!({"mergingList": [{"value": "x"}]}),
    )
    .unwrap_err();
    assert_eq!(
        err,
        PatchError::Internal(
            "map: map[value:x] does not contain declared merge key: name".to_owned()
        )
    );
    assert_eq!((err.code(), err.reason()), (500, None));

    let err = smp_test(
        json!({"mergingList": [{"name": "1"}]}),
        json!({"mergingList": [{"$patch": "merge"}]}),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "merging lists cannot yet be specified in the patch"
    );

    let err = smp_test(
        json!({"mergeItemPtr": {"name": "1"}}),
        json!({"mergeItemPtr": {"$patch": "merge", "a": 1}}),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown patch type: merge in map: map[$patch:merge a:1]"
    );

    let err = smp_test(
        json!({"mergingIntList": [[1]]}),
        json!({"mergingIntList": [[2]]}),
    )
    .unwrap_err();
    assert_eq!(
        err,
        PatchError::Rejected("lists of lists are not supported".to_owned())
    );
    assert_eq!(err.code(), 422);

    let err = smp_test(
        json!({"mergingIntList": [1]}),
        json!({"mergingIntList": ["a"]}),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "list element types are not identical: [[1] [a]]"
    );

    let err = smp_test(json!({}), json!({"$setElementOrder/mergingList": "x"})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected a []interface {}, but received a string"
    );

    let err = smp_test(json!({}), json!({"$retainKeys": "name"})).unwrap_err();
    assert_eq!(err.to_string(), "invalid patch format of retainKeys");

    let err = smp_test(json!({}), json!({"$deleteFromPrimitiveListX": [1]})).unwrap_err();
    assert_eq!(
        err,
        PatchError::BadRequest("invalid patch format of primitive list".to_owned())
    );

    // The patch list must follow the order the directive gives.
    let current = json!({"mergingList": [{"name": "1"}, {"name": "2"}]});
    let patch = json!({
        "$setElementOrder/mergingList": [{"name": "1"}, {"name": "2"}],
        "mergingList": [{"name": "2", "value": "x"}, {"name": "1", "value": "y"}],
    });
    let err = smp_test(current, patch).unwrap_err();
    assert!(
        err.to_string().starts_with("the order in patch list:\n"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch on served kinds, with the patches kubectl sends.

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web"},
            "annotations": {"team": "a"},
            "finalizers": ["example.com/a"],
        },
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "nginx:1.24",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                },
                {"name": "sidecar", "image": "busybox", "args": ["sleep", "1d"]},
            ],
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    })
}

fn smp(kind: (&str, &str), current: &Value, patch: Value) -> Value {
    strategic_merge_patch(kind, current, &patch).unwrap()
}

const POD: (&str, &str) = ("", "Pod");

#[test]
fn kubectl_label_and_annotate() {
    let patched = smp(
        POD,
        &pod(),
        json!({"metadata": {"labels": {"tier": "frontend"}}}),
    );
    assert_eq!(
        patched["metadata"]["labels"],
        json!({"app": "web", "tier": "frontend"})
    );

    // `kubectl annotate pod web team-` and `kubectl label pod web app-`.
    let patched = smp(
        POD,
        &pod(),
        json!({"metadata": {"annotations": {"team": null}, "labels": {"app": null}}}),
    );
    assert_eq!(patched["metadata"]["annotations"], json!({}));
    assert_eq!(patched["metadata"]["labels"], json!({}));
    assert_eq!(patched["spec"], pod()["spec"]);
}

#[test]
fn kubectl_set_image_changes_one_container() {
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [{"image": "nginx:1.25", "name": "web"}],
    }});
    let patched = smp(POD, &pod(), patch);
    let mut expected = pod();
    expected["spec"]["containers"][0]["image"] = json!("nginx:1.25");
    assert_eq!(patched, expected);
}

fn replication_controller() -> Value {
    let mut template = pod();
    template["metadata"] = json!({"labels": {"app": "web"}});
    json!({
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {
            "name": "web",
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"v1\",\"kind\":\"ReplicationController\"}\n",
            },
        },
        "spec": {"replicas": 2, "selector": {"app": "web"}, "template": template},
        "status": {"replicas": 2},
    })
}

#[test]
fn kubectl_apply_three_way_patch_changes_image() {
    // `kubectl apply` after editing the manifest's image: the 3-way patch carries the new
    // last-applied configuration and only the changed container field.
    let applied = "{\"apiVersion\":\"v1\",\"kind\":\"ReplicationController\",\"spec\":{}}\n";
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": applied}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
            "containers": [{"image": "nginx:1.25", "name": "web"}],
        }}},
    });
    let patched = smp(
        ("", "ReplicationController"),
        &replication_controller(),
        patch,
    );
    let mut expected = replication_controller();
    expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        json!(applied);
    expected["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.25");
    assert_eq!(patched, expected);
}

#[test]
fn kubectl_edit_removes_an_env_var() {
    // Captured from kubectl 1.32 `edit rc web` after deleting env B and bumping the sidecar.
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [
            {"$setElementOrder/env": [{"name": "A"}], "env": [{"$patch": "delete", "name": "B"}], "name": "web"},
            {"image": "busybox:1.36", "name": "sidecar"},
        ],
    }}}});
    let patched = smp(("", "ReplicationController"), &applied_rc(), patch);
    let mut expected = applied_rc();
    expected["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "A", "value": "1"}]);
    expected["spec"]["template"]["spec"]["containers"][1]["image"] = json!("busybox:1.36");
    assert_eq!(patched, expected);
}

#[test]
fn kubectl_apply_replaces_a_container_keeping_order() {
    // Manifest went from [web, sidecar] to [web, logger].
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "logger"}],
        "containers": [{"image": "fluentd", "name": "logger"}, {"$patch": "delete", "name": "sidecar"}],
    }});
    let patched = smp(POD, &pod(), patch);
    let names: Vec<&str> = patched["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "logger"]);
    assert_eq!(
        patched["spec"]["containers"][1],
        json!({"image": "fluentd", "name": "logger"})
    );
}

#[test]
fn kubectl_apply_reorders_containers() {
    let patch =
        json!({"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}]}});
    let patched = smp(POD, &pod(), patch);
    assert_eq!(patched["spec"]["containers"][0]["name"], "sidecar");
    assert_eq!(patched["spec"]["containers"][1]["name"], "web");
    assert_eq!(
        patched["spec"]["containers"][1]["env"],
        pod()["spec"]["containers"][0]["env"]
    );
}

/// The live object of the captured kubectl patches below (`rc1` as created by `kubectl apply`).
fn applied_rc() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": "web", "namespace": "default", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {
            "replicas": 2,
            "selector": {"app": "web"},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.24",
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "ports": [{"containerPort": 80}],
                        },
                        {"name": "sidecar", "image": "busybox", "args": ["sleep", "1d"]},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    })
}

#[test]
fn captured_kubectl_apply_patch_removes_env_swaps_container_and_volume_source() {
    // Sent by kubectl 1.32 `apply` for a manifest that dropped env B, replaced the sidecar by
    // a logger and turned the emptyDir volume into a hostPath (annotation left out).
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "logger"}],
        "$setElementOrder/volumes": [{"name": "data"}],
        "containers": [
            {"$setElementOrder/env": [{"name": "A"}], "env": [{"$patch": "delete", "name": "B"}], "name": "web"},
            {"image": "fluentd", "name": "logger"},
            {"$patch": "delete", "name": "sidecar"},
        ],
        "volumes": [{"$retainKeys": ["hostPath", "name"], "emptyDir": null, "hostPath": {"path": "/srv"}, "name": "data"}],
    }}}});
    let patched = smp(("", "ReplicationController"), &applied_rc(), patch);
    assert_eq!(
        patched["spec"]["template"]["spec"],
        json!({
            "containers": [
                {"name": "web", "image": "nginx:1.24", "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 80}]},
                {"image": "fluentd", "name": "logger"},
            ],
            "volumes": [{"name": "data", "hostPath": {"path": "/srv"}}],
        })
    );
}

#[test]
fn captured_kubectl_set_image_and_scale_patches() {
    // kubectl 1.32 `set image rc/web web=nginx:1.26` (strategic) ...
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [{"image": "nginx:1.26", "name": "web"}],
    }}}});
    let patched = smp(("", "ReplicationController"), &applied_rc(), patch);
    let mut expected = applied_rc();
    expected["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
    assert_eq!(patched, expected);
    // ... `label`/`annotate` (merge patches) and `scale` (merge patch on the scale subresource).
    let labeled = json_merge_patch(
        &applied_rc(),
        &json!({"metadata": {"labels": {"tier": "frontend"}}}),
    );
    assert_eq!(labeled["metadata"]["labels"], json!({"tier": "frontend"}));
    let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"}, "spec": {"replicas": 2}});
    assert_eq!(
        json_merge_patch(&scale, &json!({"spec": {"replicas": 3}}))["spec"]["replicas"],
        3
    );
}

#[test]
fn container_fields_merge_by_their_keys() {
    let patch = json!({"spec": {"containers": [{
        "name": "web",
        "ports": [{"containerPort": 8080, "name": "alt"}],
        "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
        "volumeMounts": [{"mountPath": "/data", "name": "data"}],
    }]}});
    let patched = smp(POD, &pod(), patch);
    let web = &patched["spec"]["containers"][0];
    assert_eq!(
        web["ports"],
        json!([{"containerPort": 8080, "name": "alt"}, {"containerPort": 80, "protocol": "TCP"}])
    );
    assert_eq!(
        web["env"],
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}])
    );
    assert_eq!(
        web["volumeMounts"],
        json!([{"mountPath": "/data", "name": "data"}])
    );
    // Lists without a strategy are replaced wholesale.
    let patched = smp(
        POD,
        &pod(),
        json!({"spec": {"tolerations": [{"key": "other", "operator": "Exists"}]}}),
    );
    assert_eq!(
        patched["spec"]["tolerations"],
        json!([{"key": "other", "operator": "Exists"}])
    );
    let patched = smp(
        POD,
        &pod(),
        json!({"spec": {"containers": [{"name": "sidecar", "args": ["sleep", "2d"]}]}}),
    );
    assert_eq!(
        patched["spec"]["containers"][1]["args"],
        json!(["sleep", "2d"])
    );
}

#[test]
fn volume_source_switch_uses_retain_keys() {
    // kubectl apply changing a volume from emptyDir to hostPath.
    let patch = json!({"spec": {
        "$setElementOrder/volumes": [{"name": "data"}],
        "volumes": [{"$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/srv"}, "name": "data"}],
    }});
    let patched = smp(POD, &pod(), patch);
    assert_eq!(
        patched["spec"]["volumes"],
        json!([{"name": "data", "hostPath": {"path": "/srv"}}])
    );
}

#[test]
fn finalizers_merge_as_a_set() {
    let patched = smp(
        POD,
        &pod(),
        json!({"metadata": {"finalizers": ["example.com/b", "example.com/a"]}}),
    );
    assert_eq!(
        patched["metadata"]["finalizers"],
        json!(["example.com/b", "example.com/a"])
    );
    let patched = smp(
        POD,
        &pod(),
        json!({"metadata": {"finalizers": ["example.com/b"]}}),
    );
    assert_eq!(
        patched["metadata"]["finalizers"],
        json!(["example.com/b", "example.com/a"])
    );
    let patched = smp(
        POD,
        &pod(),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/a"]}}),
    );
    assert_eq!(patched["metadata"]["finalizers"], json!([]));
    let patched = smp(
        POD,
        &pod(),
        json!({"metadata": {
            "$setElementOrder/finalizers": ["example.com/a", "example.com/c"],
            "finalizers": ["example.com/c"],
        }}),
    );
    assert_eq!(
        patched["metadata"]["finalizers"],
        json!(["example.com/a", "example.com/c"])
    );
}

#[test]
fn owner_references_merge_by_uid() {
    let mut current = pod();
    current["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "v1", "kind": "ReplicationController", "name": "rc", "uid": "u1"}]);
    let patch = json!({"metadata": {"ownerReferences": [
        {"apiVersion": "v1", "kind": "ReplicationController", "name": "rc", "uid": "u1", "controller": true},
        {"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "u2"},
    ]}});
    let patched = smp(POD, &current, patch);
    let refs = patched["metadata"]["ownerReferences"].as_array().unwrap();
    assert_eq!(refs.len(), 2);
    assert_eq!(
        refs.iter().find(|r| r["uid"] == "u1").unwrap()["controller"],
        true
    );
}

#[test]
fn status_conditions_merge_by_type() {
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1"},
        "status": {"conditions": [
            {"type": "Ready", "status": "False", "reason": "Starting"},
            {"type": "MemoryPressure", "status": "False"},
        ]},
    });
    let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}});
    let patched = smp(("", "Node"), &node, patch);
    assert_eq!(
        patched["status"]["conditions"],
        json!([
            {"type": "Ready", "status": "True", "reason": "KubeletReady"},
            {"type": "MemoryPressure", "status": "False"},
        ])
    );
}

#[test]
fn service_ports_merge_by_port() {
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "web"}},
    });
    let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": "http"}, {"port": 443}], "selector": {"tier": "fe"}}});
    let patched = smp(("", "Service"), &service, patch);
    assert_eq!(
        patched["spec"]["ports"],
        json!([{"port": 80, "targetPort": "http"}, {"port": 443}])
    );
    assert_eq!(
        patched["spec"]["selector"],
        json!({"app": "web", "tier": "fe"})
    );
}

#[test]
fn other_groups_and_subresources() {
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "n1", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40},
    });
    let patched = smp(
        ("coordination.k8s.io", "Lease"),
        &lease,
        json!({"spec": {"renewTime": "2024-01-01T00:00:00.000000Z"}}),
    );
    assert_eq!(patched["spec"]["holderIdentity"], "n1");
    assert_eq!(patched["spec"]["renewTime"], "2024-01-01T00:00:00.000000Z");

    let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"}, "spec": {"replicas": 2}});
    let patched = smp(
        ("autoscaling", "Scale"),
        &scale,
        json!({"spec": {"replicas": 5}}),
    );
    assert_eq!(patched["spec"]["replicas"], 5);
}

#[test]
fn smp_request_errors() {
    let err = strategic_merge_patch(("apps", "Deployment"), &json!({}), &json!({})).unwrap_err();
    assert_eq!(err, PatchError::StrategicMergeUnsupported);
    assert_eq!(
        (err.code(), err.reason()),
        (415, Some("UnsupportedMediaType"))
    );

    let err = strategic_merge_patch(POD, &pod(), &json!([{"op": "add"}])).unwrap_err();
    assert_eq!(
        err,
        PatchError::BadRequest(
            "json: cannot unmarshal array into Go value of type map[string]interface {}".to_owned()
        )
    );
    assert_eq!(err.status_message(), err.to_string());

    // A `null` patch changes nothing.
    assert_eq!(
        strategic_merge_patch(POD, &pod(), &Value::Null).unwrap(),
        pod()
    );
}

// ---------------------------------------------------------------------------------------------
// JSON merge patch.

#[test]
fn merge_patch_follows_rfc_7386() {
    let target = json!({"a": "b", "c": {"d": "e", "f": "g"}, "list": [1, 2]});
    let patch = json!({"a": "z", "c": {"f": null}, "list": [3], "new": {"x": null, "y": 1}});
    assert_eq!(
        json_merge_patch(&target, &patch),
        json!({"a": "z", "c": {"d": "e"}, "list": [3], "new": {"y": 1}})
    );
    assert_eq!(
        json_merge_patch(&json!({"a": "b"}), &json!(["c"])),
        json!(["c"])
    );
    assert_eq!(
        json_merge_patch(&json!(["a"]), &json!({"a": "c"})),
        json!({"a": "c"})
    );
    // `kubectl scale` sends this to the scale subresource.
    let scale = json!({"spec": {"replicas": 1}, "status": {"replicas": 1}});
    assert_eq!(
        json_merge_patch(&scale, &json!({"spec": {"replicas": 3}})),
        json!({"spec": {"replicas": 3}, "status": {"replicas": 1}})
    );
}

// ---------------------------------------------------------------------------------------------
// JSON patch.

fn jp(target: &Value, patch: Value) -> Result<Value, PatchError> {
    json_patch(target, &patch)
}

#[test]
fn json_patch_applies_operations_in_order() {
    let doc = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"items": [1, 2, 3]}});
    let patched = jp(
        &doc,
        json!([
            {"op": "test", "path": "/metadata/labels/a", "value": "1"},
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "replace", "path": "/metadata/labels/a", "value": "x"},
            {"op": "add", "path": "/spec/items/-", "value": 4},
            {"op": "add", "path": "/spec/items/0", "value": 0},
            {"op": "remove", "path": "/spec/items/1"},
            {"op": "copy", "from": "/metadata/labels", "path": "/spec/labels"},
            {"op": "move", "from": "/metadata/labels/b", "path": "/metadata/labels/c"},
        ]),
    )
    .unwrap();
    assert_eq!(
        patched,
        json!({
            "metadata": {"labels": {"a": "x", "c": "2"}},
            "spec": {"items": [0, 2, 3, 4], "labels": {"a": "x", "b": "2"}},
        })
    );
}

#[test]
fn json_patch_escapes_and_library_quirks() {
    let doc = json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "a~b": "x"}}});
    let patched = jp(
        &doc,
        json!([
            {"op": "remove", "path": "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"},
            {"op": "remove", "path": "/metadata/annotations/a~0b"},
        ]),
    )
    .unwrap();
    assert_eq!(patched, json!({"metadata": {"annotations": {}}}));

    // `replace` of a missing key adds it; negative indexes count from the end; `test` of a
    // missing key passes for null; copying a missing key copies null.
    let doc = json!({"list": [1, 2, 3]});
    let patched = jp(
        &doc,
        json!([
            {"op": "replace", "path": "/new", "value": true},
            {"op": "remove", "path": "/list/-1"},
            // -1 addresses the slot after the last element when adding.
            {"op": "add", "path": "/list/-1", "value": 9},
            {"op": "test", "path": "/missing", "value": null},
            {"op": "copy", "from": "/missing", "path": "/copied"},
        ]),
    )
    .unwrap();
    assert_eq!(
        patched,
        json!({"list": [1, 2, 9], "new": true, "copied": null})
    );

    // `test` compares objects by the live object's keys.
    let doc = json!({"spec": {"a": 1}});
    assert!(
        jp(
            &doc,
            json!([{"op": "test", "path": "/spec", "value": {"a": 1, "b": 2}}])
        )
        .is_ok()
    );
    assert!(
        jp(
            &doc,
            json!([{"op": "test", "path": "/spec", "value": {"b": 2}}])
        )
        .is_err()
    );
    assert!(
        jp(
            &doc,
            json!([{"op": "test", "path": "/spec/a", "value": 1.0}])
        )
        .is_err()
    );
}

#[test]
fn json_patch_failures_name_the_operation() {
    let doc = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"items": [1]}});
    let cases = [
        (
            json!([{"op": "test", "path": "/metadata/labels/app", "value": "db"}]),
            "testing value /metadata/labels/app failed: test failed",
        ),
        (
            json!([{"op": "remove", "path": "/metadata/labels/tier"}]),
            "error in remove for path: '/metadata/labels/tier': Unable to remove nonexistent key: tier: missing value",
        ),
        (
            json!([{"op": "add", "path": "/spec/missing/key", "value": 1}]),
            "add operation does not apply: doc is missing path: \"/spec/missing/key\": missing value",
        ),
        (
            json!([{"op": "replace", "path": "/spec/items/5", "value": 1}]),
            "replace operation does not apply: doc is missing key: /spec/items/5: missing value",
        ),
        (
            json!([{"op": "add", "path": "/spec/items/3", "value": 1}]),
            "error in add for path: '/spec/items/3': Unable to access invalid index: 3: invalid index referenced",
        ),
        (
            json!([{"op": "add", "path": "/spec/items/x", "value": 1}]),
            "error in add for path: '/spec/items/x': value was not a proper array index: 'x': strconv.Atoi: parsing \"x\": invalid syntax",
        ),
        (
            json!([{"op": "move", "from": "/spec/nothing", "path": "/spec/b"}]),
            "error in move for path: 'nothing': Unable to remove nonexistent key: nothing: missing value",
        ),
        (
            json!([{"op": "copy", "from": "/a/b", "path": "/c"}]),
            "copy operation does not apply: doc is missing from path: /a/b: missing value",
        ),
        (
            json!([{"op": "frob", "path": "/a"}]),
            "Unexpected kind: frob",
        ),
        (json!([{"path": "/a"}]), "Unexpected kind: unknown"),
        (
            json!([{"op": "add", "value": 1}]),
            "add operation failed to decode path: missing value",
        ),
        (
            json!([{"op": "test", "value": 1}]),
            "test operation failed to decode path: operation missing path field: missing value",
        ),
        (
            json!([{"op": "remove", "path": ""}]),
            "remove operation does not apply: doc is missing path: \"\": missing value",
        ),
    ];
    for (patch, message) in cases {
        let err = jp(&doc, patch.clone()).unwrap_err();
        assert_eq!(err, PatchError::Rejected(message.to_owned()), "{patch}");
        assert_eq!(err.code(), 422);
        assert_eq!(err.reason(), Some("Invalid"));
        assert_eq!(
            err.status_message(),
            "the server rejected our request due to an error in our request"
        );
    }
}

#[test]
fn json_patch_request_errors() {
    let err = jp(&json!({}), json!({"op": "add"})).unwrap_err();
    assert_eq!(
        err,
        PatchError::BadRequest(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch".to_owned()
        )
    );
    let err = jp(&json!({}), json!(["add"])).unwrap_err();
    assert_eq!(
        err,
        PatchError::BadRequest(
            "json: cannot unmarshal string into Go value of type jsonpatch.Operation".to_owned()
        )
    );
    let many: Vec<Value> = (0..=MAX_JSON_PATCH_OPERATIONS)
        .map(|_| json!({"op": "test", "path": "/a", "value": null}))
        .collect();
    let err = jp(&json!({}), Value::Array(many)).unwrap_err();
    assert_eq!(err.code(), 413);
    assert_eq!(
        err.status_message(),
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
    );
    assert_eq!(jp(&json!({"a": 1}), Value::Null).unwrap(), json!({"a": 1}));
}

#[test]
fn patch_types_from_media_types() {
    assert_eq!(
        PatchType::from_media_type("application/strategic-merge-patch+json; charset=utf-8"),
        Some(PatchType::StrategicMerge)
    );
    assert_eq!(
        PatchType::from_media_type("application/json-patch+json"),
        Some(PatchType::Json)
    );
    assert_eq!(
        PatchType::from_media_type("application/merge-patch+json"),
        Some(PatchType::Merge)
    );
    assert_eq!(
        PatchType::from_media_type("application/apply-patch+yaml"),
        Some(PatchType::Apply)
    );
    assert_eq!(PatchType::from_media_type("application/json"), None);
    assert_eq!(
        PatchType::Merge.media_type(),
        "application/merge-patch+json"
    );
}
