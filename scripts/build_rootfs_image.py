#!/usr/bin/env python3
"""Builds an OCI image-layout archive of host binaries, the shared libraries they need, and busybox.

The guestbook's images (scripts/build-images.sh) are made this way, without docker: one gzip
layer holds the busybox of build_busybox_image.py (Debian's busybox-static, /bin/sh and one
symlink per applet), the given binaries with every library `ldd` resolves for them (and the
dynamic loader) at the paths the loader looks them up, and the given files. Timestamps, owners
and ordering are fixed as in build_busybox_image.py, so the same inputs give the same manifest
digest, and an archive that is already up to date is not rewritten.

usage: build_rootfs_image.py OUTPUT.tar --name REF
           [--binary HOST_PATH[:IMAGE_PATH]]... [--file HOST_PATH:IMAGE_PATH[:MODE]]...
           [--dir IMAGE_PATH]... [--cmd JSON] [--entrypoint JSON] [--env K=V]...
           [--port 6379/tcp]... [--workdir PATH] [--busybox /bin/busybox]
"""

import argparse
import gzip
import json
import os
import platform
import posixpath
import re
import subprocess
import sys
import tarfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import build_busybox_image as bb  # noqa: E402  (the shared tar and digest helpers)

# Name resolution for programs that look up hosts (the redis slave's master, the frontend's
# redis): files first, then DNS, as glibc does without this file, said explicitly.
NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n"


def die(msg):
    print(f"build_rootfs_image: {msg}", file=sys.stderr)
    sys.exit(1)


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        die(f"cannot read {path}: {e}")


def shared_libraries(binary):
    """The absolute paths `ldd` resolves for `binary` (libraries and the loader); [] if static."""
    if bb.is_static_elf(read(binary)):
        return []
    out = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if out.returncode != 0:
        die(f"ldd {binary}: {out.stderr.strip() or out.stdout.strip()}")
    paths = []
    for line in out.stdout.splitlines():
        line = line.strip()
        if "not found" in line:
            die(f"{binary}: a library is missing: {line}")
        # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        m = re.match(r"^(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            paths.append(m.group(1))
    if not paths:
        die(f"ldd {binary} named no libraries: {out.stdout.strip()}")
    return paths


def parents(path):
    """'a/b/c' -> ['a', 'a/b']"""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def build_layer(busybox, binaries, files, dirs):
    """binaries: [(host, image_path)]; files: [(image_path, bytes, mode)]; dirs: [image_path]."""
    content = {}  # image path -> (bytes, mode)
    for host, image_path in binaries:
        content[image_path] = (read(host), 0o755)
        for lib in shared_libraries(host):
            # The file the loader finds at that path; a symlink on the host (the usr merge,
            # lib64 -> lib) becomes a regular file here.
            content.setdefault(lib.lstrip("/"), (read(os.path.realpath(lib)), 0o755))
    for image_path, data, mode in files:
        content[image_path] = (data, mode)
    for name, text in bb.FILES.items():
        content.setdefault(name, (text.encode(), 0o644))
    content.setdefault("etc/nsswitch.conf", (NSSWITCH.encode(), 0o644))

    busybox_binary = read(busybox)
    if not bb.is_static_elf(busybox_binary):
        die(f"{busybox} is not a statically linked ELF binary: install Debian's busybox-static")
    links = {"bin/" + a: "busybox" for a in bb.applets(busybox)}
    links["usr/bin/env"] = "../../bin/busybox"
    content["bin/busybox"] = (busybox_binary, 0o755)
    for path in list(links):
        if path in content:
            del links[path]  # a real binary (redis-server, ...) wins over an applet

    all_dirs = set(bb.DIRS) | set(d.strip("/") for d in dirs)
    for path in list(content) + list(links) + list(all_dirs):
        all_dirs.update(parents(path))
    entries = []
    for d in sorted(all_dirs):
        entries.append((bb.tar_info(d + "/", tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755), None))
    for path in sorted(content):
        data, mode = content[path]
        entries.append((bb.tar_info(path, tarfile.REGTYPE, mode, len(data)), data))
    for path in sorted(links):
        entries.append((bb.tar_info(path, tarfile.SYMTYPE, 0o777, linkname=links[path]), None))
    return bb.deterministic_tar(entries)


def build_archive(layer_tar, name, config_body):
    arch = bb.GO_ARCH.get(platform.machine(), platform.machine())
    layer = gzip.compress(layer_tar, compresslevel=6, mtime=0)
    config = bb.canonical({
        "architecture": arch,
        "os": "linux",
        "created": bb.CREATED,
        "config": config_body,
        "rootfs": {"type": "layers", "diff_ids": [bb.sha256(layer_tar)]},
        "history": [{"created": bb.CREATED, "created_by": "keelson scripts/build_rootfs_image.py"}],
    })
    manifest = bb.canonical({
        "schemaVersion": 2,
        "mediaType": bb.OCI_MANIFEST,
        "config": {"mediaType": bb.OCI_CONFIG, "digest": bb.sha256(config), "size": len(config)},
        "layers": [{"mediaType": bb.OCI_LAYER_GZIP, "digest": bb.sha256(layer), "size": len(layer)}],
    })
    index = bb.canonical({
        "schemaVersion": 2,
        "mediaType": bb.OCI_INDEX,
        "manifests": [{
            "mediaType": bb.OCI_MANIFEST,
            "digest": bb.sha256(manifest),
            "size": len(manifest),
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": name,
            },
        }],
    })
    entries = [
        (bb.tar_info("blobs/", tarfile.DIRTYPE, 0o755), None),
        (bb.tar_info("blobs/sha256/", tarfile.DIRTYPE, 0o755), None),
    ]
    for blob in sorted([layer, config, manifest], key=bb.sha256):
        path = "blobs/sha256/" + bb.sha256(blob).split(":", 1)[1]
        entries.append((bb.tar_info(path, tarfile.REGTYPE, 0o644, len(blob)), blob))
    layout = bb.canonical({"imageLayoutVersion": "1.0.0"})
    entries.append((bb.tar_info("oci-layout", tarfile.REGTYPE, 0o644, len(layout)), layout))
    entries.append((bb.tar_info("index.json", tarfile.REGTYPE, 0o644, len(index)), index))
    return bb.deterministic_tar(entries), bb.sha256(manifest)


def image_path(path, what):
    path = posixpath.normpath("/" + path).lstrip("/")
    if not path or path.startswith(".."):
        die(f"{what}: bad image path")
    return path


def json_list(text, flag):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        die(f"{flag}: not JSON: {e}")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        die(f"{flag}: expected a JSON list of strings")
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--name", required=True)
    parser.add_argument("--binary", action="append", default=[])
    parser.add_argument("--file", action="append", default=[])
    parser.add_argument("--dir", action="append", default=[])
    parser.add_argument("--cmd")
    parser.add_argument("--entrypoint")
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--port", action="append", default=[])
    parser.add_argument("--workdir")
    parser.add_argument("--busybox", default="/bin/busybox")
    args = parser.parse_args()

    if not os.path.exists(args.busybox):
        die(f"{args.busybox} not found: install Debian's busybox-static (scripts/setup.sh does)")
    binaries = []
    for spec in args.binary:
        host, _, dest = spec.partition(":")
        if not os.path.isfile(host):
            die(f"--binary {spec}: {host} not found")
        binaries.append((host, image_path(dest or host, f"--binary {spec}")))
    files = []
    for spec in args.file:
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            die(f"--file {spec}: expected HOST_PATH:IMAGE_PATH[:MODE]")
        mode = int(parts[2], 8) if len(parts) == 3 else 0o644
        files.append((image_path(parts[1], f"--file {spec}"), read(parts[0]), mode))

    config_body = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
    config_body["Env"] += args.env
    if args.entrypoint is not None:
        config_body["Entrypoint"] = json_list(args.entrypoint, "--entrypoint")
    if args.cmd is not None:
        config_body["Cmd"] = json_list(args.cmd, "--cmd")
    if args.port:
        config_body["ExposedPorts"] = {p if "/" in p else p + "/tcp": {} for p in args.port}
    if args.workdir:
        config_body["WorkingDir"] = args.workdir

    layer_tar = build_layer(args.busybox, binaries, files, args.dir)
    archive, digest = build_archive(layer_tar, args.name, config_body)
    try:
        with open(args.output, "rb") as f:
            if f.read() == archive:
                print(f"{args.output}: up to date ({args.name} {digest})")
                return
    except FileNotFoundError:
        pass
    tmp = args.output + ".tmp"
    with open(tmp, "wb") as f:
        f.write(archive)
    os.replace(tmp, args.output)
    print(f"{args.output}: built {args.name} {digest} ({len(archive) // 1024} KiB)")


if __name__ == "__main__":
    main()
