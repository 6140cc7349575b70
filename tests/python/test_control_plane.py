"""The official Python client against `keelson server`: the controllers at work."""

import base64
import os
import tempfile
import time
import uuid

from kubernetes import client, utils
from kubernetes.client.rest import ApiException

GUESTBOOK = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "guestbook")


def new_namespace(api, prefix):
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def eventually(check, timeout=30, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def pods_of(core, ns, rc_name):
    pods = core.list_namespaced_pod(ns, label_selector=f"name={rc_name}").items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def test_guestbook_controllers_create_scale_and_delete(control_plane):
    api = control_plane.client()
    core = client.CoreV1Api(api)
    ns = new_namespace(api, "gb")
    for f in sorted(os.listdir(GUESTBOOK)):
        if f.endswith(".yaml"):
            utils.create_from_yaml(api, os.path.join(GUESTBOOK, f), namespace=ns)
    rc = core.read_namespaced_replication_controller("frontend", ns)
    pods = eventually(lambda: len(pods_of(core, ns, "frontend")) == 3 and pods_of(core, ns, "frontend"),
                      what="3 frontend pods")
    for p in pods:
        assert p.metadata.name.startswith("frontend-")
        (ref,) = p.metadata.owner_references
        assert (ref.kind, ref.name, ref.uid, ref.controller) == ("ReplicationController", "frontend",
                                                                 rc.metadata.uid, True)
    eventually(lambda: core.read_namespaced_replication_controller_status("frontend", ns).status.replicas == 3,
               what="status.replicas 3")

    # Scale through the scale subresource, as `kubectl scale` does.
    core.patch_namespaced_replication_controller_scale("frontend", ns, {"spec": {"replicas": 5}})
    assert core.read_namespaced_replication_controller_scale("frontend", ns).spec.replicas == 5
    eventually(lambda: len(pods_of(core, ns, "frontend")) == 5, what="5 frontend pods")
    core.patch_namespaced_replication_controller_scale("frontend", ns, {"spec": {"replicas": 2}})
    eventually(lambda: len(pods_of(core, ns, "frontend")) == 2, what="2 frontend pods")

    # A deleted pod is replaced.
    victim = pods_of(core, ns, "frontend")[0].metadata.name
    core.delete_namespaced_pod(victim, ns)
    eventually(lambda: len(pods_of(core, ns, "frontend")) == 2
               and victim not in [p.metadata.name for p in pods_of(core, ns, "frontend")],
               what="the deleted pod replaced")

    # Background propagation: the RC goes, then its pods.
    core.delete_namespaced_replication_controller(
        "frontend", ns, body=client.V1DeleteOptions(propagation_policy="Background"))
    eventually(lambda: not pods_of(core, ns, "frontend"), what="frontend pods deleted")

    # A v1 RC deleted without a policy orphans its pods (Kubernetes' v1 default).
    core.delete_namespaced_replication_controller("redis-slave", ns)

    def orphaned():
        try:
            core.read_namespaced_replication_controller("redis-slave", ns)
            return False
        except ApiException as e:
            if e.status != 404:
                raise
        pods = pods_of(core, ns, "redis-slave")
        return len(pods) == 2 and all(not p.metadata.owner_references for p in pods)
    eventually(orphaned, what="redis-slave gone, its two pods kept without owners")


def test_service_account_token_authenticates_as_the_account(control_plane):
    api = control_plane.client()
    core = client.CoreV1Api(api)
    ns = new_namespace(api, "sa")

    def token_secret():
        try:
            sa = core.read_namespaced_service_account("default", ns)
        except ApiException:
            return None
        for ref in sa.secrets or []:
            try:
                s = core.read_namespaced_secret(ref.name, ns)
            except ApiException:
                continue
            if s.type == "kubernetes.io/service-account-token" and s.data and "token" in s.data:
                return s
        return None
    secret = eventually(token_secret, what="the default account's token Secret")
    assert base64.b64decode(secret.data["namespace"]).decode() == ns
    token = base64.b64decode(secret.data["token"]).decode()
    ca = tempfile.NamedTemporaryFile(suffix=".crt", delete=False)
    ca.write(base64.b64decode(secret.data["ca.crt"]))
    ca.close()

    cfg = client.Configuration()
    cfg.host = f"https://127.0.0.1:{control_plane.port}"
    cfg.ssl_ca_cert = ca.name
    cfg.api_key = {"authorization": "Bearer " + token}
    as_sa = client.ApiClient(cfg)
    review = client.AuthenticationV1Api(as_sa).create_self_subject_review(
        client.V1SelfSubjectReview())
    user = review.status.user_info
    assert user.username == f"system:serviceaccount:{ns}:default"
    assert "system:serviceaccounts" in user.groups
    assert f"system:serviceaccounts:{ns}" in user.groups
    client.CoreV1Api(as_sa).list_namespaced_pod(ns)

    # Deleting the Secret revokes the token.
    core.delete_namespaced_secret(secret.metadata.name, ns)

    def revoked():
        try:
            client.CoreV1Api(as_sa).list_namespaced_pod(ns)
            return False
        except ApiException as e:
            return e.status == 401
    eventually(revoked, what="the token refused once its Secret is deleted")
    os.unlink(ca.name)


def test_endpoints_follow_pod_readiness(control_plane):
    api = control_plane.client()
    core = client.CoreV1Api(api)
    ns = new_namespace(api, "ep")
    core.create_namespaced_service(ns, {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
    core.create_namespaced_pod(ns, {
        "metadata": {"name": "web-1", "labels": {"app": "web"}},
        "spec": {"nodeName": "node-a", "containers": [
            {"name": "c", "image": "busybox", "ports": [{"name": "http", "containerPort": 8080}]}]}})
    status = {"status": {"phase": "Running", "podIP": "10.244.1.7",
                         "conditions": [{"type": "Ready", "status": "False"}]}}
    core.patch_namespaced_pod_status("web-1", ns, status)

    def subsets():
        try:
            return core.read_namespaced_endpoints("web", ns).subsets
        except ApiException:
            return None
    s = eventually(lambda: (subsets() or [None])[0], what="endpoints for web")
    assert [a.ip for a in s.not_ready_addresses or []] == ["10.244.1.7"]
    assert not s.addresses
    assert [(p.name, p.port) for p in s.ports] == [("http", 8080)]

    status["status"]["conditions"][0]["status"] = "True"
    core.patch_namespaced_pod_status("web-1", ns, status)
    s = eventually(lambda: (subsets() or [None])[0] if (subsets() or [None])[0] and
                   (subsets()[0].addresses or []) else None, what="web-1 ready in endpoints")
    assert [(a.ip, a.target_ref.name) for a in s.addresses] == [("10.244.1.7", "web-1")]


def test_deleting_a_namespace_removes_its_contents(control_plane):
    api = control_plane.client()
    core = client.CoreV1Api(api)
    ns = new_namespace(api, "gone")
    core.create_namespaced_config_map(ns, {"metadata": {"name": "cm"}, "data": {"a": "b"}})
    core.create_namespaced_service(ns, {"metadata": {"name": "svc"},
                                        "spec": {"ports": [{"port": 80}]}})
    core.create_namespaced_replication_controller(ns, {
        "metadata": {"name": "rc"},
        "spec": {"replicas": 2, "selector": {"app": "x"}, "template": {
            "metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    eventually(lambda: len(core.list_namespaced_pod(ns).items) == 2, what="the RC's pods")
    core.delete_namespace(ns)

    def gone():
        try:
            core.read_namespace(ns)
            return False
        except ApiException as e:
            return e.status == 404
    eventually(gone, timeout=60, what=f"namespace {ns} deleted")
    for lister in (core.list_namespaced_config_map, core.list_namespaced_service,
                   core.list_namespaced_pod, core.list_namespaced_replication_controller):
        assert lister(ns).items == []
