#!/usr/bin/env python3
"""Builds a container image from local files, without a registry or a Docker engine.

    oci_archive.py [--user UID:GID] OUTPUT.tar NAME:TAG ROOTFS ENTRYPOINT...

Writes ROOTFS as the image's single layer, in the docker-archive format that
`ctr images import`, `kind load image-archive`, `docker load` and `podman load`
read (manifest.json, the config, the layer tar). Files are owned by root; the
image runs as UID:GID when given (as root otherwise).
"""
import hashlib
import io
import json
import os
import sys
import tarfile


def layer_tar(rootfs: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for top, dirs, files in os.walk(rootfs):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(top, name)
                info = tar.gettarinfo(path, arcname=os.path.relpath(path, rootfs))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = 0
                if info.isfile():
                    with open(path, "rb") as data:
                        tar.addfile(info, data)
                else:
                    tar.addfile(info)
    return buffer.getvalue()


def main() -> None:
    arguments = sys.argv[1:]
    user = ""
    if arguments[:1] == ["--user"]:
        user, arguments = arguments[1], arguments[2:]
    output, reference, rootfs, *entrypoint = arguments
    layer = layer_tar(rootfs)
    layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": entrypoint,
                "User": user,
                "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
                "WorkingDir": "/",
            },
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            "history": [{"created_by": "images/oci_archive.py"}],
        },
        sort_keys=True,
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [reference], "Layers": ["layer.tar"]}]
    ).encode()
    with tarfile.open(output, "w") as archive:
        for name, data in [
            ("layer.tar", layer),
            (config_name, config),
            ("manifest.json", manifest),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    main()
