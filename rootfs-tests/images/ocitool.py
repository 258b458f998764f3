#!/usr/bin/env python3
"""Small helpers for rootfs-tests/images/build.sh.

The images themselves are made by real tools (umoci, skopeo). This script only does what those
tools cannot: list a source rootfs byte-exactly, assemble the archive shapes no Debian tool writes
(a Docker 25+ `docker save`, a multi-platform index with an attestation manifest, a multi-member
gzip layer, a multi-image docker-archive), and record what each fixture must unpack to in
fixtures.json.

Subcommands:
  listing ROOTFS                         JSON listing of a rootfs on stdout
  docker25 LAYOUT OUT.tar REPO:TAG=REF.. Docker 25+ `docker save` tarball from an OCI layout
  multiarch LAYOUT OUT_LAYOUT AMD64REF ARM64REF [--flat]
  multigzip LAYOUT REF OUT_LAYOUT        every layer re-encoded as 3 concatenated gzip members
  merge-docker OUT.tar IN.tar...         one docker-archive holding the images of several
  fix-media-types LAYOUT                 label each layer by its real compression
  record OUTDIR                          write OUTDIR/fixtures.json
  tarlayer varrun|opaque OUT.tar         the hand-written layers
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import sys
import tarfile

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"


def sha256_bytes(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def canonical(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode()


def blob_path(layout, digest):
    algo, hexd = digest.split(":", 1)
    return os.path.join(layout, "blobs", algo, hexd)


def read_blob(layout, digest):
    with open(blob_path(layout, digest), "rb") as f:
        return f.read()


def write_blob(layout, data):
    digest = sha256_bytes(data)
    path = blob_path(layout, digest)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return digest, len(data)


def read_index(layout):
    with open(os.path.join(layout, "index.json"), "rb") as f:
        return json.load(f)


def write_index(layout, index):
    with open(os.path.join(layout, "index.json"), "wb") as f:
        f.write(canonical(index))


def find_ref(layout, ref):
    for desc in read_index(layout)["manifests"]:
        if desc.get("annotations", {}).get(REF_NAME) == ref:
            return desc
    sys.exit(f"ocitool: no ref {ref!r} in {layout}/index.json")


# ---------------------------------------------------------------------------------------------
# listing


def listing(root):
    """Every entry under root except root itself: byte-exact path (hex), type, mode, size,
    sha256 of regular files, symlink target (hex), and hardlink groups (shared inodes)."""
    root_b = os.fsencode(root)
    entries = []
    inodes = {}
    for dirpath, dirnames, filenames in os.walk(root_b):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root_b)
            st = os.lstat(full)
            e = {
                "path_hex": rel.hex(),
                "path": rel.decode("utf-8", "backslashreplace"),
                "mode": stat.S_IMODE(st.st_mode),
            }
            if stat.S_ISDIR(st.st_mode):
                e["type"] = "dir"
            elif stat.S_ISLNK(st.st_mode):
                e["type"] = "symlink"
                target = os.readlink(full)
                e["target_hex"] = target.hex()
                e["target"] = target.decode("utf-8", "backslashreplace")
            elif stat.S_ISREG(st.st_mode):
                e["type"] = "file"
                e["size"] = st.st_size
                e["sha256"] = sha256_file(full)
                inodes.setdefault((st.st_dev, st.st_ino), []).append(e)
            elif stat.S_ISFIFO(st.st_mode):
                e["type"] = "fifo"
            else:
                sys.exit(f"ocitool: unexpected file type in source rootfs: {full!r}")
            entries.append(e)
    group = 0
    for members in sorted(inodes.values(), key=lambda m: m[0]["path_hex"]):
        if len(members) > 1:
            group += 1
            for e in members:
                e["hardlink_group"] = group
    entries.sort(key=lambda e: e["path_hex"])
    return entries


# ---------------------------------------------------------------------------------------------
# Docker 25+ `docker save`


def tar_add_bytes(tar, name, data, mode=0o644, mtime=0):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = mtime
    tar.addfile(info, io.BytesIO(data))


def tar_add_dir(tar, name, mtime=0):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = mtime
    tar.addfile(info)


def docker25(layout, out, mappings):
    """Mirrors moby's daemon/internal/image/tarexport/save.go (Docker >= 25, classic image store):
    an OCI layout whose layers are *uncompressed* tars stored under their DiffID
    (media type application/vnd.oci.image.layer.v1.tar), index.json descriptors annotated with
    io.containerd.image.name (the full reference) and org.opencontainers.image.ref.name (the tag
    only), plus the legacy manifest.json (Config/RepoTags/Layers as blobs/sha256/<hex> paths) and
    repositories ({"name":{"tag":"<top layer hex>"}}), all in one uncompressed tar.

    `layout` must hold uncompressed layers (skopeo copy --dest-decompress), so that each layer
    blob's digest equals its DiffID, as in moby's output."""
    blobs = {}
    manifest_json = []
    repositories = {}
    index_descs = []
    per_image = {}
    for mapping in mappings:
        full, ref = mapping.split("=", 1)
        desc = find_ref(layout, ref)
        mdigest = desc["digest"]
        if mdigest not in per_image:
            src = json.loads(read_blob(layout, mdigest))
            config_raw = read_blob(layout, src["config"]["digest"])
            config = json.loads(config_raw)
            platform = {"architecture": config["architecture"], "os": config["os"]}
            layers = []
            for layer, diff_id in zip(src["layers"], config["rootfs"]["diff_ids"]):
                if layer["digest"] != diff_id:
                    sys.exit("ocitool docker25: layout layers must be uncompressed")
                blobs[diff_id] = read_blob(layout, layer["digest"])
                layers.append({"mediaType": OCI_LAYER, "digest": diff_id, "size": layer["size"]})
            config_digest, config_size = sha256_bytes(config_raw), len(config_raw)
            blobs[config_digest] = config_raw
            manifest = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": OCI_CONFIG,
                    "digest": config_digest,
                    "size": config_size,
                    "platform": platform,
                },
                "layers": layers,
            }
            mraw = canonical(manifest)
            mdig = sha256_bytes(mraw)
            blobs[mdig] = mraw
            item = {
                "Config": "blobs/sha256/" + config_digest.split(":")[1],
                "RepoTags": [],
                "Layers": ["blobs/sha256/" + lay["digest"].split(":")[1] for lay in layers],
            }
            manifest_json.append(item)
            per_image[mdigest] = (mdig, len(mraw), platform, item, layers)
        mdig, msize, platform, item, layers = per_image[mdigest]
        name, tag = full.rsplit(":", 1)
        item["RepoTags"].append(full)
        repositories.setdefault(name, {})[tag] = layers[-1]["digest"].split(":")[1]
        full_ref = full if "/" in name and "." in name.split("/")[0] else "docker.io/" + full
        index_descs.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": mdig,
                "size": msize,
                "platform": platform,
                "annotations": {IMAGE_NAME: full_ref, REF_NAME: tag},
            }
        )
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index_descs}
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        tar_add_dir(tar, "blobs")
        tar_add_dir(tar, "blobs/sha256")
        for digest in sorted(blobs):
            tar_add_bytes(tar, "blobs/sha256/" + digest.split(":")[1], blobs[digest])
        tar_add_bytes(tar, "index.json", canonical(index))
        tar_add_bytes(tar, "manifest.json", json.dumps(manifest_json).encode() + b"\n")
        tar_add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        tar_add_bytes(tar, "repositories", json.dumps(repositories).encode() + b"\n")


# ---------------------------------------------------------------------------------------------
# multi-platform index with a BuildKit-style attestation manifest


def multiarch(layout, out, amd64_ref, arm64_ref, flat):
    if os.path.exists(out):
        shutil.rmtree(out)
    shutil.copytree(layout, out)
    descs = []
    for ref in (amd64_ref, arm64_ref):
        desc = dict(find_ref(out, ref))
        manifest = json.loads(read_blob(out, desc["digest"]))
        config = json.loads(read_blob(out, manifest["config"]["digest"]))
        desc["platform"] = {"architecture": config["architecture"], "os": config["os"]}
        if config["architecture"] == "arm64":
            desc["platform"]["variant"] = "v8"
        desc.pop("annotations", None)
        desc["mediaType"] = OCI_MANIFEST
        descs.append(desc)
    # An attestation manifest as BuildKit stores it (moby/buildkit
    # docs/attestations/attestation-storage.md): platform unknown/unknown, an in-toto layer, and
    # annotations pointing at the image manifest it describes. Runtimes must skip it.
    statement = canonical(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://spdx.dev/Document",
            "subject": [{"name": "gpurun-fixture", "digest": {"sha256": descs[0]["digest"][7:]}}],
            "predicate": {"spdxVersion": "SPDX-2.3"},
        }
    )
    s_digest, s_size = write_blob(out, statement)
    a_config = canonical(
        {"architecture": "unknown", "os": "unknown", "config": {},
         "rootfs": {"type": "layers", "diff_ids": [s_digest]}}
    )
    c_digest, c_size = write_blob(out, a_config)
    a_manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": c_digest, "size": c_size},
            "layers": [
                {
                    "mediaType": "application/vnd.in-toto+json",
                    "digest": s_digest,
                    "size": s_size,
                    "annotations": {"in-toto.io/predicate-type": "https://spdx.dev/Document"},
                }
            ],
        }
    )
    m_digest, m_size = write_blob(out, a_manifest)
    descs.append(
        {
            "mediaType": OCI_MANIFEST,
            "digest": m_digest,
            "size": m_size,
            "platform": {"architecture": "unknown", "os": "unknown"},
            "annotations": {
                "vnd.docker.reference.digest": descs[0]["digest"],
                "vnd.docker.reference.type": "attestation-manifest",
            },
        }
    )
    if flat:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descs}
    else:
        inner = canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descs})
        i_digest, i_size = write_blob(out, inner)
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_INDEX,
                    "digest": i_digest,
                    "size": i_size,
                    "annotations": {REF_NAME: "latest", IMAGE_NAME: "docker.io/gpurun/busybox:latest"},
                }
            ],
        }
    write_index(out, index)


# ---------------------------------------------------------------------------------------------
# multi-member gzip


def multigzip(layout, ref, out):
    """Re-encodes every layer of `ref` as three concatenated gzip members (what pigz --independent
    and eStargz produce: a valid gzip file that a single-member decoder truncates)."""
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(os.path.join(out, "blobs", "sha256"))
    with open(os.path.join(out, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    desc = find_ref(layout, ref)
    manifest = json.loads(read_blob(layout, desc["digest"]))
    config_raw = read_blob(layout, manifest["config"]["digest"])
    write_blob(out, config_raw)
    layers = []
    for layer in manifest["layers"]:
        raw = read_blob(layout, layer["digest"])
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        third = max(1, len(raw) // 3)
        parts = [raw[:third], raw[third:2 * third], raw[2 * third:]]
        data = b"".join(gzip.compress(p, mtime=0) for p in parts)
        digest, size = write_blob(out, data)
        layers.append({"mediaType": OCI_LAYER + "+gzip", "digest": digest, "size": size})
    manifest = dict(manifest, mediaType=OCI_MANIFEST, layers=layers)
    m_digest, m_size = write_blob(out, canonical(manifest))
    write_index(
        out,
        {
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": m_digest, "size": m_size,
                 "annotations": {REF_NAME: ref}}
            ],
        },
    )


# ---------------------------------------------------------------------------------------------
# media types


def fix_media_types(layout):
    """skopeo 1.9 copying a docker-archive to oci: with --dest-oci-accept-uncompressed-layers keeps
    the layers uncompressed but labels them ...tar+gzip (the docker-archive manifest claims
    gzip). Relabel each layer by its magic bytes and rewrite the manifest and index.json."""
    index = read_index(layout)
    for desc in index["manifests"]:
        manifest = json.loads(read_blob(layout, desc["digest"]))
        for layer in manifest["layers"]:
            head = read_blob(layout, layer["digest"])[:4]
            if head[:2] == b"\x1f\x8b":
                layer["mediaType"] = OCI_LAYER + "+gzip"
            elif head == b"\x28\xb5\x2f\xfd":
                layer["mediaType"] = OCI_LAYER + "+zstd"
            else:
                layer["mediaType"] = OCI_LAYER
        old = blob_path(layout, desc["digest"])
        desc["digest"], desc["size"] = write_blob(layout, canonical(manifest))
        if blob_path(layout, desc["digest"]) != old:
            os.remove(old)
    write_index(layout, index)


# ---------------------------------------------------------------------------------------------
# multi-image docker-archive


def merge_docker(out, inputs):
    """skopeo (containers/image) writes one image per `skopeo copy` into a docker-archive, but its
    tar writer supports several (podman save --multi-image-archive uses it): layers as <hex>.tar
    at the top level, configs as <hex>.json, legacy <id>/{VERSION,json,layer.tar -> ../<hex>.tar}
    and one manifest.json array. We merge skopeo outputs into exactly that shape."""
    members = {}
    order = []
    manifest = []
    repositories = {}
    for path in inputs:
        with tarfile.open(path) as tar:
            for info in tar.getmembers():
                if info.name == "manifest.json":
                    manifest.extend(json.load(tar.extractfile(info)))
                    continue
                if info.name == "repositories":
                    for name, tags in json.load(tar.extractfile(info)).items():
                        repositories.setdefault(name, {}).update(tags)
                    continue
                if info.name in members:
                    continue
                data = tar.extractfile(info).read() if info.isreg() else None
                members[info.name] = (info, data)
                order.append(info.name)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in order:
            info, data = members[name]
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
        tar_add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
        tar_add_bytes(tar, "repositories", json.dumps(repositories).encode())


# ---------------------------------------------------------------------------------------------
# the hand-written layer


def tarlayer(kind, out):
    """Layers umoci repack cannot produce, added verbatim with `umoci raw add-layer`:
    varrun: a file written *through* the absolute parent symlink var/run -> /run (images.md L6),
      as Debian images do; a correct unpacker resolves it inside the rootfs (run/...), never on
      the host. (umoci repack walks the rootfs, where the file lives under run/.)
    opaque: opq/.wh..wh..opq then opq/new: the lower opq/a and opq/b vanish."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        if kind == "varrun":
            tar_add_bytes(tar, "var/run/gpurun-fixture.pid", b"42\n", mtime=1700000000)
        elif kind == "opaque":
            tar_add_dir(tar, "opq/", mtime=1700000000)
            tar_add_bytes(tar, "opq/.wh..wh..opq", b"", mtime=1700000000)
            tar_add_bytes(tar, "opq/new", b"new\n", mtime=1700000000)
        else:
            sys.exit(f"ocitool tarlayer: unknown layer {kind}")


# ---------------------------------------------------------------------------------------------
# fixtures.json


class Source:
    """Blob access over an OCI layout directory or an archive (small members only)."""

    def __init__(self, path):
        self.path = path
        self.is_dir = os.path.isdir(path)
        self.small = {}
        self.sizes = {}
        if not self.is_dir:
            with tarfile.open(path) as tar:
                for info in tar.getmembers():
                    name = os.path.normpath(info.name)
                    if info.isreg():
                        self.sizes[name] = info.size
                        if info.size < 4 << 20 and not name.endswith(".tar"):
                            self.small[name] = tar.extractfile(info).read()

    def read(self, name):
        if self.is_dir:
            with open(os.path.join(self.path, name), "rb") as f:
                return f.read()
        return self.small[name]

    def exists(self, name):
        if self.is_dir:
            return os.path.exists(os.path.join(self.path, name))
        return name in self.small or name in self.sizes


def describe_oci(src, desc):
    manifest = json.loads(src.read("blobs/sha256/" + desc["digest"][7:]))
    config_raw = src.read("blobs/sha256/" + manifest["config"]["digest"][7:])
    config = json.loads(config_raw)
    layers = [
        {"digest": lay["digest"], "diff_id": d, "size": lay["size"], "media_type": lay["mediaType"]}
        for lay, d in zip(manifest["layers"], config["rootfs"]["diff_ids"])
    ]
    return config_raw, config, layers


def oci_images(src):
    """(ref, platform, config_raw, config, layers) for every runnable image, flattening nested
    indexes and skipping attestations."""
    out = []

    def walk(index, ref, name):
        for desc in index["manifests"]:
            ann = desc.get("annotations", {})
            r = ann.get(REF_NAME, ref)
            n = ann.get(IMAGE_NAME, name)
            if desc["mediaType"] == OCI_INDEX:
                walk(json.loads(src.read("blobs/sha256/" + desc["digest"][7:])), r, n)
                continue
            if ann.get("vnd.docker.reference.type") == "attestation-manifest":
                continue
            config_raw, config, layers = describe_oci(src, desc)
            platform = config["os"] + "/" + config["architecture"]
            if desc.get("platform", {}).get("variant"):
                platform += "/" + desc["platform"]["variant"]
            out.append({"ref": r, "platform": platform, "config_raw": config_raw,
                        "config": config, "layers": layers,
                        "image_name": n})

    walk(json.loads(src.read("index.json")), None, None)
    return out


def docker_images(src):
    out = []
    for item in json.loads(src.read("manifest.json")):
        config_raw = src.read(os.path.normpath(item["Config"]))
        config = json.loads(config_raw)
        layers = [{"diff_id": d} for d in config["rootfs"]["diff_ids"]]
        out.append({"ref": (item.get("RepoTags") or [None])[0], "refs": item.get("RepoTags") or [],
                    "platform": config["os"] + "/" + config["architecture"],
                    "config_raw": config_raw, "config": config, "layers": layers})
    return out


def expected_config(config):
    c = config.get("config", {})
    return {
        "env": c.get("Env") or [],
        "entrypoint": c.get("Entrypoint") or [],
        "cmd": c.get("Cmd") or [],
        "working_dir": c.get("WorkingDir") or "",
        "user": c.get("User") or "",
        "labels": c.get("Labels") or {},
    }


# name, format (as `gpurun inspect` reports it), how to read it here, notes
FIXTURES = [
    ("oci-layout", "oci-layout", "oci", "umoci's own layout: two refs (latest, base), gzip layers"),
    ("oci-layout-skopeo", "oci-layout", "oci", "skopeo copy oci: (one ref), gzip"),
    ("oci-archive.tar", "oci-archive", "oci", "skopeo copy oci-archive:, gzip"),
    ("oci-two.tar", "oci-archive", "oci", "oci-archive holding two refs (latest, base)"),
    ("oci-zstd", "oci-layout", "oci", "skopeo --dest-compress-format zstd"),
    ("oci-uncompressed", "oci-layout", "oci", "skopeo --dest-decompress"),
    ("oci-multigzip", "oci-layout", "oci", "each layer is 3 concatenated gzip members"),
    ("oci-multiarch", "oci-layout", "oci",
     "index.json -> image index: linux/amd64, linux/arm64/v8, attestation unknown/unknown"),
    ("oci-multiarch-flat", "oci-layout", "oci",
     "index.json lists linux/amd64, linux/arm64/v8 and an attestation directly"),
    ("docker-archive.tar", "docker-archive", "docker", "skopeo docker-archive: (legacy layout)"),
    ("docker-archive-tags.tar", "docker-archive", "docker",
     "skopeo --additional-tag: one image, two RepoTags"),
    ("docker-archive-two.tar", "docker-archive", "docker",
     "two images (merged skopeo outputs, as podman save -m writes)"),
    ("docker25.tar", "docker-archive", "docker25", "Docker 25+ docker save: OCI layout + manifest.json"),
    ("docker25-two.tar", "docker-archive", "docker25", "Docker 25+ docker save of two images"),
    ("big", "oci-layout", "oci", "large image for the SIGKILL test"),
]


def rootfs_for(config):
    return config.get("config", {}).get("Labels", {}).get("gpurun.test.rootfs", "unknown")


def record(outdir):
    rootfs = {}
    for name in ("busybox", "base", "big"):
        path = os.path.join(outdir, ".listings", name + ".json")
        if os.path.exists(path):
            with open(path) as f:
                rootfs[name] = json.load(f)
    fixtures = {}
    for name, fmt, kind, notes in FIXTURES:
        path = os.path.join(outdir, name)
        if not os.path.exists(path):
            continue
        src = Source(path)
        if kind == "docker":
            imgs = docker_images(src)
        else:
            imgs = oci_images(src)
        if kind == "docker25":
            # Both names select: the RepoTag (manifest.json) first, then the OCI ref name.
            tags = {sha256_bytes(i["config_raw"]): i["refs"] for i in docker_images(src)}
            for img in imgs:
                img["refs"] = tags[sha256_bytes(img["config_raw"])] + [img["ref"]]
                img["ref"] = img["refs"][0]
        images = []
        for img in imgs:
            e = {
                "ref": img["ref"],
                "refs": img.get("refs", [img["ref"]] if img["ref"] else []),
                "platform": img["platform"],
                "id": sha256_bytes(img["config_raw"]),
                "rootfs": rootfs_for(img["config"]),
                "config": expected_config(img["config"]),
                "layers": img["layers"],
            }
            if img.get("image_name"):
                e["image_name"] = img["image_name"]
                e["refs"].append(img["image_name"])
            images.append(e)
        # What a selection without --ref/--platform must do: the only image; the host platform
        # (linux/amd64 here) among platform variants of one ref; otherwise an ambiguity error.
        refs = {tuple(i["refs"]) for i in images}
        default = None
        if len(images) == 1:
            default = 0
        elif len(refs) == 1:
            for i, img in enumerate(images):
                if img["platform"] == "linux/amd64":
                    default = i
        fixtures[name] = {"format": fmt, "kind": kind, "notes": notes, "images": images,
                          "default": default}
    with open(os.path.join(outdir, "fixtures.json"), "w") as f:
        json.dump({"fixtures": fixtures, "rootfs": rootfs}, f, indent=1, sort_keys=True)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "listing":
        json.dump(listing(args[0]), sys.stdout, indent=1)
    elif cmd == "docker25":
        docker25(args[0], args[1], args[2:])
    elif cmd == "multiarch":
        multiarch(args[0], args[1], args[2], args[3], "--flat" in args[4:])
    elif cmd == "multigzip":
        multigzip(args[0], args[1], args[2])
    elif cmd == "merge-docker":
        merge_docker(args[0], args[1:])
    elif cmd == "fix-media-types":
        fix_media_types(args[0])
    elif cmd == "record":
        record(args[0])
    elif cmd == "tarlayer":
        tarlayer(args[0], args[1])
    else:
        sys.exit(f"ocitool: unknown command {cmd}")


if __name__ == "__main__":
    main()
