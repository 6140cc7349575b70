"""Fixtures: a real `keelson apiserver` (and a real etcd) per test module, on loopback."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Etcd:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="keelson-etcd-")
        cport, pport = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{cport}"
        peer = f"http://127.0.0.1:{pport}"
        self.log = open(os.path.join(self.dir, "etcd.log"), "w")
        self.proc = subprocess.Popen(
            ["etcd", "--name", "t", "--data-dir", os.path.join(self.dir, "data"),
             "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"t={peer}"],
            stdout=subprocess.DEVNULL, stderr=self.log)
        assert wait_port(cport), "etcd did not start"

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Server:
    """`keelson apiserver` (or, with subcommand="server", the whole control plane)."""

    def __init__(self, backend, subcommand="apiserver"):
        self.subcommand = subcommand
        self.bin = os.environ["KEELSON_BIN"]
        self.dir = tempfile.mkdtemp(prefix="keelson-py-")
        self.port = free_port()
        self.kubeconfig = os.path.join(self.dir, "kubeconfig.yaml")
        self.etcd = Etcd() if backend == "etcd" else None
        self.proc = None
        self.start()

    def start(self):
        args = [self.bin, self.subcommand, "--data-dir", self.dir, "--bind-address", "127.0.0.1",
                "--secure-port", str(self.port), "--bookmark-interval-seconds", "1"]
        if self.etcd:
            args += ["--etcd-servers", self.etcd.endpoint]
        if self.subcommand == "server":
            # Controllers that need seconds, not minutes, in tests.
            cm = os.path.join(self.dir, "controller-manager.yaml")
            with open(cm, "w") as f:
                f.write("leaderElection:\n  leaderElect: false\n")
            args += ["--controller-manager-config", cm]
        self.log = open(os.path.join(self.dir, "apiserver.log"), "a")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline and not os.path.exists(self.kubeconfig):
            time.sleep(0.05)
        assert wait_port(self.port), "keelson apiserver did not start:\n" + self.read_log()

    def read_log(self):
        with open(os.path.join(self.dir, "apiserver.log")) as f:
            return f.read()[-4000:]

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.etcd:
            self.etcd.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self):
        from kubernetes import client, config
        cfg = client.Configuration()
        config.load_kube_config(config_file=self.kubeconfig, client_configuration=cfg)
        return client.ApiClient(cfg)


@pytest.fixture(params=["sqlite", "etcd"], scope="module")
def server(request):
    s = Server(request.param)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def control_plane():
    """`keelson server`: API server, controller manager and scheduler in one process."""
    s = Server("sqlite", subcommand="server")
    yield s
    s.stop()
