#!/usr/bin/env python3
"""Regenerates the descriptor set and the required-field list used by `protobuf.rs`.

The Kubernetes .proto files come from the `k8s-rs-pb` crate (a copy of upstream's
`generated.proto` files, packages renamed `api.core.v1`, `apimachinery.pkg.apis.meta.v1`, ...).
Needs `protoc` and the crate in the cargo registry (`cargo fetch` a crate that depends on it, or
`cargo info k8s-rs-pb` to download it).

    python3 core/api/src/protobuf/regenerate.py [K8S_VERSION, default v1_33]

Writes, beside this script:
- `kubernetes.binpb`: a FileDescriptorSet (no source info) of every Kubernetes message;
- `required.txt`: the fields whose comment lacks `+optional` (Go fields without `omitempty`,
  which the JSON form always carries, even at their zero value), one `package.Message.field` a line;
- `json_names.txt`: the fields whose JSON name is not their proto name (`Webhooks` -> `webhooks`,
  `ref` -> `$ref`), and the inlined embedded structs (`Probe.handler`, `Volume.volumeSource`) as
  `-`, found by comparing each message with the `k8s-openapi` struct of the same name (the crate
  must be in the cargo registry, which building keelson-api ensures).
"""

import glob
import os
import re
import subprocess
import sys
import tarfile
import tempfile

CRATE = "k8s-rs-pb-0.5.0"
HERE = os.path.dirname(os.path.abspath(__file__))
FIELD = re.compile(r"^\s*(optional|repeated|required)?\s*(map<[^>]+>|[\w.]+)\s+(\w+)\s*=\s*\d+")


def crate_dir(tmp):
    home = os.path.expanduser("~/.cargo/registry")
    for src in glob.glob(f"{home}/src/*/{CRATE}"):
        return src
    for crate in glob.glob(f"{home}/cache/*/{CRATE}.crate"):
        with tarfile.open(crate) as tar:
            tar.extractall(tmp, filter="data")
        return os.path.join(tmp, CRATE)
    sys.exit(f"{CRATE} not found in {home}: run `cargo info {CRATE.rsplit('-', 1)[0]}` first")


def required_fields(path):
    out, package, message, comment = [], None, None, []
    for line in open(path, encoding="utf-8"):
        stripped = line.strip()
        if stripped.startswith("package "):
            package = stripped[len("package ") : -1]
        elif stripped.startswith("message "):
            message = stripped.split()[1]
            comment = []
        elif stripped.startswith("//"):
            comment.append(stripped)
        elif not stripped:
            comment = []
        else:
            field = FIELD.match(line)
            if field and message and not any("+optional" in c for c in comment):
                out.append(f"{package}.{message}.{field.group(3)}")
            comment = []
    return out


def openapi_keys(version):
    """JSON field names of every k8s-openapi struct, by (proto package, message name)."""
    home = os.path.expanduser("~/.cargo/registry/src")
    roots = sorted(glob.glob(f"{home}/*/k8s-openapi-0.*/src/{version}"))
    if not roots:
        sys.exit(f"k8s-openapi with {version} not found in {home}: run `cargo fetch`")
    keys = {}
    for path in glob.glob(f"{roots[-1]}/**/*.rs", recursive=True):
        package = os.path.relpath(os.path.dirname(path), roots[-1]).replace("/", ".")
        source = open(path, encoding="utf-8").read()
        fields = set(re.findall(r'"([\w$-]+)" => Field::Key_', source))
        for struct in re.findall(r"pub struct (\w+)", source):
            if fields:
                keys[(package, struct)] = fields
    return keys


def json_names(path, keys):
    """`package.Message.field<TAB>jsonName`, `-` for an inlined struct."""
    squash = lambda name: re.sub(r"[^a-z0-9]", "", name.lower())
    out, package, message = [], None, None
    for line in open(path, encoding="utf-8"):
        stripped = line.strip()
        if stripped.startswith("package "):
            package = stripped[len("package ") : -1]
        elif stripped.startswith("message "):
            message = stripped.split()[1]
        elif (field := FIELD.match(line)) and (package, message) in keys:
            json = keys[(package, message)]
            name = field.group(3)
            if name in json:
                continue
            same = [j for j in json if squash(j) == squash(name)]
            out.append(f"{package}.{message}.{name}\t{same[0] if len(same) == 1 else '-'}")
    return out


def main():
    version = sys.argv[1] if len(sys.argv) > 1 else "v1_33"
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(crate_dir(tmp), "src", version)
        protos = sorted(
            os.path.relpath(p, root) for p in glob.glob(f"{root}/**/*.proto", recursive=True)
        )
        subprocess.run(
            ["protoc", "-I", root, "--include_imports",
             f"--descriptor_set_out={HERE}/kubernetes.binpb", *protos],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        required = sorted({f for p in protos for f in required_fields(os.path.join(root, p))})
        keys = openapi_keys(version)
        names = sorted({f for p in protos for f in json_names(os.path.join(root, p), keys)})
    with open(f"{HERE}/required.txt", "w", encoding="utf-8") as out:
        out.write(f"# generated by regenerate.py from {CRATE} {version}; do not edit\n")
        out.writelines(f"{f}\n" for f in required)
    with open(f"{HERE}/json_names.txt", "w", encoding="utf-8") as out:
        out.write(f"# generated by regenerate.py from {CRATE} {version} and k8s-openapi; do not edit\n")
        out.writelines(f"{f}\n" for f in names)


if __name__ == "__main__":
    main()
