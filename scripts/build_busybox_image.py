#!/usr/bin/env python3
"""Builds the busybox test image as an OCI image-layout archive, without docker.

One gzip layer holds the host's statically linked /bin/busybox (Debian's busybox-static) with a
symlink per applet in /bin; the config runs `sh`. Every timestamp, owner and ordering is fixed,
so the same busybox binary always gives the same manifest digest.

usage: build_busybox_image.py OUTPUT.tar [--busybox /bin/busybox] [--name REF]
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import struct
import subprocess
import sys
import tarfile

# 2000-01-01T00:00:00Z: any fixed instant makes the archive reproducible; 0 would show as 1970.
EPOCH = 946684800
CREATED = "2000-01-01T00:00:00Z"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
           "s390x": "s390x", "riscv64": "riscv64", "i686": "386"}

DIRS = ["bin", "dev", "etc", "home", "proc", "root", "sys", "tmp", "usr", "usr/bin", "var"]
FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    "etc/group": "root:x:0:\nnobody:x:65534:\n",
}


def die(msg):
    print(f"build_busybox_image: {msg}", file=sys.stderr)
    sys.exit(1)


def is_static_elf(data):
    """True when the ELF has no PT_INTERP program header (no dynamic loader needed)."""
    if data[:4] != b"\x7fELF":
        return False
    is64 = data[4] == 2
    endian = "<" if data[5] == 1 else ">"
    if is64:
        phoff, = struct.unpack_from(endian + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x36)
    else:
        phoff, = struct.unpack_from(endian + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x2A)
    for i in range(phnum):
        p_type, = struct.unpack_from(endian + "I", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def tar_info(name, kind, mode, size=0, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = linkname
    info.mtime = EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def deterministic_tar(entries):
    """entries: list of (TarInfo, bytes or None), written in the given order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def applets(busybox):
    out = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout
    names = sorted({a.strip() for a in out.split() if a.strip() and "/" not in a})
    return [a for a in names if a != "busybox"]


def build_layer(busybox):
    with open(busybox, "rb") as f:
        binary = f.read()
    if not is_static_elf(binary):
        die(f"{busybox} is not a statically linked ELF binary: install Debian's busybox-static")
    entries = []
    for d in DIRS:
        entries.append((tar_info(d + "/", tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755), None))
    for name, text in sorted(FILES.items()):
        data = text.encode()
        entries.append((tar_info(name, tarfile.REGTYPE, 0o644, len(data)), data))
    entries.append((tar_info("bin/busybox", tarfile.REGTYPE, 0o755, len(binary)), binary))
    for applet in applets(busybox):
        entries.append((tar_info("bin/" + applet, tarfile.SYMTYPE, 0o777, linkname="busybox"), None))
    entries.append((tar_info("usr/bin/env", tarfile.SYMTYPE, 0o777, linkname="../../bin/busybox"), None))
    return deterministic_tar(entries)


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def build_archive(busybox, name):
    arch = GO_ARCH.get(platform.machine(), platform.machine())
    layer_tar = build_layer(busybox)
    layer = gzip.compress(layer_tar, compresslevel=9, mtime=0)
    config = canonical({
        "architecture": arch,
        "os": "linux",
        "created": CREATED,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer_tar)]},
        "history": [{"created": CREATED, "created_by": "keelson scripts/build_busybox_image.py"}],
    })
    manifest = canonical({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha256(layer), "size": len(layer)}],
    })
    index = canonical({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": sha256(manifest),
            "size": len(manifest),
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": name,
            },
        }],
    })
    entries = [
        (tar_info("blobs/", tarfile.DIRTYPE, 0o755), None),
        (tar_info("blobs/sha256/", tarfile.DIRTYPE, 0o755), None),
    ]
    for blob in sorted([layer, config, manifest], key=sha256):
        path = "blobs/sha256/" + sha256(blob).split(":", 1)[1]
        entries.append((tar_info(path, tarfile.REGTYPE, 0o644, len(blob)), blob))
    layout = canonical({"imageLayoutVersion": "1.0.0"})
    entries.append((tar_info("oci-layout", tarfile.REGTYPE, 0o644, len(layout)), layout))
    entries.append((tar_info("index.json", tarfile.REGTYPE, 0o644, len(index)), index))
    return deterministic_tar(entries), sha256(manifest)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--busybox", default="/bin/busybox")
    parser.add_argument("--name", default="docker.io/library/busybox:latest")
    args = parser.parse_args()
    if not os.path.exists(args.busybox):
        die(f"{args.busybox} not found: install Debian's busybox-static (scripts/setup.sh does)")
    archive, digest = build_archive(args.busybox, args.name)
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
    print(f"{args.output}: built {args.name} {digest}")


if __name__ == "__main__":
    main()
