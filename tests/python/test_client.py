"""The official Python Kubernetes client against Keelson."""

import json
import os
import threading
import time
import uuid

import pytest
from kubernetes import client, utils, watch
from kubernetes.client.rest import ApiException

GUESTBOOK = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "guestbook")


def ns_for(api, prefix):
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def test_discovery_and_version(server):
    api = server.client()
    v = client.VersionApi(api).get_code()
    assert v.major == "1"
    groups = client.ApisApi(api).get_api_versions()
    assert "coordination.k8s.io" in [g.name for g in groups.groups]
    res = client.CoreV1Api(api).get_api_resources()
    names = {r.name: r for r in res.resources}
    assert names["pods"].namespaced and "po" in names["pods"].short_names
    assert "pods/status" in names and "replicationcontrollers/scale" in names
    assert not names["nodes"].namespaced


def test_guestbook_objects(server):
    api = server.client()
    ns = ns_for(api, "gb")
    for f in sorted(os.listdir(GUESTBOOK)):
        if f.endswith(".yaml"):
            utils.create_from_yaml(api, os.path.join(GUESTBOOK, f), namespace=ns)
    core = client.CoreV1Api(api)
    rcs = core.list_namespaced_replication_controller(ns)
    assert sorted(r.metadata.name for r in rcs.items) == ["frontend", "redis-master", "redis-slave"]
    fe = core.read_namespaced_replication_controller("frontend", ns)
    assert fe.spec.replicas == 3 and fe.spec.selector == {"name": "frontend"}
    svc = core.read_namespaced_service("frontend", ns)
    assert svc.spec.type == "NodePort" and svc.spec.ports[0].node_port == 30001
    # a second service asking for the same node port is refused, naming the field
    dup = client.V1Service(metadata=client.V1ObjectMeta(name="dup"),
                           spec=client.V1ServiceSpec(type="NodePort", ports=[client.V1ServicePort(port=80, node_port=30001)]))
    with pytest.raises(ApiException) as e:
        core.create_namespaced_service(ns, dup)
    assert e.value.status == 422
    body = json.loads(e.value.body)
    assert body["details"]["causes"][0]["field"] == "spec.ports[0].nodePort"
    # out of range
    dup.spec.ports[0].node_port = 80
    with pytest.raises(ApiException) as e:
        core.create_namespaced_service(ns, dup)
    assert e.value.status == 422
    # deleting the service releases its port
    core.delete_namespaced_service("frontend", ns)
    dup.spec.ports[0].node_port = 30001
    core.create_namespaced_service(ns, dup)
    # scale through the subresource
    scale = core.read_namespaced_replication_controller_scale("redis-slave", ns)
    assert scale.spec.replicas == 2
    core.patch_namespaced_replication_controller_scale("redis-slave", ns, {"spec": {"replicas": 4}})
    assert core.read_namespaced_replication_controller("redis-slave", ns).spec.replicas == 4


def test_watch_sees_every_change_in_order(server):
    api = server.client()
    core = client.CoreV1Api(api)
    ns = ns_for(api, "watch")
    start = core.list_namespaced_config_map(ns).metadata.resource_version
    expected = []
    for i in range(30):
        cm = core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"cm{i}"), data={"i": str(i)}))
        expected.append(("ADDED", f"cm{i}", cm.metadata.resource_version))
    for i in range(0, 30, 3):
        cm = core.patch_namespaced_config_map(f"cm{i}", ns, {"data": {"i": "changed"}})
        expected.append(("MODIFIED", f"cm{i}", cm.metadata.resource_version))
    for i in range(0, 30, 5):
        core.delete_namespaced_config_map(f"cm{i}", ns)
        expected.append(("DELETED", f"cm{i}", None))
    seen = []
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=start, timeout_seconds=10):
        seen.append((ev["type"], ev["object"].metadata.name, ev["object"].metadata.resource_version))
        if len(seen) == len(expected):
            w.stop()
    assert [(t, n) for t, n, _ in seen] == [(t, n) for t, n, _ in expected]
    for (t, n, rv), (_, _, want) in zip(seen, expected):
        if want is not None:
            assert rv == want
    rvs = [int(rv) for _, _, rv in seen]
    assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs)


def test_watch_with_selectors_and_bookmarks(server):
    api = server.client()
    core = client.CoreV1Api(api)
    ns = ns_for(api, "sel")
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="a", labels={"app": "x"})))
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="b", labels={"app": "y"})))
    core.patch_namespaced_config_map("b", ns, {"metadata": {"labels": {"app": "x"}}})
    core.patch_namespaced_config_map("a", ns, {"metadata": {"labels": {"app": "z"}}})
    # the raw stream shows bookmarks and how selection turns updates into ADDED/DELETED
    resp = core.list_namespaced_config_map(ns, watch=True, resource_version=rv, label_selector="app=x",
                                           allow_watch_bookmarks=True, timeout_seconds=3, _preload_content=False)
    events = [json.loads(l) for l in resp.read().decode().splitlines() if l.strip()]
    kinds = [(e["type"], e["object"]["metadata"].get("name")) for e in events if e["type"] != "BOOKMARK"]
    assert kinds == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    assert any(e["type"] == "BOOKMARK" for e in events)


def test_list_paging_and_selectors(server):
    api = server.client()
    core = client.CoreV1Api(api)
    ns = ns_for(api, "page")
    for i in range(25):
        core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"p{i:02}", labels={"even": str(i % 2 == 0).lower()})))
    names, cont = [], None
    pages = 0
    while True:
        page = core.list_namespaced_config_map(ns, limit=10, _continue=cont)
        pages += 1
        names += [c.metadata.name for c in page.items]
        cont = page.metadata._continue
        if not cont:
            break
    assert pages == 3 and names == [f"p{i:02}" for i in range(25)]
    even = core.list_namespaced_config_map(ns, label_selector="even=true")
    assert len(even.items) == 13
    notin = core.list_namespaced_config_map(ns, label_selector="even notin (true)")
    assert len(notin.items) == 12
    by_name = core.list_namespaced_config_map(ns, field_selector="metadata.name=p03")
    assert [c.metadata.name for c in by_name.items] == ["p03"]
    with pytest.raises(ApiException) as e:
        core.list_namespaced_config_map(ns, field_selector="spec.nope=1")
    assert e.value.status == 400


def test_conflicts_and_errors(server):
    api = server.client()
    core = client.CoreV1Api(api)
    ns = ns_for(api, "err")
    cm = core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"a": "1"}))
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c")))
    assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "AlreadyExists"
    core.patch_namespaced_config_map("c", ns, {"data": {"a": "2"}})
    cm.data = {"a": "3"}
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_config_map("c", ns, cm)
    assert e.value.status == 409 and json.loads(e.value.body)["reason"] == "Conflict"
    # raw requests: malformed JSON, oversized body, unknown resource
    path = f"/api/v1/namespaces/{ns}/configmaps"
    for body, code in [(b"{not json", 400), (b"x" * (3 * 1024 * 1024 + 10), 413)]:
        status, resp = raw(api, "POST", path, body)
        assert status == code, resp
        assert json.loads(resp)["kind"] == "Status"
    status, resp = raw(api, "GET", "/api/v1/widgets")
    assert status == 404 and json.loads(resp)["reason"] == "NotFound"
    status, resp = raw(api, "POST", path, b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-yaml}\n", "application/yaml")
    assert status == 201, resp


def raw(api, method, path, body=None, ctype="application/json"):
    """A request with the client's own certificates, bypassing the generated client."""
    status, resp, _ = raw_with_headers(api, method, path, body, ctype)
    return status, resp


def test_graceful_pod_deletion(server):
    api = server.client()
    core = client.CoreV1Api(api)
    ns = ns_for(api, "pods")
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="p", finalizers=["example.com/hold"]),
                       spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]))
    created = core.create_namespaced_pod(ns, pod)
    assert created.status.phase == "Pending" and created.spec.termination_grace_period_seconds == 30
    core.create_namespaced_pod_binding("p", ns, client.V1Binding(metadata=client.V1ObjectMeta(name="p"),
                                       target=client.V1ObjectReference(kind="Node", name="n1")),
                                       _preload_content=False)
    assert core.read_namespaced_pod("p", ns).spec.node_name == "n1"
    core.delete_namespaced_pod("p", ns)
    p = core.read_namespaced_pod("p", ns)
    assert p.metadata.deletion_timestamp is not None and p.metadata.deletion_grace_period_seconds == 30
    # the kubelet's final delete with grace 0 leaves only the finalizer
    core.delete_namespaced_pod("p", ns, grace_period_seconds=0)
    p = core.read_namespaced_pod("p", ns)
    assert p.metadata.deletion_grace_period_seconds == 0
    core.patch_namespaced_pod("p", ns, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod("p", ns)
    assert e.value.status == 404


def test_acknowledged_writes_survive_kill9(server):
    api = server.client()
    core = client.CoreV1Api(api)
    ns = ns_for(api, "durable")
    acked = []
    stop = threading.Event()

    def writer(tid):
        i = 0
        a = server.client()
        c = client.CoreV1Api(a)
        while not stop.is_set():
            name = f"w{tid}-{i}"
            try:
                c.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"v": name}))
                acked.append(name)
            except Exception:
                return
            i += 1

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    deadline = time.time() + 30
    while len(acked) < 200 and time.time() < deadline:
        time.sleep(0.01)
    server.kill9()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 200
    server.start()
    api = server.client()
    core = client.CoreV1Api(api)
    have = {c.metadata.name for c in core.list_namespaced_config_map(ns).items}
    missing = [n for n in acked if n not in have]
    assert not missing, f"{len(missing)} acknowledged objects lost: {missing[:10]}"


def test_no_credentials_is_401_except_health(server):
    import ssl
    import urllib.request
    import urllib.error
    import yaml
    import base64
    with open(server.kubeconfig) as f:
        kc = yaml.safe_load(f)
    ca = base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    ctx = ssl.create_default_context(cadata=ca)
    base = f"https://127.0.0.1:{server.port}"
    for path in ["/api/v1/pods", "/api", "/apis/coordination.k8s.io/v1/leases"]:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + path, context=ctx)
        assert e.value.code == 401
        status = json.loads(e.value.read())
        assert status["kind"] == "Status" and status["reason"] == "Unauthorized"
    for path in ["/healthz", "/livez", "/readyz", "/version"]:
        assert urllib.request.urlopen(base + path, context=ctx).status == 200


def test_deletecollection_dry_run_and_field_validation(server):
    api = server.client()
    core = client.CoreV1Api(api)
    ns = ns_for(api, "coll")
    for i in range(6):
        core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"d{i}", labels={"grp": "a" if i < 4 else "b"})))
    core.delete_collection_namespaced_config_map(ns, label_selector="grp=a")
    left = sorted(c.metadata.name for c in core.list_namespaced_config_map(ns).items)
    assert left == ["d4", "d5"]
    # a dry run answers with the object but stores nothing
    out = core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dry")), dry_run="All")
    assert out.metadata.name == "dry"
    assert "dry" not in {c.metadata.name for c in core.list_namespaced_config_map(ns).items}
    # unknown fields: Strict refuses, Warn stores with a warning header, Ignore is silent
    path = f"/api/v1/namespaces/{ns}/configmaps"
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fv"}, "bogus": 1}).encode()
    status, resp = raw(api, "POST", path + "?fieldValidation=Strict", body)
    assert status == 400, resp
    assert 'unknown field "bogus"' in json.loads(resp)["message"]
    status, resp, headers = raw_with_headers(api, "POST", path + "?fieldValidation=Warn", body)
    assert status == 201
    assert any('unknown field' in v for k, v in headers if k.lower() == "warning")
    core.delete_namespaced_config_map("fv", ns)
    status, resp, headers = raw_with_headers(api, "POST", path + "?fieldValidation=Ignore", body)
    assert status == 201 and not any(k.lower() == "warning" for k, _ in headers)


def raw_with_headers(api, method, path, body=None, ctype="application/json"):
    import ssl
    import urllib.request
    import urllib.error
    cfg = api.configuration
    ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
    ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    req = urllib.request.Request(cfg.host + path, data=body, method=method, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, context=ctx) as r:
            return r.status, r.read(), r.getheaders()
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.items()


def test_watch_from_expired_resource_version_is_gone(server):
    api = server.client()
    core = client.CoreV1Api(api)
    ns = ns_for(api, "gone")
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x")))
    # revision 1 predates the server's watch cache window: Kubernetes answers with an ERROR
    # event carrying a 410 Expired Status, and clients relist
    resp = core.list_namespaced_config_map(ns, watch=True, resource_version="1", timeout_seconds=2,
                                           _preload_content=False)
    events = [json.loads(l) for l in resp.read().decode().splitlines() if l.strip()]
    assert events and events[0]["type"] == "ERROR", events
    status = events[0]["object"]
    assert status["kind"] == "Status" and status["code"] == 410 and status["reason"] == "Expired"
    # the client library's own handling: a 410 surfaces as an ApiException
    w = watch.Watch()
    with pytest.raises(ApiException) as e:
        for _ in w.stream(core.list_namespaced_config_map, ns, resource_version="1", timeout_seconds=2):
            pass
    assert e.value.status == 410
