#!/usr/bin/env python3
"""Hostile-input corpus for `gpurun unpack`: make_corpus.py OUTDIR

Writes one image per case under OUTDIR (an OCI image-layout directory, or an OCI archive /
docker-archive tar where the case is about the outer archive) and OUTDIR/cases.json, which
`rootfs-tests/corpus.rs` reads. The rows are those of tables 7.1 (H1-H30), 7.2 (A1-A12) and
7.3 (L1-L16) of the image-unpacking reference notes, plus X1-X12: holes a security review of
gpurun's own code found beyond those tables; case names start with the row id.

Python 3 standard library only (plus the `zstd` command for the zstd variants, which are
listed under "skipped" in cases.json when it is missing). Tar headers are written byte by
byte (`Tar` below) because `tarfile` will not write most of what a hostile layer contains.
Output is deterministic: fixed mtimes, gzip mtime 0, sorted JSON where order is free.

The sentinel. Escaping writes are aimed at ONE fixed host path, SENTINEL =
/tmp/gpurun-sentinel, either absolutely ("/tmp/gpurun-sentinel/file") or by climbing with
UP = 40 x "../" (which reaches "/" from any cache location less than 40 levels deep) followed
by "tmp/gpurun-sentinel/...". The layers cannot know the test's temporary directory, so the
test creates exactly this path before running the cases (a 0777 directory holding `file`
(0666) and `dir/` (0755) with `dir/inner`, all with mtime 1000000000) and checks after every
case that nothing in it changed (content, mode, mtime, ctime, inode, link count, entries).
Nothing in this corpus aims at any other host path.

cases.json (format 1):
  {"format": 1, "sentinel": "/tmp/gpurun-sentinel", "generator_sha256": HEX,
   "skipped": [{"row": "H18", "what": ..., "why": ...}],
   "cases": [CASE, ...]}
  CASE = {"name", "row", "note", "image": path relative to OUTDIR,
          "ref"?, "platform"?, "env"?: {VAR: value},       -- passed to gpurun
          "stage"?: "unpack" (default) | "dry-run" (`gpurun --dry-run IMAGE true`),
          "expect": "apply" | "refuse" | "skip-warn" | "apply-or-refuse",
          "error_contains"?: [S | [S, S...]],  -- refuse: each item (or one of its
                                                  alternatives) is a substring of stderr,
                                                  compared case-insensitively
          "warn_contains"?: [...],              -- skip-warn: same, exit status 0
          "checks"?: [CHECK...],                -- on the rootfs when the unpack succeeded
          "timeout_s"?: N, "max_seconds"?: N (a successful run must be faster),
          "max_rss_mb"?: N (peak RSS of gpurun and its children),
          "cpu_ratio"?: {"base": CASE-NAME, "max": X} (CPU time at most X times that of an
                        earlier case: a linear-time check that does not depend on the machine),
          "max_open_files"?: N (gpurun runs with that soft RLIMIT_NOFILE),
          "tmpfs_cache"?: true (the cache goes on a tmpfs, /dev/shm, when there is one: a
                        filesystem whose allocator slows down after earlier deletions, such
                        as ext4 without a journal, would otherwise skew cpu_ratio),
          "slow"?: true}
  "apply": exit 0, stdout is the rootfs directory. "refuse": exit 125, no rootfs published.
  Always: $CACHE/staging empty or absent afterwards, sentinel unchanged.
  CHECK (paths are relative to the rootfs, never followed through symlinks; a path written
  "hex:414243" is the raw bytes; modes are octal strings):
    {"absent": P}
    {"file": P, "content"?: text, "content_hex"?: hex, "sha256"?: hex, "size"?: N,
     "mode"?: "0644", "mtime"?: N}
    {"dir": P, "mode"?: ..., "mode_has"?: bits that must be set, "mode_lacks"?: bits that
     must be clear, "mtime"?: N}
    {"empty_dir": P}
    {"entries": P, "names"?: [text...], "names_hex"?: [hex...]}   -- exact set of names
    {"symlink": P, "target"?: text, "target_hex"?: hex}
    {"fifo": P}
    {"same_inode": [P, Q]}
    {"xattr": P, "name": N, "value": text}    -- only where the filesystem takes user.*
    {"no_xattr": P, "name": N}
  and for stage "dry-run", on the launch plan printed as JSON:
    {"plan_ids": "caller"}   -- the plan's uid and gid are the caller's effective ones
"""

import gzip
import hashlib
import json
import os
import platform
import shutil
import struct
import subprocess
import sys

SENTINEL = "/tmp/gpurun-sentinel"
UP = "../" * 40
ESC = UP + SENTINEL.lstrip("/")  # relative climb to the sentinel
MTIME = 1700000000

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_ND_GZ = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
MT_EMPTY = "application/vnd.oci.empty.v1+json"
MT_D_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_D_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_D_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_D_GZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
HOST_ARCH = _ARCH.get(platform.machine().lower(), platform.machine().lower())
OTHER_ARCH = "arm64" if HOST_ARCH != "arm64" else "amd64"

ZSTD = shutil.which("zstd")


def L(n):
    """How the unpacker names layer n (1-based) in its messages."""
    return f"layer {n}"


def b(s):
    return s if isinstance(s, bytes) else s.encode("utf-8", "surrogateescape")


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def jdump(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------------
# Raw tar writer


def _num(n, width):
    """A numeric header field: octal with a NUL, else GNU base-256 (also for negatives)."""
    if 0 <= n < 8 ** (width - 1):
        return b"%0*o\0" % (width - 1, n)
    if n < 0:
        n += 256 ** width
    out = n.to_bytes(width, "big")
    return bytes([out[0] | 0x80]) + out[1:] if n >= 0 and out[0] < 0x80 else out


def _pax_record(key, val):
    key, val = b(key), b(val)
    body = b" " + key + b"=" + val + b"\n"
    n = len(body) + 1
    while len(b"%d" % n) + len(body) != n:
        n = len(b"%d" % n) + len(body)
    return b"%d" % n + body


def _pad(data):
    return data + bytes(-len(data) % 512)


class Tar:
    """Builds a tar stream block by block. fmt: 'ustar', 'gnu' (L/K long names) or 'pax'."""

    def __init__(self, fmt="pax"):
        self.fmt = fmt
        self.out = bytearray()

    def header(self, name, typ=b"0", size=0, mode=0o644, uid=0, gid=0, mtime=MTIME,
               linkname=b"", devmajor=0, devminor=0, prefix=b"", gnu=None, extra=None):
        """One raw 512-byte header; extra: {offset: bytes} patched in before the checksum."""
        gnu = self.fmt == "gnu" if gnu is None else gnu
        h = bytearray(512)
        name, linkname, prefix = b(name), b(linkname), b(prefix)
        h[0:100] = name[:100].ljust(100, b"\0")
        h[100:108] = _num(mode, 8)
        h[108:116] = _num(uid, 8)
        h[116:124] = _num(gid, 8)
        h[124:136] = _num(size, 12)
        h[136:148] = _num(mtime, 12)
        h[156:157] = b(typ)
        h[157:257] = linkname[:100].ljust(100, b"\0")
        h[257:265] = b"ustar  \0" if gnu else b"ustar\x0000"
        h[265:297] = b"root".ljust(32, b"\0")
        h[297:329] = b"root".ljust(32, b"\0")
        h[329:337] = _num(devmajor, 8)
        h[337:345] = _num(devminor, 8)
        if prefix:
            h[345:500] = prefix[:155].ljust(155, b"\0")
        for off, val in (extra or {}).items():
            h[off:off + len(val)] = val
        h[148:156] = b" " * 8
        h[148:156] = b"%06o\0 " % sum(h)
        return bytes(h)

    def raw(self, data):
        self.out += data
        return self

    def pax(self, records, typ=b"x", name=b"./PaxHeaders/x"):
        body = b"".join(_pax_record(k, v) for k, v in records)
        self.out += self.header(name, typ=typ, size=len(body), gnu=False) + _pad(body)

    def add(self, name, typ=b"0", data=b"", mode=None, linkname=b"", pax=None, xattrs=None,
            size=None, **kw):
        name, linkname, typ = b(name), b(linkname), b(typ)
        if mode is None:
            mode = {b"5": 0o755, b"2": 0o777}.get(typ, 0o644)
        if typ == b"5" and not name.endswith(b"/"):
            name += b"/"
        records = list(pax or [])
        for k, v in (xattrs or {}).items():
            records.append((b"SCHILY.xattr." + b(k), v))
        prefix = b""
        if len(name) > 100:
            cuts = [i for i in range(1, min(len(name), 156)) if name[i:i + 1] == b"/"
                    and len(name) - i - 1 <= 100]
            cut = cuts[0] if cuts else -1
            if self.fmt == "ustar" and cut > 0:
                prefix, name = name[:cut], name[cut + 1:]
            elif self.fmt == "gnu":
                self._gnu_long(b"L", name)
                name = name[:100]
            elif self.fmt == "pax":
                records.append((b"path", name))
                name = name[:100]
            else:
                raise ValueError(f"name too long for ustar: {name!r}")
        if len(linkname) > 100:
            if self.fmt == "gnu":
                self._gnu_long(b"K", linkname)
            else:
                records.append((b"linkpath", linkname))
            linkname = linkname[:100]
        if records:
            self.pax(records)
        size = len(data) if size is None else size
        self.out += self.header(name, typ, size, mode, linkname=linkname, prefix=prefix, **kw)
        self.out += _pad(data)
        return self

    def _gnu_long(self, typ, value):
        value += b"\0"
        self.out += self.header(b"././@LongLink", typ=typ, size=len(value), gnu=True)
        self.out += _pad(value)

    # Conveniences
    def file(self, name, data=b"", mode=None, **kw):
        return self.add(name, b"0", b(data), mode=mode, **kw)

    def dir(self, name, mode=None, **kw):
        return self.add(name, b"5", mode=mode, **kw)

    def sym(self, name, target, **kw):
        return self.add(name, b"2", linkname=target, **kw)

    def link(self, name, target, **kw):
        return self.add(name, b"1", linkname=target, **kw)

    def bytes(self, end=True, pad_to=None):
        out = bytes(self.out) + (bytes(1024) if end else b"")
        if pad_to:
            out += bytes(-len(out) % pad_to)
        return out


def tar(*entries, fmt="pax"):
    """tar(("f", name, data), ("d", name), ("s", name, target), ("h", name, target)...)"""
    t = Tar(fmt)
    for e in entries:
        kind, rest = e[0], e[1:]
        {"f": t.file, "d": t.dir, "s": t.sym, "h": t.link}[kind](*rest)
    return t.bytes()


# --------------------------------------------------------------------------------------------
# Compression


def gz(data):
    return gzip.compress(data, compresslevel=6, mtime=0)


def zstd_c(data, level=19):
    return subprocess.run([ZSTD, "-q", f"-{level}", "-c", "--no-check"], input=data,
                          capture_output=True, check=True).stdout


def zstd_skippable(payload, nibble=0):
    return struct.pack("<II", 0x184D2A50 + nibble, len(payload)) + payload


class Layer:
    """One layer: the uncompressed tar, its blob and media type, and its DiffID."""

    def __init__(self, tar_bytes=None, comp="none", mt=None, blob=None, diff_id=None):
        if blob is None:
            blob = {"none": lambda t: t, "gzip": gz, "zstd": zstd_c}[comp](tar_bytes)
        self.blob = blob
        self.diff_id = diff_id or sha(tar_bytes)
        self.mt = mt or {"none": MT_TAR, "gzip": MT_GZ, "zstd": MT_ZSTD}[comp]


def layers_of(items):
    return [x if isinstance(x, Layer) else Layer(x) for x in items]


# --------------------------------------------------------------------------------------------
# Images


def desc(mt, data, **extra):
    d = {"mediaType": mt, "digest": sha(data), "size": len(data)}
    d.update(extra)
    return d


class Image:
    """Config, manifest and blobs of one image; mutate hooks edit the JSON before hashing."""

    def __init__(self, layers, arch=HOST_ARCH, cfg=None, man=None, docker_types=False):
        self.layers = layers_of(layers)
        self.blobs = {}
        config = {
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [l.diff_id for l in self.layers]},
            "history": [{"created_by": "corpus layer %d" % i} for i in range(len(self.layers))],
        }
        if cfg:
            cfg(config)
        self.config = jdump(config)
        self.blobs[sha(self.config)] = self.config
        for l in self.layers:
            self.blobs[sha(l.blob)] = l.blob
        lmt = (lambda l: MT_D_GZ if l.mt == MT_GZ else l.mt) if docker_types else (lambda l: l.mt)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_D_MANIFEST if docker_types else MT_MANIFEST,
            "config": desc(MT_D_CONFIG if docker_types else MT_CONFIG, self.config),
            "layers": [desc(lmt(l), l.blob) for l in self.layers],
        }
        if man:
            man(manifest)
        self.manifest = jdump(manifest)
        self.blobs[sha(self.manifest)] = self.manifest
        self.manifest_mt = manifest.get("mediaType", MT_MANIFEST)

    def desc(self, **extra):
        return desc(self.manifest_mt, self.manifest, **extra)


def index(manifests, **extra):
    doc = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests}
    doc.update(extra)
    return jdump(doc)


def write_layout(path, blobs, index_json, extra_files=None):
    os.makedirs(os.path.join(path, "blobs", "sha256"))
    with open(os.path.join(path, "oci-layout"), "wb") as f:
        f.write(OCI_LAYOUT)
    with open(os.path.join(path, "index.json"), "wb") as f:
        f.write(index_json)
    for digest, data in sorted(blobs.items()):
        alg, hexpart = digest.split(":", 1)
        d = os.path.join(path, "blobs", alg)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, hexpart), "wb") as f:
            f.write(data)
    for name, data in (extra_files or {}).items():
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)


def layout_members(blobs, index_json):
    """The members of an OCI archive, in the order skopeo writes them."""
    m = [("d", "blobs/"), ("d", "blobs/sha256/")]
    m += [("f", "blobs/sha256/" + d.split(":", 1)[1], data) for d, data in sorted(blobs.items())]
    m += [("f", "index.json", index_json), ("f", "oci-layout", OCI_LAYOUT)]
    return m


def write_tar(path, members, fmt="ustar"):
    t = Tar(fmt)
    for m in members:
        kind = m[0]
        if kind == "raw":
            t.raw(m[1])
        else:
            {"f": t.file, "d": t.dir, "s": t.sym, "h": t.link}[kind](*m[1:])
    with open(path, "wb") as f:
        f.write(t.bytes(pad_to=10240))


def docker_members(images, style="legacy", manifest_json=None):
    """Members of a docker-archive. images: [(Image, [repo tags])]. style: 'legacy' (Docker
    <= 24: <id>/layer.tar, repeated layers as ../<id>/layer.tar symlinks) or 'skopeo'
    (<hex>.tar at the root, <id>/layer.tar symlinks to them)."""
    members, manifest, repos, seen = [], [], {}, {}
    for img, tags in images:
        cfg_hex = hashlib.sha256(img.config).hexdigest()
        members.append(("f", cfg_hex + ".json", img.config))
        paths, parent = [], ""
        for l in img.layers:
            lid = hashlib.sha256((parent + " " + l.diff_id).encode()).hexdigest()
            parent = lid
            if style == "skopeo":
                root_name = l.diff_id.split(":")[1] + ".tar"
                if root_name not in seen:
                    seen[root_name] = True
                    members.append(("f", root_name, l.blob))
                members += [("d", lid + "/"), ("f", lid + "/VERSION", b"1.0"),
                            ("f", lid + "/json", jdump({"id": lid})),
                            ("s", lid + "/layer.tar", "../" + root_name)]
                paths.append(root_name)
                continue
            members += [("d", lid + "/"), ("f", lid + "/VERSION", b"1.0"),
                        ("f", lid + "/json", jdump({"id": lid}))]
            if l.diff_id in seen:
                members.append(("s", lid + "/layer.tar", "../" + seen[l.diff_id]))
            else:
                seen[l.diff_id] = lid + "/layer.tar"
                members.append(("f", lid + "/layer.tar", l.blob))
            paths.append(lid + "/layer.tar")
        manifest.append({"Config": cfg_hex + ".json", "RepoTags": tags, "Layers": paths})
        for t in tags:
            repo, tag = t.rsplit(":", 1)
            repos.setdefault(repo, {})[tag] = cfg_hex
    members.append(("f", "manifest.json", manifest_json if manifest_json is not None
                    else jdump(manifest)))
    members.append(("f", "repositories", jdump(repos)))
    return members


# --------------------------------------------------------------------------------------------
# Cases

CASES = []
SKIPPED = []
OUT = None


def register(name, image, expect, note, **kw):
    row = name.split("-", 1)[0]
    case = {"name": name, "row": row, "note": note, "image": image, "expect": expect}
    if expect == "refuse":
        assert kw.get("error_contains"), name
    for k, v in kw.items():
        if v is not None:
            case[k] = v
    CASES.append(case)


def oci(name, layers, expect, note, img_kw=None, index_extra=None, **kw):
    """A single-image OCI layout directory named after the case."""
    img = Image(layers, **(img_kw or {}))
    ref = {"org.opencontainers.image.ref.name": "latest"}
    write_layout(os.path.join(OUT, name), img.blobs,
                 index([img.desc(annotations=ref)], **(index_extra or {})))
    register(name, name, expect, note, **kw)
    return img


def raw_layout(name, blobs, index_json, expect, note, **kw):
    write_layout(os.path.join(OUT, name), blobs, index_json)
    register(name, name, expect, note, **kw)


def skip(row, what, why):
    SKIPPED.append({"row": row, "what": what, "why": why})


def zero_chunks(total, chunk):
    """(count, last) chunks of `chunk` zero bytes that add up to `total`."""
    return total // chunk, total % chunk


def hash_stream(parts):
    h = hashlib.sha256()
    for data, times in parts:
        for _ in range(times):
            h.update(data)
    return "sha256:" + h.hexdigest()


BASE = tar(("d", "etc"), ("f", "etc/os-release", "ID=corpus\n"), ("d", "bin"),
           ("f", "bin/sh", "#!corpus-shell\n", ), fmt="ustar")


def hostile_paths():
    # H1
    oci("H01-dotdot", [tar(("f", "okfile", "ok"), ("f", ESC + "/pwn-h01", "pwned"))], "refuse",
        "regular file ../(x40)tmp/gpurun-sentinel/pwn-h01 after a good entry",
        error_contains=[L(1), "pwn-h01"])
    oci("H01-dotdot-short", [tar(("f", "../../../tmp/gpurun-sentinel/pwn-h01s", "pwned"))],
        "refuse", "regular ../../../tmp/gpurun-sentinel/pwn-h01s (the table's literal form)",
        error_contains=[L(1), "pwn-h01s"])
    # H2
    oci("H02-dotdot-inner", [BASE, tar(("f", "a/../../x-h02", "x"))], "refuse",
        "a/../../x-h02 escapes by one level", error_contains=[L(2), "a/../../x-h02"])
    oci("H02-dotdot-nonescaping", [tar(("f", "./a/./b/../c-h02", "x"))], "refuse",
        "./a/./b/../c-h02 stays inside but every '..' is refused",
        error_contains=[L(1), "c-h02"])
    # H3
    oci("H03-symlink-root-parent",
        [tar(("s", "lnk", "/"), ("f", "lnk/tmp/gpurun-sentinel/x-h03", "in-root"))], "apply",
        "symlink lnk -> /, then lnk/tmp/gpurun-sentinel/x-h03: resolved in the rootfs",
        checks=[{"symlink": "lnk", "target": "/"},
                {"file": "tmp/gpurun-sentinel/x-h03", "content": "in-root"}])
    oci("H03-symlink-dotdot-parent",
        [tar(("s", "lnk", "../../../../../../../.."),
             ("f", "lnk/tmp/gpurun-sentinel/y-h03", "in-root"))], "apply",
        "symlink lnk -> ../../../../../../../.., then lnk/tmp/gpurun-sentinel/y-h03",
        checks=[{"file": "tmp/gpurun-sentinel/y-h03", "content": "in-root"}])
    # H4
    oci("H04-cross-layer-symlink",
        [tar(("s", "x", ESC)), tar(("f", "x/authorized_keys-h04", "ssh-ed25519 AAAA"))],
        "apply-or-refuse",
        "layer 1: x -> ../(x40)tmp/gpurun-sentinel; layer 2: x/authorized_keys-h04",
        checks=[{"file": "tmp/gpurun-sentinel/authorized_keys-h04",
                 "content": "ssh-ed25519 AAAA"}],
        error_contains=[L(2), "authorized_keys-h04"])
    oci("H04-cross-layer-symlink-existing",
        [tar(("d", "tmp"), ("d", "tmp/gpurun-sentinel"), ("s", "x", ESC)),
         tar(("f", "x/authorized_keys-h04", "ssh-ed25519 AAAA"))], "apply-or-refuse",
        "as H04 but the in-root target directory exists",
        checks=[{"file": "tmp/gpurun-sentinel/authorized_keys-h04",
                 "content": "ssh-ed25519 AAAA"}],
        error_contains=[L(2), "authorized_keys-h04"])
    # H5
    oci("H05-hardlink-via-symlink",
        [tar(("d", "etc"), ("f", "etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
             ("s", "lnk", "/etc"), ("h", "hardlink-h05", "lnk/passwd"))], "apply",
        "symlink lnk -> /etc, hardlink hardlink-h05 -> lnk/passwd: rootfs/etc/passwd",
        checks=[{"same_inode": ["hardlink-h05", "etc/passwd"]},
                {"file": "hardlink-h05", "content": "root:x:0:0::/root:/bin/sh\n"}])
    oci("H05-hardlink-via-symlink-missing",
        [tar(("s", "lnk", SENTINEL), ("h", "hardlink-h05m", "lnk/file"))], "refuse",
        "lnk -> /tmp/gpurun-sentinel, hardlink -> lnk/file: missing in the rootfs (the host "
        "sentinel file must keep its link count)", error_contains=[L(1), "hardlink-h05m"])
    # H6
    oci("H06-hardlink-absolute",
        [tar(("d", "etc"), ("f", "etc/shadow", "root:*:1::::::\n"),
             ("h", "hardlink-h06", "/etc/shadow"))], "apply",
        "hardlink hardlink-h06 -> /etc/shadow (kaniko style) links rootfs/etc/shadow",
        checks=[{"same_inode": ["hardlink-h06", "etc/shadow"]}])
    oci("H06-hardlink-absolute-missing",
        [tar(("h", "hardlink-h06m", SENTINEL + "/file"))], "refuse",
        "hardlink -> /tmp/gpurun-sentinel/file: no such file in the rootfs",
        error_contains=[L(1), "hardlink-h06m"])
    # H7
    oci("H07-hardlink-dotdot", [tar(("h", "hardlink-h07", ESC + "/file"))], "refuse",
        "hardlink -> ../(x40)tmp/gpurun-sentinel/file", error_contains=[L(1), "hardlink-h07"])
    oci("H07-hardlink-dotdot-short", [BASE, tar(("h", "hardlink-h07s", "../../../etc/os-release"))],
        "refuse", "hardlink -> ../../../etc/os-release", error_contains=[L(2), "hardlink-h07s"])
    # H8
    oci("H08-hardlink-self", [tar(("f", "selflink", "lower")), tar(("h", "selflink", "selflink"))],
        "refuse", "layer 2: hardlink selflink -> selflink over a lower selflink",
        error_contains=[L(2), "selflink"])
    # H9
    oci("H09-hardlink-to-dir", [tar(("d", "somedir"), ("h", "hardlink-h09", "somedir"))],
        "refuse", "hardlink to a directory", error_contains=[L(1), "hardlink-h09"])
    oci("H09-hardlink-forward",
        [tar(("h", "hardlink-h09f", "later-file"), ("f", "later-file", "late"))], "refuse",
        "hardlink whose target comes later in the layer", error_contains=[L(1), "hardlink-h09f"])
    # H10
    oci("H10-symlink-then-file",
        [BASE, tar(("s", "file-h10a", SENTINEL + "/file"), ("f", "file-h10a", "fresh-a"),
                   ("s", "file-h10b", ESC + "/file"), ("f", "file-h10b", "fresh-b"),
                   ("h", "file-h10c", "etc/os-release"), ("f", "file-h10c", "fresh-c"))],
        "apply", "symlink (absolute, climbing) or hardlink, then a regular file of the same "
        "name: a fresh file, no write-through",
        checks=[{"file": "file-h10a", "content": "fresh-a"},
                {"file": "file-h10b", "content": "fresh-b"},
                {"file": "file-h10c", "content": "fresh-c"},
                {"file": "etc/os-release", "content": "ID=corpus\n"}])
    # H11
    oci("H11-symlink-then-dir",
        [tar(("s", "dir-h11a", SENTINEL + "/dir"), ("d", "dir-h11a", 0o777),
             ("s", "dir-h11b", ESC + "/dir"), ("d", "dir-h11b", 0o777))], "apply",
        "symlink to the sentinel dir, then a directory 0777 of the same name",
        checks=[{"dir": "dir-h11a", "mode": "0777"}, {"dir": "dir-h11b", "mode": "0777"},
                {"empty_dir": "dir-h11a"}])
    # H12
    for suffix, rootname, typ, extra in [
        ("", "./", "s", SENTINEL), ("-dot", ".", "s", SENTINEL),
        ("-slash", "/", "s", SENTINEL), ("-file", "./", "f", "not a directory"),
        ("-hardlink", ".", "h", "etc/os-release")]:
        entries = [(typ, rootname, extra), ("f", "etc/x-h12", "x")]
        layers = [BASE, tar(*entries)] if typ == "h" else [tar(*entries)]
        n = len(layers)
        oci("H12-root-type" + suffix, layers, "refuse",
            f"root entry {rootname!r} as type {typ}, then etc/x-h12",
            error_contains=[L(n), "root"])
    # H13
    for mode, suffix in [(0o000, "0000"), (0o777, "0777")]:
        t = Tar()
        t.add("./", b"5", mode=mode, uid=12345, gid=12345)
        t.file("etc/x-h13", "x")
        chk = [{"file": "etc/x-h13", "content": "x"}, {"dir": ".", "mode_has": "0700"}]
        if mode == 0o777:
            chk.append({"dir": ".", "mode_lacks": "0022"})
        oci("H13-root-metadata-" + suffix, [t.bytes()], "apply",
            f"root entry ./ mode {suffix} uid 12345: root metadata ignored", checks=chk)


def hostile_whiteouts():
    lower = tar(("d", "a"), ("f", "a/keep-h14", "keep"))
    for suffix, wh in [("empty", ".wh."), ("dot", "a/.wh.."), ("dotdot", "a/.wh...")]:
        oci("H14-whiteout-" + suffix, [lower, tar(("f", wh, ""))], "refuse",
            f"whiteout {wh!r} names nothing (or . / ..)", error_contains=[L(2), ".wh."])
    # H15 (host /etc replaced by the sentinel)
    oci("H15-whiteout-through-symlink",
        [tar(("d", "tmp"), ("d", "tmp/gpurun-sentinel"),
             ("f", "tmp/gpurun-sentinel/file", "in-root copy"),
             ("f", "tmp/gpurun-sentinel/other", "in-root other"), ("s", "etcl", SENTINEL)),
         tar(("f", "etcl/.wh.file", ""), ("f", "etcl/.wh..wh..opq", ""))], "apply",
        "layer 1: etcl -> /tmp/gpurun-sentinel (exists in the rootfs); layer 2: etcl/.wh.file "
        "and etcl/.wh..wh..opq empty the in-root directory only",
        checks=[{"empty_dir": "tmp/gpurun-sentinel"}, {"symlink": "etcl", "target": SENTINEL}])
    # H16
    oci("H16-whiteout-symlink-leaf",
        [tar(("d", "usr/share/zoneinfo"), ("f", "usr/share/zoneinfo/UTC", "TZif2"),
             ("d", "etc"), ("s", "etc/localtime", "/usr/share/zoneinfo/UTC"),
             ("s", "etc/sentinel-link", SENTINEL + "/file")),
         tar(("f", "etc/.wh.localtime", ""), ("f", "etc/.wh.sentinel-link", ""))], "apply",
        "whiting out a symlink removes the link, not its target",
        checks=[{"absent": "etc/localtime"}, {"absent": "etc/sentinel-link"},
                {"file": "usr/share/zoneinfo/UTC", "content": "TZif2"},
                {"entries": "etc", "names": []}])
    # H17
    oci("H17-aufs-metadata",
        [tar(("d", ".wh..wh.plnk"), ("f", ".wh..wh.plnk/123.456", "plnk"),
             ("f", ".wh..wh.aufs", ""), ("d", ".wh..wh.orph"), ("f", "keep-h17", "k"))],
        "apply", "old AUFS metadata entries are not created",
        checks=[{"absent": ".wh..wh.plnk"}, {"absent": ".wh..wh.aufs"},
                {"absent": ".wh..wh.orph"}, {"file": "keep-h17", "content": "k"}])
    oci("H17-aufs-plnk-hardlink",
        [tar(("d", ".wh..wh.plnk"), ("f", ".wh..wh.plnk/123.456", "plnk-data"),
             ("h", "hardlink-h17", ".wh..wh.plnk/123.456"))], "apply-or-refuse",
        "a hardlink into .wh..wh.plnk: refused, or retargeted as moby does",
        checks=[{"absent": ".wh..wh.plnk"}, {"file": "hardlink-h17", "content": "plnk-data"}],
        error_contains=[L(1), "hardlink-h17"])


def hostile_special():
    # H18
    t = Tar()
    t.add("dev/mem", b"3", mode=0o640, devmajor=1, devminor=1)
    t.add("dev/sda", b"4", mode=0o660, devmajor=8, devminor=0)
    t.add("whiteout-h18", b"3", mode=0o000, devmajor=0, devminor=0)
    t.add("fifo-h18", b"6", mode=0o644)
    t.file("keep-h18", "k")
    oci("H18-devices", [t.bytes()], "skip-warn",
        "char 1:1, block 8:0 and char 0:0 are skipped with a warning; the FIFO is created",
        warn_contains=[["device", "dev/mem"]],
        checks=[{"absent": "dev/mem"}, {"absent": "dev/sda"}, {"absent": "whiteout-h18"},
                {"fifo": "fifo-h18"}, {"file": "keep-h18", "content": "k"}])
    skip("H18", "socket entry", "tar has no socket type flag; GNU tar and Go skip sockets")
    # H19
    t = Tar()
    t.file("bin/su", "su", mode=0o4755, uid=0)
    t.file("usr/bin/wall", "wall", mode=0o2755, gid=5)
    t.file("usr/bin/both-h19", "both", mode=0o6755)
    t.file("usr/bin/sticky-h19", "st", mode=0o1755)
    oci("H19-setuid", [t.bytes()], "apply", "setuid/setgid bits are stripped",
        checks=[{"file": "bin/su", "mode": "0755", "content": "su"},
                {"file": "usr/bin/wall", "mode": "0755"},
                {"file": "usr/bin/both-h19", "mode": "0755"}])
    # H20
    t = Tar()
    t.file("xattr-h20", "x", xattrs={
        "security.capability": b"\x01\x00\x00\x02\x00\x20\x00\x00" + bytes(12),
        "security.selinux": b"system_u:object_r:shadow_t:s0\0",
        "trusted.overlay.opaque": b"y",
        "user.overlay.redirect": b"/elsewhere",
        "user.rootlesscontainers": b"\x08\x00",
        "system.posix_acl_access": b"\x02\x00\x00\x00\x01\x00\x06\x00\xff\xff\xff\xff",
        "user.big": b"B" * (128 << 10),
        "user.corpus": b"fine"})
    oci("H20-xattrs", [t.bytes()], "skip-warn",
        "only small user.* xattrs are applied; the rest (and a 128 KiB user.big, above the "
        "kernel's 64 KiB limit; 1 MiB would not fit the 1 MiB PAX cap) dropped with a warning",
        warn_contains=[["xattr", "extended attribute"]],
        checks=[{"file": "xattr-h20", "content": "x"},
                {"xattr": "xattr-h20", "name": "user.corpus", "value": "fine"},
                {"no_xattr": "xattr-h20", "name": "security.capability"},
                {"no_xattr": "xattr-h20", "name": "trusted.overlay.opaque"},
                {"no_xattr": "xattr-h20", "name": "user.overlay.redirect"},
                {"no_xattr": "xattr-h20", "name": "system.posix_acl_access"},
                {"no_xattr": "xattr-h20", "name": "user.big"}])


CAP = {"GPURUN_MAX_LAYER_BYTES": str(1 << 20)}
BOMB_RSS = 100


def hostile_bombs():
    # H21: a 128 MiB zero file behind a 1 MiB cap; multi-member gzip / multi-frame zstd keep the
    # generator fast and the blob small.
    size = 128 << 20
    chunk = bytes(16 << 20)
    head = Tar().header("zeros-h21", size=size)
    tail = bytes(1024)
    stream_parts = [(head, 1), (chunk, size // len(chunk)), (tail, 1)]
    diff = hash_stream(stream_parts)
    gchunk = gz(chunk)
    blob = gz(head) + gchunk * (size // len(chunk)) + gz(tail)
    oci("H21-gzip-bomb", [Layer(blob=blob, diff_id=diff, mt=MT_GZ)], "refuse",
        "gzip: one 128 MiB zero file (about 130 KB); GPURUN_MAX_LAYER_BYTES=1 MiB",
        env=CAP, error_contains=[L(1)], max_rss_mb=BOMB_RSS, timeout_s=60, slow=True)
    if ZSTD:
        zchunk = zstd_c(bytes(64 << 20))
        blob = zstd_c(head) + zchunk * (size // (64 << 20)) + zstd_c(tail)
        oci("H21-zstd-bomb", [Layer(blob=blob, diff_id=diff, mt=MT_ZSTD)], "refuse",
            "zstd: the same 128 MiB stream in a few KB; GPURUN_MAX_LAYER_BYTES=1 MiB",
            env=CAP, error_contains=[L(1)], max_rss_mb=BOMB_RSS, timeout_s=60, slow=True)
    else:
        skip("H21", "zstd bomb", "zstd command not found")
    # many files, each under the cap, together over it
    t = Tar()
    for i in range(8):
        t.file(f"part-h21-{i}", bytes(256 << 10))
    oci("H21-total-over-cap", [Layer(t.bytes(), "gzip")], "refuse",
        "eight 256 KiB files: each under the 1 MiB cap, the layer over it",
        env=CAP, error_contains=[L(1)])
    # H22
    t = Tar()
    for i in range(5000):
        t.file(f"many/f{i:05d}")
    oci("H22-many-entries", [Layer(t.bytes(), "gzip")], "refuse",
        "5000 empty files with GPURUN_MAX_ENTRIES=1000 (the 2 000 000 of the table, scaled)",
        env={"GPURUN_MAX_ENTRIES": "1000"}, error_contains=[["entries", "entry"]],
        max_rss_mb=BOMB_RSS)
    halves = []
    for part in range(2):
        t = Tar()
        for i in range(600):
            t.file(f"half{part}/f{i:04d}")
        halves.append(Layer(t.bytes(), "gzip"))
    oci("H22-many-entries-per-image", halves, "refuse",
        "two layers of 600 entries with GPURUN_MAX_ENTRIES=1000 (the cap is per image)",
        env={"GPURUN_MAX_ENTRIES": "1000"}, error_contains=[L(2)])
    t = Tar()
    path = ""
    for depth in range(3000):
        path += "a/"
        t.dir(path)
    t.file(path + "deep-h22", "deep")
    oci("H22-deep", [Layer(t.bytes(), "gzip")], "refuse",
        "3000 nested directories a/a/a/... (6000-byte paths)", error_contains=[L(1)],
        timeout_s=120, slow=True)
    oci("H22-long-component", [tar(("f", "c" * 256, "x"))], "refuse",
        "a 256-byte path component", error_contains=[L(1), "c" * 64])
    oci("H22-long-path", [tar(("f", "/".join(["p" * 200] * 21) + "/long-h22", "x"))], "refuse",
        "a 4221-byte path of 200-byte components", error_contains=[L(1)])
    # H23: a long-name record declaring 2 GiB, of which 160 MiB follow (gzip, ~170 KB):
    # refusing before allocating keeps the peak RSS far below 160 MiB.
    declared = 2 << 30
    supplied = 160 << 20
    for suffix, typ, name in [("gnu-longname", b"L", b"././@LongLink"),
                              ("pax-header", b"x", b"./PaxHeaders/bomb")]:
        head = Tar().header(name, typ=typ, size=declared, gnu=(typ == b"L"))
        diff = hash_stream([(head, 1), (chunk, supplied // len(chunk))])
        blob = gz(head) + gchunk * (supplied // len(chunk))
        oci("H23-" + suffix, [Layer(blob=blob, diff_id=diff, mt=MT_GZ)], "refuse",
            f"{typ.decode()} header declaring 2 GiB, 160 MiB of zeros supplied",
            error_contains=[L(1)], max_rss_mb=BOMB_RSS, timeout_s=60, slow=True)


def hostile_headers():
    # H24: PAX size=2048 on an entry whose ustar size is 8; a symlink header in the gap.
    t = Tar()
    hidden = Tar().header("smuggled-h24", typ=b"2", linkname=SENTINEL + "/file", mode=0o777)
    t.pax([("size", "2048")])
    t.raw(t.header("innocent-h24", size=8))
    t.raw((b"8 bytes!" + bytes(504) + hidden).ljust(2048, b"\0"))
    t.file("after-h24", "after")
    oci("H24-pax-size-smuggle", [t.bytes()], "apply",
        "PAX size 2048 over ustar size 8 with a symlink header hidden in the data",
        checks=[{"absent": "smuggled-h24"}, {"file": "innocent-h24", "size": 2048},
                {"file": "after-h24", "content": "after"}])
    # H25
    t = Tar()
    t.pax([("path", ESC + "/evil-h25")])
    t.raw(t.header("safe.txt", size=4) + _pad(b"evil"))
    oci("H25-pax-path-escape", [t.bytes()], "refuse",
        "ustar name safe.txt, PAX path ../(x40)tmp/gpurun-sentinel/evil-h25",
        error_contains=[L(1), "evil-h25"])
    t = Tar()
    t.pax([("path", b"nul-h25\0hidden")])
    t.raw(t.header("safe2.txt", size=4) + _pad(b"data"))
    oci("H25-pax-path-nul", [t.bytes()], "refuse", "PAX path with an embedded NUL",
        error_contains=[L(1), "nul-h25"])
    t = Tar()
    t.pax([("linkpath", "l" * 5000)])
    t.raw(t.header("longlink-h25", typ=b"2", linkname="short", mode=0o777))
    oci("H25-pax-linkpath-long", [t.bytes()], "refuse", "PAX linkpath of 5000 bytes",
        error_contains=[L(1), "longlink-h25"])
    # H26
    oci("H26-symlink-loop",
        [tar(("s", "loopa", "loopb"), ("s", "loopb", "loopa"), ("f", "loopa/f-h26", "x"))],
        "refuse", "loopa -> loopb -> loopa, then loopa/f-h26", error_contains=[L(1), "f-h26"])
    chain = [("d", "chain-end")]
    for i in range(50):
        chain.append(("s", f"chain{i:02d}", f"chain{i + 1:02d}" if i < 49 else "chain-end"))
    chain.append(("f", "chain00/f-h26c", "x"))
    oci("H26-symlink-chain", [tar(*chain)], "refuse",
        "a 50-link chain used as a parent (beyond the kernel's 40)",
        error_contains=[L(1), "f-h26c"])
    # H27
    oci("H27-symlink-empty", [tar(("s", "emptylink-h27", ""))], "refuse",
        "symlink with an empty target", error_contains=[L(1), "emptylink-h27"])
    # H28: PAX (GNU 1.0) sparse
    realsize = 1 << 20
    sparse_map = _pad(b"1\n%d\n4\n" % (realsize - 4))
    t = Tar()
    t.pax([("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0"),
           ("GNU.sparse.name", "big-h28"), ("GNU.sparse.realsize", str(realsize))])
    t.raw(t.header("GNUSparseFile.123/big-h28", size=len(sparse_map) + 512))
    t.raw(sparse_map + _pad(b"DATA"))
    oci("H28-pax-sparse", [t.bytes()], "apply-or-refuse",
        "PAX 1.0 sparse file: refuse 'unsupported' or implement it, never the raw map",
        checks=[{"absent": "GNUSparseFile.123"},
                {"file": "big-h28", "size": realsize,
                 "sha256": hashlib.sha256(bytes(realsize - 4) + b"DATA").hexdigest()}],
        error_contains=[L(1), "big-h28"])
    t = Tar("gnu")
    t.raw(gnu_sparse_header("huge-h28", 1 << 60, [(0, 512)]) + _pad(b"S" * 512))
    oci("H28-gnu-sparse-huge", [t.bytes()], "refuse",
        "old GNU sparse with realsize 2^60", error_contains=[L(1), "huge-h28"],
        max_rss_mb=BOMB_RSS, timeout_s=60)


def gnu_sparse_header(name, realsize, chunks, mode=0o644):
    extra = {}
    for i, (off, n) in enumerate(chunks[:4]):
        extra[386 + 24 * i] = _num(off, 12)
        extra[386 + 24 * i + 12] = _num(n, 12)
    extra[482] = b"\0"
    extra[483] = _num(realsize, 12)
    data = sum(n for _, n in chunks)
    return Tar("gnu").header(name, typ=b"S", size=data, mode=mode, gnu=True, extra=extra)


def hostile_digests():
    # H29
    good = tar(("f", "flip-h29", "x" * 1000))
    lay = Layer(good)
    flipped = bytearray(good)
    flipped[700] ^= 0x01
    img = Image([lay])
    blobs = dict(img.blobs)
    blobs[sha(lay.blob)] = bytes(flipped)
    raw_layout("H29-blob-flipped-byte", blobs, index([img.desc()]), "refuse",
               "layer blob with one flipped byte: its sha256 differs from the descriptor",
               error_contains=[hashlib.sha256(good).hexdigest()[:12]])
    wrong = Layer(blob=gz(good), diff_id=sha(b"not this layer"), mt=MT_GZ)
    oci("H29-diffid-mismatch", [BASE, wrong], "refuse",
        "gzip blob matches its digest; the decompressed stream does not match diff_ids[1]",
        error_contains=[L(2), ["diff_id", "diffid", "diff id"]])
    img = Image([Layer(BASE), Layer(blob=good, diff_id=sha(b"wrong"))])
    write_tar(os.path.join(OUT, "H29-docker-diffid-mismatch.tar"),
              docker_members([(img, ["corpus:h29"])]))
    register("H29-docker-diffid-mismatch", "H29-docker-diffid-mismatch.tar", "refuse",
             "docker-archive layer.tar whose sha256 is not its diff_id (the only anchor)",
             error_contains=[L(2)])
    # H30: the same flood at 5 000 and 20 000; linear time means about 4x the CPU time,
    # a per-whiteout re-walk of the tree (containerd GHSA-rp3h) about 16x.
    for n, name in [(5000, "H30-whiteout-flood-5k"), (20000, "H30-whiteout-flood")]:
        t1, t2 = Tar(), Tar()
        t1.dir("big")
        for i in range(n):
            t1.file(f"big/f{i:05d}")
        for i in range(n):
            t1.dir(f"d{i:05d}")
            t1.file(f"d{i:05d}/x")
        for i in range(n):
            t2.dir(f"d{i:05d}")
            t2.file(f"d{i:05d}/.wh..wh..opq")
        for i in range(n):
            t2.file(f"big/.wh.f{i:05d}")
        ratio = {"base": "H30-whiteout-flood-5k", "max": 8} if n == 20000 else None
        oci(name, [Layer(t1.bytes(), "gzip"), Layer(t2.bytes(), "gzip")], "apply",
            f"{n} opaque directories plus {n} explicit whiteouts in one directory (the table's "
            "100 000 scaled down): linear time, so CPU time at most 8x that of the 5k case",
            env={"GPURUN_MAX_ENTRIES": "1000000"}, max_seconds=300, timeout_s=600, slow=True,
            cpu_ratio=ratio, tmpfs_cache=True,
            checks=[{"empty_dir": "d00000"}, {"empty_dir": f"d{n - 1:05d}"},
                    {"empty_dir": "big"}])


# --------------------------------------------------------------------------------------------
# X1-X12: found by reviewing gpurun's own parser and applier (not rows of the tables)


def review_cases():
    # X1: a PAX size of 2^64-1 pads to 0 with wrapping arithmetic, so the stream would read the
    # entry's data as headers and apply the symlink hidden there.
    t = Tar()
    t.file("before-x1", "b")
    t.pax([("size", str(2 ** 64 - 1))])
    t.raw(t.header("innocent-x1", typ=b"V", size=512))
    t.raw(Tar().header("smuggled-x1", typ=b"2", linkname=SENTINEL + "/file", mode=0o777))
    t.file("after-x1", "a")
    oci("X1-pax-size-wrap", [t.bytes()], "refuse",
        "PAX size 2^64-1 (Go refuses sizes above 2^63-1)", error_contains=[L(1)])
    # X2: metadata headers piling up before one entry; each is under the 1 MiB cap.
    junk = b"6 a=b\n" * ((1 << 20) // 6 - 1)
    t = Tar()
    for _ in range(8):
        t.raw(t.header(b"./PaxHeaders/x", typ=b"x", size=len(junk), gnu=False) + _pad(junk))
    t.file("victim-x2", "v")
    oci("X2-pax-pileup", [Layer(t.bytes(), "gzip")], "refuse",
        "eight 1 MiB PAX headers of tiny records before one entry (5.7 GB of RSS at 300)",
        error_contains=[L(1)], max_rss_mb=BOMB_RSS, timeout_s=60)
    t = Tar()
    count = 0
    for i in range(40):
        recs = []
        size = 0
        while size < (1 << 20) - 200:
            r = _pax_record(f"SCHILY.xattr.security.{count:010d}", "")
            recs.append(r)
            size += len(r)
            count += 1
        body = b"".join(recs)
        t.raw(t.header(b"./PaxHeaders/x", typ=b"x", size=len(body), gnu=False) + _pad(body))
        t.raw(t.header(f"f{i}-x2", size=0))
    oci("X2-dropped-xattr-names", [Layer(t.bytes(), "gzip")], "skip-warn",
        f"{count} distinct security.* attributes (all dropped) over 40 entries",
        warn_contains=["extended attributes"], max_rss_mb=BOMB_RSS, timeout_s=60)
    # X3: K copies of a nested index at each of four levels: K^4 leaves from a few KB.
    img = Image([tar(("f", "fanout-x3", "x"))])
    blobs = dict(img.blobs)
    child = img.desc(platform={"architecture": HOST_ARCH, "os": "linux"})
    for _ in range(4):
        doc = index([child] * 40)
        blobs[sha(doc)] = doc
        child = desc(MT_INDEX, doc)
    raw_layout("X3-index-fanout", blobs, index([child]), "apply",
               "nested indexes listing the same child 40 times at four levels (1.5 GB RSS before)",
               max_rss_mb=BOMB_RSS, timeout_s=60, checks=[{"file": "fanout-x3", "content": "x"}])
    # X5: a FIFO where the layout's index.json should be: open() would block forever.
    img = Image([tar(("f", "f-x5", "x"))])
    path = os.path.join(OUT, "X5-fifo-in-layout")
    write_layout(path, img.blobs, index([img.desc()]))
    os.remove(os.path.join(path, "index.json"))
    os.mkfifo(os.path.join(path, "index.json"))
    register("X5-fifo-in-layout", "X5-fifo-in-layout", "refuse",
             "index.json is a FIFO in a layout directory", error_contains=["regular file"],
             timeout_s=30)
    # X6: the same opaque whiteout repeated: each used to walk the directory again.
    t = Tar()
    for i in range(4000):
        t.file(f"big/f{i:05d}")
    for _ in range(4000):
        t.file("big/.wh..wh..opq")
    oci("X6-opaque-repeated", [Layer(t.bytes(), "gzip")], "apply",
        "4000 files, then 4000 opaque whiteouts of their directory in the same layer "
        "(quadratic: 47 s before)", max_seconds=20, timeout_s=120,
        checks=[{"file": "big/f00000"}, {"file": "big/f03999"}])
    # X7: symlinked parents make the real tree far deeper than the 256-component name limit;
    # the second layer's DiffID is wrong, so gpurun must remove that tree itself (it ran out
    # of descriptors, one per level, and left the unverified tree in staging).
    step = 200
    t = Tar()
    t.dir("/".join(["d"] * step))
    depth, k = step, 0
    while depth < 1400:
        k += 1
        t.sym(f"s{k}", "/" + "/".join(["d"] * depth))
        t.dir(f"s{k}/" + "/".join(["d"] * step))
        depth += step
    t.file(f"s{k}/" + "/".join(["d"] * step) + "/leaf-x7", "x")
    oci("X7-deep-tree-then-bad-layer",
        [t.bytes(), Layer(tar(("f", "y-x7", "y")), diff_id=sha(b"wrong"))], "refuse",
        f"a {depth}-level real tree built through symlinked parents, then a layer with a wrong "
        "DiffID: the staging tree must be removed, with the common 1024 open-file limit",
        error_contains=[L(2)], timeout_s=120, max_open_files=1024)
    # X8: a zstd frame asking for a 2 GiB window (zstd --long=31 on a stream).
    if ZSTD:
        data = tar(("f", "f-x8", "x" * 4096))
        blob = subprocess.run([ZSTD, "-q", "--long=31", "-c", "--no-check"], input=data,
                              capture_output=True, check=True).stdout
        oci("X8-zstd-2gib-window", [Layer(blob=blob, diff_id=sha(data), mt=MT_ZSTD)], "refuse",
            "zstd frame with a 2 GiB window (2.1 GB of RSS on a 2.5 GB stream before)",
            error_contains=[L(1), "window"], max_rss_mb=BOMB_RSS)
    else:
        skip("X8", "zstd window", "zstd command not found")
    # X9: whiteouts spare entries of their own layer by name, not by inode.
    l1 = tar(("d", "etc"), ("f", "etc/passwd", "root:x:0:0\n"), ("f", "etc/shadow", "root:HASH\n"),
             ("d", "d"), ("f", "d/old", "o"))
    t = Tar()
    t.link("keep-x9", "etc/shadow")
    t.file("etc/.wh.shadow")
    t.add("d/fifo-x9", b"6")
    t.file("d/.wh..wh..opq")
    oci("X9-same-layer-upper-by-name", [l1, t.bytes()], "apply",
        "a hardlink to a lower file does not spare that file from a whiteout in the same "
        "layer; a FIFO of the layer survives its directory's opaque whiteout",
        checks=[{"absent": "etc/shadow"}, {"file": "keep-x9", "content": "root:HASH\n"},
                {"fifo": "d/fifo-x9"}, {"absent": "d/old"}, {"file": "etc/passwd"}])
    # X11: an OCI archive cut inside a blob, and a text file: seeking past the end of a file is
    # no error, so the cut read as a clean end of archive ("no index.json"), and a short file
    # was "truncated" rather than not an archive.
    img = Image([tar(("f", "f-x11", "x" * 20000))])
    path = os.path.join(OUT, "X11-archive-cut.tar")
    write_tar(path, layout_members(img.blobs, index([img.desc()])))
    os.truncate(path, os.path.getsize(path) // 2)
    register("X11-archive-cut", "X11-archive-cut.tar", "refuse",
             "an oci-archive cut in half", error_contains=["truncated", "copy or export it again"])
    with open(os.path.join(OUT, "X11-text-file.tar"), "w") as f:
        f.write("hello\n")
    register("X11-text-file", "X11-text-file.tar", "refuse", "a six-byte text file",
             error_contains=["not a tar archive"])
    # X12: eight layers naming one small blob that inflates to 128 MiB (zeros after the tar's
    # end, which are hashed but never written): only the per-image cap stops the CPU time.
    head = tar(("f", "f-x12", "x"))
    zeros = bytes(16 << 20)
    diff = hash_stream([(head, 1), (zeros, 8)])
    blob = gz(head) + gz(zeros) * 8
    layer = Layer(blob=blob, diff_id=diff, mt=MT_GZ)
    oci("X12-one-blob-many-layers", [layer] * 8, "refuse",
        "eight layers of one 130 KB blob inflating to 128 MiB each; GPURUN_MAX_IMAGE_BYTES=300 MiB",
        env={"GPURUN_MAX_IMAGE_BYTES": str(300 << 20)}, error_contains=[L(3)],
        max_rss_mb=BOMB_RSS, timeout_s=120)
    # X10: entries below a deep existing parent: each used to resolve every prefix from the
    # root (O(depth^2) per entry: 17.5 s for these 4000).
    deep = "/".join(["a"] * 250)
    t = Tar()
    t.dir(deep)
    for i in range(4000):
        t.file(f"{deep}/b{i}/f")
    oci("X10-deep-parent", [Layer(t.bytes(), "gzip")], "apply",
        "4000 files, each in a new directory under a 250-deep parent", max_seconds=10,
        timeout_s=120, checks=[{"file": deep + "/b3999/f"}])


# --------------------------------------------------------------------------------------------
# Outer archive and metadata (table 7.2)


def archive_cases():
    img = Image([BASE])
    # A1
    for suffix, mutate in [
        ("layer-dotdot", lambda m: m[0].update(Layers=["../../etc/passwd"])),
        ("layer-absolute", lambda m: m[0].update(Layers=["/etc/passwd"])),
        ("config-dotdot", lambda m: m[0].update(Config="blobs/../../x"))]:
        man = json.loads(docker_members([(img, ["corpus:a01"])])[-2][2])
        mutate(man)
        members = docker_members([(img, ["corpus:a01"])], manifest_json=jdump(man))
        write_tar(os.path.join(OUT, f"A01-{suffix}.tar"), members)
        bad = man[0]["Layers"][0] if "layer" in suffix else man[0]["Config"]
        register(f"A01-{suffix}", f"A01-{suffix}.tar", "refuse",
                 f"docker-archive manifest.json names {bad!r}", error_contains=[bad])
    # A2
    lay_hex = sha(img.layers[0].blob).split(":")[1]

    def oci_archive_with(name, replace):
        members = []
        for m in layout_members(img.blobs, index([img.desc()])):
            members.append(replace(m) if m[0] == "f" and m[1].endswith(lay_hex) else m)
        write_tar(os.path.join(OUT, name), members)

    oci_archive_with("A02-blob-symlink.tar",
                     lambda m: ("s", m[1], SENTINEL + "/file"))
    register("A02-blob-symlink", "A02-blob-symlink.tar", "refuse",
             "OCI archive: the layer blob member is a symlink to /tmp/gpurun-sentinel/file",
             error_contains=[lay_hex[:12]])
    members = [("f", "extra-layer-copy", img.layers[0].blob)]
    members += [("h", m[1], "extra-layer-copy") if m[0] == "f" and m[1].endswith(lay_hex)
                else m for m in layout_members(img.blobs, index([img.desc()]))]
    write_tar(os.path.join(OUT, "A02-blob-hardlink.tar"), members)
    register("A02-blob-hardlink", "A02-blob-hardlink.tar", "refuse",
             "OCI archive: the layer blob member is a hardlink (to a member with the right bytes)",
             error_contains=[lay_hex[:12]])
    dimg = Image([BASE, tar(("f", "second", "2"))])
    members = docker_members([(dimg, ["corpus:a02"])])
    layer_tars = [m for m in members if m[1].endswith("/layer.tar")]
    members = [("s", m[1], SENTINEL + "/file") if m is layer_tars[1] else m for m in members]
    write_tar(os.path.join(OUT, "A02-docker-layer-symlink-absolute.tar"), members)
    register("A02-docker-layer-symlink-absolute", "A02-docker-layer-symlink-absolute.tar",
             "refuse", "docker-archive: <id>/layer.tar -> /tmp/gpurun-sentinel/file",
             error_contains=[layer_tars[1][1].split("/")[0][:12]])
    # two hops: layer 2 -> ../hop/layer.tar -> ../<id1>/layer.tar
    members = docker_members([(dimg, ["corpus:a02"])])
    first = layer_tars[0][1]
    members = [("s", m[1], "../hop/layer.tar") if m[1] == layer_tars[1][1] else m
               for m in members]
    members[-2:-2] = [("d", "hop/"), ("s", "hop/layer.tar", "../" + first)]
    write_tar(os.path.join(OUT, "A02-docker-layer-symlink-2hop.tar"), members)
    register("A02-docker-layer-symlink-2hop", "A02-docker-layer-symlink-2hop.tar", "refuse",
             "docker-archive: a layer.tar symlink to another symlink (only one hop allowed)",
             error_contains=[layer_tars[1][1].split("/")[0][:12]])
    # A3
    other = Image([tar(("f", "other-image", "o"))])
    both = dict(img.blobs)
    both.update(other.blobs)
    for suffix, second in [("", "index.json"), ("-dot", "./index.json")]:
        members = layout_members(both, index([img.desc()]))
        members.append(("f", second, index([other.desc()])))
        write_tar(os.path.join(OUT, f"A03-duplicate-index{suffix}.tar"), members)
        register(f"A03-duplicate-index{suffix}", f"A03-duplicate-index{suffix}.tar", "refuse",
                 f"OCI archive with index.json and {second!r}, different contents",
                 error_contains=["index.json", ["duplicate", "twice", "more than once"]])
    members = docker_members([(img, ["corpus:a03"])])
    members.insert(-1, ("f", "manifest.json", jdump([])))
    write_tar(os.path.join(OUT, "A03-duplicate-manifest-json.tar"), members)
    register("A03-duplicate-manifest-json", "A03-duplicate-manifest-json.tar", "refuse",
             "docker-archive with two manifest.json members",
             error_contains=["manifest.json", ["duplicate", "twice", "more than once"]])
    # A4: bad digests in the layer descriptor; the blob is stored under the bad name too
    real = sha(img.layers[0].blob)
    hx = real.split(":")[1]
    for suffix, bad in [("uppercase", "sha256:" + hx.upper()), ("short", "sha256:" + hx[:63]),
                        ("dotdot", "sha256:../../../../x"), ("md5", "md5:" + hx[:32]),
                        ("sha256-long", "sha256:" + hx + "0")]:
        im = Image([BASE], man=lambda m, bad=bad: m["layers"][0].update(digest=bad))
        blobs = {k: v for k, v in im.blobs.items()}
        path = os.path.join(OUT, f"A04-digest-{suffix}")
        write_layout(path, blobs, index([im.desc()]))
        if "/" not in bad:
            alg, enc = bad.split(":", 1)
            os.makedirs(os.path.join(path, "blobs", alg), exist_ok=True)
            with open(os.path.join(path, "blobs", alg, enc), "wb") as f:
                f.write(img.layers[0].blob)
        register(f"A04-digest-{suffix}", f"A04-digest-{suffix}", "refuse",
                 f"layer digest {bad[:30]}...", error_contains=[bad[:20]])
    # A5
    for suffix, size in [("plus-one", len(img.layers[0].blob) + 1),
                         ("minus-one", len(img.layers[0].blob) - 1),
                         ("negative", -1), ("huge", 1 << 62)]:
        oci(f"A05-size-{suffix}", [BASE], "refuse", f"layer descriptor size {size}",
            img_kw={"man": lambda m, s=size: m["layers"][0].update(size=s)},
            error_contains=[["size", str(size)]])
    oci("A05-config-size", [BASE], "refuse", "config descriptor size one short",
        img_kw={"man": lambda m: m["config"].update(size=m["config"]["size"] - 1)},
        error_contains=[["size", "config"]])
    # A6 (scaled: 5 MiB, above the 4 MiB cap)
    oci("A06-config-huge", [BASE], "refuse", "a 5 MiB config (the cap is 4 MiB)",
        img_kw={"cfg": lambda c: c["config"].update(Labels={"pad": "p" * (5 << 20)})},
        error_contains=[["config", "too large", "too big", "limit"]])
    im = Image([BASE])
    raw_layout("A06-index-huge", im.blobs,
               index([im.desc()], annotations={"pad": "p" * (5 << 20)}), "refuse",
               "a 5 MiB index.json", error_contains=["index.json"])
    # A7
    blobs = dict(im.blobs)
    top = im.desc()
    for _ in range(100):
        doc = index([top])
        blobs[sha(doc)] = doc
        top = desc(MT_INDEX, doc)
    raw_layout("A07-index-depth-100", blobs, index([top]), "refuse",
               "100 nested indexes", error_contains=[["depth", "nest", "deep"]])
    fake = sha(b"cycle")
    doc, size = b"", 0
    for _ in range(5):
        doc = index([{"mediaType": MT_INDEX, "digest": fake, "size": size}])
        size = len(doc)
    blobs = dict(im.blobs)
    blobs[fake] = doc
    raw_layout("A07-index-cycle", blobs,
               index([{"mediaType": MT_INDEX, "digest": fake, "size": size}]), "refuse",
               "index -> nested index that names itself (only possible with a wrong digest)",
               error_contains=[fake.split(":")[1][:12]])
    # A8
    oci("A08-manifest-and-manifests", [BASE], "refuse",
        "a manifest that also has a 'manifests' list (CVE-2021-41190)",
        img_kw={"man": lambda m: m.update(manifests=[])},
        error_contains=[["manifests", "ambiguous", "both"]])
    inner = Image([tar(("f", "smuggled-image-a08", "x"))])
    idx_doc = index([inner.desc()])
    blobs = dict(inner.blobs)
    blobs[sha(idx_doc)] = idx_doc
    raw_layout("A08-mediatype-mismatch", blobs,
               index([desc(MT_MANIFEST, idx_doc)]), "refuse",
               "index.json says manifest, the blob is an index document",
               error_contains=[["media type", "mediatype", "expected"]])
    blobs = dict(im.blobs)
    raw_layout("A08-mediatype-mismatch-index", blobs,
               index([desc(MT_INDEX, im.manifest)]), "refuse",
               "index.json says index, the blob is a manifest document",
               error_contains=[["media type", "mediatype", "expected"]])
    # A9
    oci("A09-rootfs-type", [BASE], "refuse", "rootfs.type 'foo'",
        img_kw={"cfg": lambda c: c["rootfs"].update(type="foo")},
        error_contains=[["foo", "rootfs"]])
    oci("A09-diffids-short", [BASE, tar(("f", "x", "x"))], "refuse", "one diff_id for 2 layers",
        img_kw={"cfg": lambda c: c["rootfs"]["diff_ids"].pop()}, error_contains=["diff"])
    oci("A09-diffids-long", [BASE], "refuse", "two diff_ids for 1 layer",
        img_kw={"cfg": lambda c: c["rootfs"]["diff_ids"].append(sha(b"extra"))},
        error_contains=["diff"])
    dimg = Image([BASE, tar(("f", "x", "x"))], cfg=lambda c: c["rootfs"]["diff_ids"].pop())
    write_tar(os.path.join(OUT, "A09-docker-diffids-short.tar"),
              docker_members([(dimg, ["corpus:a09"])]))
    register("A09-docker-diffids-short", "A09-docker-diffids-short.tar", "refuse",
             "docker-archive: 2 Layers, 1 diff_id", error_contains=["diff"])
    # A10
    empty = b"{}"
    man = {"schemaVersion": 2, "mediaType": MT_MANIFEST,
           "artifactType": "application/vnd.example.corpus",
           "config": desc(MT_EMPTY, empty), "layers": [desc(MT_TAR, BASE)]}
    manb = jdump(man)
    raw_layout("A10-empty-config", {sha(empty): empty, sha(BASE): BASE, sha(manb): manb},
               index([desc(MT_MANIFEST, manb)]), "refuse",
               "artifact: config media type application/vnd.oci.empty.v1+json",
               error_contains=[["runnable", "vnd.oci.empty", "artifact"]])
    stmt = jdump({"_type": "https://in-toto.io/Statement/v0.1", "subject": []})
    oci("A10-intoto-layer", [BASE], "refuse",
        "attestation: an application/vnd.in-toto+json layer",
        img_kw={"man": lambda m: m["layers"].append(desc("application/vnd.in-toto+json", stmt)),
                "cfg": lambda c: c["rootfs"]["diff_ids"].append(sha(stmt))},
        error_contains=[["in-toto", "media type", "mediatype", "runnable"]])
    # the in-toto blob itself must be present for that one
    with open(os.path.join(OUT, "A10-intoto-layer", "blobs", "sha256",
                           sha(stmt).split(":")[1]), "wb") as f:
        f.write(stmt)
    multiplatform_cases()


def multiplatform_cases():
    host = Image([tar(("f", "arch", HOST_ARCH))])
    oth = Image([tar(("f", "arch", OTHER_ARCH))], arch=OTHER_ARCH)
    stmt = jdump({"_type": "https://in-toto.io/Statement/v0.1", "subject": []})
    att_cfg = b"{}"
    att_man = jdump({"schemaVersion": 2, "mediaType": MT_MANIFEST,
                     "config": desc(MT_CONFIG, att_cfg),
                     "layers": [desc("application/vnd.in-toto+json", stmt)]})
    att_desc = desc(MT_MANIFEST, att_man, platform={"architecture": "unknown", "os": "unknown"},
                    annotations={"vnd.docker.reference.type": "attestation-manifest",
                                 "vnd.docker.reference.digest": sha(host.manifest)})

    def plat(a):
        return {"architecture": a, "os": "linux"}

    for suffix, keep_other in [("manifest-missing", set()),
                               ("layers-missing", {sha(oth.manifest)})]:
        nested = index([att_desc, oth.desc(platform=plat(OTHER_ARCH)),
                        host.desc(platform=plat(HOST_ARCH))])
        blobs = dict(host.blobs)
        blobs.update({k: v for k, v in oth.blobs.items() if k in keep_other})
        blobs[sha(nested)] = nested
        blobs[sha(att_man)] = att_man
        blobs[sha(att_cfg)] = att_cfg
        blobs[sha(stmt)] = stmt
        top = index([desc(MT_INDEX, nested, annotations={
            "io.containerd.image.name": "docker.io/library/corpus:a11",
            "org.opencontainers.image.ref.name": "a11"})])
        name = f"A11-multiplatform-{suffix}"
        write_layout(os.path.join(OUT, name), blobs, top)
        register(name + "-host", name, "apply",
                 f"containerd-store save, nested index: attestation, {OTHER_ARCH} ({suffix}), "
                 f"{HOST_ARCH}: the default platform runs",
                 checks=[{"file": "arch", "content": HOST_ARCH}])
        register(name + "-other", name, "refuse",
                 f"--platform linux/{OTHER_ARCH} whose blobs are absent",
                 platform=f"linux/{OTHER_ARCH}", error_contains=[OTHER_ARCH])
    lay = Layer(tar(("f", "foreign-a11", "f")), "gzip", mt=MT_ND_GZ)
    urls = ["http://127.0.0.1:9/corpus-layer"]
    im = Image([BASE, lay],
               man=lambda m: m["layers"][1].update(urls=urls))
    blobs = {k: v for k, v in im.blobs.items() if k != sha(lay.blob)}
    raw_layout("A11-urls-blob-absent", blobs, index([im.desc()]), "refuse",
               "non-distributable layer with urls and no blob: never fetched",
               error_contains=[sha(lay.blob).split(":")[1][:12]], timeout_s=60)
    raw_layout("A11-urls-blob-present", im.blobs, index([im.desc()]), "apply",
               "non-distributable layer with urls, blob present: used",
               checks=[{"file": "foreign-a11", "content": "f"}])


def run_config_cases():
    """A12: image-config values the run stage must not trust (`gpurun --dry-run IMAGE true`).
    gpurun runs as the caller whatever `User` says, so these may either be refused or be
    planned with the caller's own uid and gid; what must never happen is another identity, a
    hang on a FIFO or an unbounded read of the image's /etc/passwd (CVE-2024-9676)."""
    passwd = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n"
    good = tar(("d", "etc"), ("f", "etc/passwd", passwd), ("f", "etc/group", "root:x:0:\n"),
               ("d", "bin"), ("f", "bin/true", "#!corpus\n", 0o755))
    caller = [{"plan_ids": "caller"}]
    for suffix, user in [("uid-2-32", "4294967296"), ("uid-2-31", "2147483648"),
                         ("uid-minus-one", "-1"), ("gid-2-32", "1000:4294967296"),
                         ("root", "0:0")]:
        oci(f"A12-user-{suffix}", [good], "apply-or-refuse",
            f"config User {user!r}: refused, or ignored (the plan runs as the caller)",
            img_kw={"cfg": lambda c, u=user: c["config"].update(User=u)},
            stage="dry-run", checks=caller,
            error_contains=["user", [f'"{user}"', f"'{user}'", f"`{user}`", f" {user} ",
                                     f" {user}:", f" {user}\n", f" {user})"]])
    for suffix, entry in [("symlink-dev-zero", ("s", "etc/passwd", "/dev/zero")),
                          ("symlink-host", ("s", "etc/passwd", SENTINEL + "/file")),
                          ("fifo", None)]:
        t = Tar()
        t.dir("etc")
        if entry:
            t.sym(entry[1], entry[2])
        else:
            t.add("etc/passwd", b"6")
        t.file("bin/true", "#!corpus\n", mode=0o755)
        oci(f"A12-passwd-{suffix}", [t.bytes()], "apply-or-refuse",
            f"User 'alice' with etc/passwd as a {suffix}: read in-root, regular files only, "
            "without blocking", img_kw={"cfg": lambda c: c["config"].update(User="alice")},
            stage="dry-run", checks=caller, error_contains=["passwd"], timeout_s=30)
    big = 1 << 30
    t = Tar("gnu")
    t.dir("etc")
    t.raw(gnu_sparse_header("etc/passwd", big, [(big - 512, 512)]) + (b"x" * 511 + b"\n"))
    t.file("bin/true", "#!corpus\n", mode=0o755)
    oci("A12-passwd-huge", [t.bytes()], "apply-or-refuse",
        "etc/passwd is a 1 GiB (sparse) file: the read must be capped",
        img_kw={"cfg": lambda c: c["config"].update(User="alice")}, stage="dry-run",
        checks=caller, error_contains=["passwd"], max_rss_mb=BOMB_RSS, timeout_s=60)


# --------------------------------------------------------------------------------------------
# Legitimate edge cases (table 7.3)


def legit_cases():
    oci("L01-whiteout-dir", [tar(("d", "b"), ("f", "b/c/d", "d"), ("f", "keep-l01", "k")),
                             tar(("f", ".wh.b", ""))], "apply", ".wh.b removes the tree",
        checks=[{"absent": "b"}, {"file": "keep-l01", "content": "k"}])
    lower = tar(("f", "a/b/c/bar", "bar"), ("f", "a/other", "o"), ("f", "a/b/sib", "s"))
    upper = [("d", "a"), ("f", "a/.wh..wh..opq", ""), ("d", "a/b"), ("d", "a/b/c"),
             ("f", "a/b/c/foo", "foo")]
    chk = [{"file": "a/b/c/foo", "content": "foo"}, {"entries": "a", "names": ["b"]},
           {"entries": "a/b", "names": ["c"]}, {"entries": "a/b/c", "names": ["foo"]}]
    oci("L02-opaque", [lower, tar(*upper)], "apply", "spec example: opaque first", checks=chk)
    oci("L02-opaque-last", [lower, tar(*(upper[:1] + upper[2:] + upper[1:2]))], "apply",
        "spec example: opaque entry last", checks=chk)
    oci("L03-same-layer-whiteout",
        [tar(("f", "f", "one"), ("f", "g", "one")),
         tar(("f", "f", "two"), ("f", ".wh.f", ""), ("f", ".wh.g", ""), ("f", "g", "two"))],
        "apply", "a whiteout does not hide a file of its own layer, in either order",
        checks=[{"file": "f", "content": "two"}, {"file": "g", "content": "two"}])
    oci("L03-same-layer-opaque",
        [tar(("f", "d/old", "old")), tar(("f", "d/new", "new"), ("f", "d/.wh..wh..opq", ""))],
        "apply", "d/new then d/.wh..wh..opq: new survives, lower d/* gone",
        checks=[{"entries": "d", "names": ["new"]}, {"file": "d/new", "content": "new"}])
    py = b"\x7fELF" + bytes(range(256)) * 8
    l1 = tar(("d", "usr/bin"), ("f", "usr/bin/python3", py, 0o755))
    l2 = tar(("h", "usr/bin/python", "usr/bin/python3"))
    oci("L04-hardlink-lower", [l1, l2], "apply", "hardlink to a file of a lower layer",
        checks=[{"same_inode": ["usr/bin/python", "usr/bin/python3"]},
                {"file": "usr/bin/python", "content_hex": py.hex(), "mode": "0755"}])
    oci("L04-hardlink-then-whiteout", [l1, l2, tar(("f", "usr/bin/.wh.python3", ""))],
        "apply", "the link survives the whiteout of its target",
        checks=[{"absent": "usr/bin/python3"},
                {"file": "usr/bin/python", "content_hex": py.hex()}])
    d1 = tar(("d", "usr"), ("d", "usr/lib"), ("s", "lib", "usr/lib"))
    d2 = tar(("f", "lib/x.so", "so"))
    oci("L05-dirlink-parent", [d1, d2], "apply", "lib -> usr/lib, then lib/x.so",
        checks=[{"symlink": "lib", "target": "usr/lib"}, {"file": "usr/lib/x.so", "content": "so"}])
    oci("L05-dirlink-replaced", [d1, d2, tar(("d", "lib"))], "apply",
        "a directory entry replaces the symlink lib",
        checks=[{"dir": "lib"}, {"empty_dir": "lib"}, {"file": "usr/lib/x.so", "content": "so"}])
    oci("L06-absolute-parent-symlink",
        [tar(("d", "tmp/gpurun-sentinel/run"), ("d", "tmp/gpurun-sentinel/dir"), ("d", "var"),
             ("s", "var/run", SENTINEL + "/run"), ("s", "var/lock", SENTINEL + "/dir")),
         tar(("f", "var/run/app.pid", "42"), ("f", "var/lock/x.lock", "l"))], "apply",
        "var/run -> /tmp/gpurun-sentinel/run (like Debian's var/run -> /run), then "
        "var/run/app.pid: the absolute parent resolves in the rootfs",
        checks=[{"file": "tmp/gpurun-sentinel/run/app.pid", "content": "42"},
                {"file": "tmp/gpurun-sentinel/dir/x.lock", "content": "l"},
                {"symlink": "var/run", "target": SENTINEL + "/run"}])
    oci("L07-type-changes",
        [tar(("f", "x", "file"), ("d", "y"), ("f", "y/child", "c"), ("f", "y/sub/deep", "d"),
             ("d", "z"), ("f", "z/zc", "z")),
         tar(("d", "x"), ("f", "x/kid", "kid"), ("f", "y", "y-file"), ("s", "z", "y"))],
        "apply", "file -> dir, dir tree -> file, dir -> symlink",
        checks=[{"entries": "x", "names": ["kid"]}, {"file": "y", "content": "y-file"},
                {"symlink": "z", "target": "y"}])
    long_names()
    byte_names()
    empties()
    t = Tar()
    t.file("etc/shadow", "root:*:1::::::\n", mode=0o000)
    t.dir("tmp", mode=0o1777)
    t.file("usr/bin/ping", "ping", mode=0o755,
           xattrs={"security.capability": b"\x01\x00\x00\x02\x00\x20\x00\x00" + bytes(12)})
    t.file("bin/sudo", "sudo", mode=0o4755)
    oci("L11-modes", [t.bytes()], "skip-warn",
        "0000 kept, sticky kept, capability xattr dropped with a warning, setuid stripped",
        warn_contains=[["security.capability", "xattr"]],
        checks=[{"file": "etc/shadow", "mode": "0000"}, {"dir": "tmp", "mode": "1777"},
                {"file": "usr/bin/ping", "mode": "0755"}, {"file": "bin/sudo", "mode": "0755"}])
    oci("L12-readonly-dirs",
        [tar(("d", "usr", 0o555), ("f", "usr/a", "old"), ("d", "opt", 0o000)),
         tar(("f", "usr/b", "b"), ("f", "usr/a", "new"), ("f", "opt/inside", "i"))], "apply",
        "layer 2 writes into a 0555 and a 0000 directory of layer 1",
        checks=[{"dir": "usr", "mode": "0555"}, {"dir": "opt", "mode": "0000"},
                {"file": "usr/a", "content": "new"}, {"file": "usr/b", "content": "b"}])
    t = Tar()
    t.dir("m", mtime=1111111111)
    t.file("m/c1", "1")
    t.dir("m/sub", mtime=1222222222)
    t.file("m/sub/c2", "2")
    t.file("mtime-fraction", "f", pax=[("mtime", "1700000000.123456789")], mtime=1600000000)
    t.file("m/c3", "3")
    oci("L13-dir-mtimes", [t.bytes()], "apply",
        "directory mtimes equal the headers after children arrive; PAX fractional mtime",
        checks=[{"dir": "m", "mtime": 1111111111}, {"dir": "m/sub", "mtime": 1222222222},
                {"file": "mtime-fraction", "mtime": 1700000000}])
    for suffix, kw in [("zero", {"mtime": 0}), ("negative-base256", {"mtime": -1}),
                       ("negative-pax", {"pax": [("mtime", "-1.5")]}),
                       ("year-2500", {"mtime": 16725225600})]:
        t = Tar()
        t.dir("odd", **kw)
        t.file("odd/f", "f", **kw)
        oci(f"L13-mtime-{suffix}", [t.bytes()], "apply",
            f"an odd mtime ({kw}) on a file and a directory: clamped or warned, not fatal",
            checks=[{"file": "odd/f", "content": "f"}])
    oci("L14-implicit-parents-and-duplicates",
        [tar(("f", "a/b/c/f", "f"), ("f", "dup", "first"), ("f", "dup", "second"))], "apply",
        "parents created 0755; the last duplicate wins",
        checks=[{"dir": "a", "mode": "0755"}, {"dir": "a/b/c", "mode": "0755"},
                {"file": "a/b/c/f", "content": "f"}, {"file": "dup", "content": "second"}])
    streams()
    docker_compat()


def long_names():
    def nm(n, tag):
        """A path of exactly n bytes ending in /tag, components of at most 90 bytes."""
        parts, left = [], n - len(tag)
        while left > 0:
            k = min(90, left - 1)
            if left - (k + 1) == 1:
                k -= 1
            parts.append("d" * k + "/")
            left -= k + 1
        p = "".join(parts) + tag
        assert len(p) == n, (n, len(p))
        return p

    checks = []
    layers = []
    for fmt, sizes in [("ustar", [99, 100, 150, 250]), ("gnu", [101, 256, 1000]),
                       ("pax", [101, 256, 1000])]:
        t = Tar(fmt)
        for n in sizes:
            p = nm(n, f"{fmt}{n}")
            if fmt == "ustar" and n == 250:  # fits only as a 150-byte prefix + 99-byte name
                p = "d" * 150 + "/" + "e" * 90 + "/ustar250"
            t.file(p, p)
            checks.append({"file": p, "content": p})
        if fmt != "ustar":  # a 255-byte component does not fit a ustar name field
            comp = "c" * 255
            t.file(f"{fmt}-dir/{comp}", "255")
            checks.append({"file": f"{fmt}-dir/{comp}", "content": "255"})
            target = ("t" * 99 + "/") * 10
            t.sym(f"{fmt}-longlink", target)
            checks.append({"symlink": f"{fmt}-longlink", "target": target})
        layers.append(t.bytes())
    oci("L08-long-names", layers, "apply",
        "99/100/150/250-byte ustar names (prefix field), 101/256/1000 via GNU L and PAX path, "
        "255-byte components, 1000-byte symlink targets via GNU K and PAX linkpath",
        checks=checks)


def byte_names():
    names = [b"\xff\xfe-bytes", b"caf\xe9", b"new\nline", b"back\\slash", b"co:lon",
             b"-leading-dash", b".wh", b"foo.wh.bar", b"sp ace"]
    t = Tar("gnu")
    for n in names:
        t.file(n, n)
    t.dir(b"dir\xff")
    t.file(b"dir\xff/.wh", b"inner")
    checks = [{"entries": ".", "names_hex": sorted([n.hex() for n in names] + ["646972ff"])},
              {"entries": "hex:646972ff", "names": [".wh"]}]
    checks += [{"file": "hex:" + n.hex(), "content_hex": n.hex()} for n in names]
    oci("L09-byte-names", [t.bytes()], "apply",
        "names with 0xff, Latin-1, newline, backslash, colon, leading dash; '.wh' is no whiteout",
        checks=checks)


def empties():
    realsize = 100 << 20
    t = Tar("gnu")
    t.raw(gnu_sparse_header("sparse-l10", realsize, [(realsize - 4, 4)]) + _pad(b"DATA"))
    t.file("empty-l10", b"")
    h = hashlib.sha256()
    zero = bytes(1 << 20)
    for _ in range(99):
        h.update(zero)
    h.update(bytes((1 << 20) - 4) + b"DATA")
    oci("L10-gnu-sparse", [t.bytes()], "apply", "old GNU sparse 100 MiB with 4 data bytes",
        checks=[{"file": "sparse-l10", "size": realsize, "sha256": h.hexdigest()},
                {"file": "empty-l10", "size": 0}])
    gnu_empty = bytes(10240)
    for suffix, stream in [("0", b""), ("1024", bytes(1024)), ("10240", gnu_empty)]:
        for comp in ["none", "gzip"]:
            name = f"L10-empty-layer-{suffix}" + ("-gzip" if comp == "gzip" else "")
            oci(name, [BASE, Layer(stream, comp), tar(("f", "top-l10", "t"))], "apply",
                f"an empty layer of {suffix} bytes ({comp}) between two others",
                checks=[{"file": "etc/os-release", "content": "ID=corpus\n"},
                        {"file": "top-l10", "content": "t"}])


def streams():
    body = tar(("f", "stream-l15", "s" * 5000), ("d", "sd"), ("f", "sd/x", "x"))
    chk = [{"file": "stream-l15", "content": "s" * 5000}, {"file": "sd/x", "content": "x"}]
    oci("L15-trailing-zero-blocks", [Layer(body + bytes(9 * 1024))], "apply",
        "GNU blocking: extra zero blocks after end-of-archive", checks=chk)
    padded = body + bytes(9 * 1024)
    oci("L15-gzip-trailing-nuls",
        [Layer(blob=gz(body) + bytes(512), diff_id=sha(body), mt=MT_GZ)], "apply",
        "gzip followed by 512 NUL bytes", checks=chk)
    third = len(padded) // 3
    multi = gz(padded[:third]) + gz(padded[third:2 * third]) + gz(padded[2 * third:])
    oci("L15-gzip-multi-member", [Layer(blob=multi, diff_id=sha(padded), mt=MT_GZ)], "apply",
        "three gzip members (pigz / eStargz style)", checks=chk)
    if ZSTD:
        oci("L15-zstd", [Layer(body, "zstd")], "apply", "plain zstd layer", checks=chk)
        chunked = (zstd_c(body[:1024]) + zstd_skippable(b"toc-ish") + zstd_c(body[1024:])
                   + zstd_skippable(b'{"version":1,"entries":[]}', 0xE))
        oci("L15-zstd-chunked", [Layer(blob=chunked, diff_id=sha(body), mt=MT_ZSTD)], "apply",
            "zstd frames with skippable frames between and after (zstd:chunked)", checks=chk)
    else:
        skip("L15", "zstd and zstd:chunked layers", "zstd command not found")


def docker_compat():
    la = tar(("f", "f", "from-A"), ("f", "a-only", "a"))
    lb = tar(("f", "f", "from-B"), ("f", "g", "b"))
    chk = [{"file": "f", "content": "from-A"}, {"file": "g", "content": "b"},
           {"file": "a-only", "content": "a"}]
    # docker media types + manifest list inside an OCI layout
    img = Image([Layer(la, "gzip"), Layer(lb, "gzip"), Layer(la, "gzip")], docker_types=True)
    mlist = jdump({"schemaVersion": 2, "mediaType": MT_D_LIST, "manifests": [
        img.desc(platform={"architecture": HOST_ARCH, "os": "linux"})]})
    blobs = dict(img.blobs)
    blobs[sha(mlist)] = mlist
    raw_layout("L16-docker-media-types", blobs, index([desc(MT_D_LIST, mlist)]), "apply",
               "Docker manifest list v2 + schema2 manifest + diff.tar.gzip layers in a layout; "
               "the same layer listed twice (A, B, A)", checks=chk)
    img = Image([la, lb, la])
    oci("L16-same-layer-twice", [la, lb, la], "apply",
        "an OCI manifest listing the same layer digest twice: applied twice", checks=chk)
    write_tar(os.path.join(OUT, "L16-docker-archive-legacy.tar"),
              docker_members([(img, ["corpus:l16"])]))
    register("L16-docker-archive-legacy", "L16-docker-archive-legacy.tar", "apply",
             "Docker <= 24 save: <id>/layer.tar, the repeated layer as a ../<id>/layer.tar symlink",
             checks=chk)
    write_tar(os.path.join(OUT, "L16-docker-archive-skopeo.tar"),
              docker_members([(img, ["corpus:l16"])], style="skopeo"))
    register("L16-docker-archive-skopeo", "L16-docker-archive-skopeo.tar", "apply",
             "skopeo/podman docker-archive: <hex>.tar at the root, <id>/layer.tar symlinks",
             checks=chk)
    write_tar(os.path.join(OUT, "L16-oci-archive.tar"),
              layout_members(img.blobs, index([img.desc()])))
    register("L16-oci-archive", "L16-oci-archive.tar", "apply", "OCI layout in a tar",
             checks=chk)
    # Docker 25+: OCI layout plus manifest.json and repositories
    ann = {"io.containerd.image.name": "docker.io/library/corpus:l16",
           "org.opencontainers.image.ref.name": "l16"}
    members = layout_members(img.blobs, index([img.desc(annotations=ann)]))
    manifest = [{"Config": "blobs/" + sha(img.config).replace(":", "/"),
                 "RepoTags": ["corpus:l16"],
                 "Layers": ["blobs/" + l.diff_id.replace(":", "/") for l in img.layers]}]
    members += [("f", "manifest.json", jdump(manifest)),
                ("f", "repositories", jdump({"corpus": {"l16": sha(img.config)[7:]}}))]
    write_tar(os.path.join(OUT, "L16-docker25-save.tar"), members)
    register("L16-docker25-save", "L16-docker25-save.tar", "apply",
             "Docker 25+ save: OCI layout with manifest.json and repositories", checks=chk)
    # several images: --ref picks one, none given is an error that lists them
    alpha = Image([tar(("f", "which", "alpha"))])
    beta = Image([tar(("f", "which", "beta"))])
    blobs = dict(alpha.blobs)
    blobs.update(beta.blobs)
    idx = index([alpha.desc(annotations={"org.opencontainers.image.ref.name": "corpus-alpha"}),
                 beta.desc(annotations={"org.opencontainers.image.ref.name": "corpus-beta"})])
    write_layout(os.path.join(OUT, "L16-two-images"), blobs, idx)
    register("L16-ref-select", "L16-two-images", "apply", "--ref corpus-beta in a 2-image layout",
             ref="corpus-beta", checks=[{"file": "which", "content": "beta"}])
    register("L16-ref-required", "L16-two-images", "refuse",
             "two images and no --ref: an error naming both",
             error_contains=["corpus-alpha", "corpus-beta"])
    write_tar(os.path.join(OUT, "L16-docker-two-images.tar"),
              docker_members([(alpha, ["corpus:alpha"]), (beta, ["corpus:beta"])]))
    register("L16-docker-ref-select", "L16-docker-two-images.tar", "apply",
             "--ref corpus:beta in a 2-image docker-archive", ref="corpus:beta",
             checks=[{"file": "which", "content": "beta"}])


def basics():
    oci("OK-basic-oci", [BASE, Layer(tar(("f", "top", "top")), "gzip")], "apply",
        "a plain two-layer OCI layout (if this fails, everything else will)",
        checks=[{"file": "etc/os-release", "content": "ID=corpus\n"},
                {"file": "top", "content": "top"}, {"dir": "etc", "mode": "0755"}])


def main():
    global OUT
    if len(sys.argv) != 2:
        sys.exit("usage: make_corpus.py OUTDIR")
    final = os.path.abspath(sys.argv[1])
    if os.path.exists(final) and os.listdir(final) and not os.path.exists(
            os.path.join(final, "cases.json")):
        sys.exit(f"{final} exists and is not a corpus; refusing to replace it")
    # Built beside the target and renamed into place, so a reader never sees half a corpus.
    OUT = final + ".partial-%d" % os.getpid()
    os.umask(0o022)
    os.makedirs(OUT)
    try:
        build(final)
    except BaseException:
        shutil.rmtree(OUT, ignore_errors=True)
        raise


def build(final):
    basics()
    hostile_paths()
    hostile_whiteouts()
    hostile_special()
    hostile_bombs()
    hostile_headers()
    hostile_digests()
    review_cases()
    archive_cases()
    run_config_cases()
    legit_cases()
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "duplicate case names"
    with open(__file__, "rb") as f:
        me = hashlib.sha256(f.read()).hexdigest()
    doc = {"format": 1, "sentinel": SENTINEL, "generator_sha256": me,
           "host_arch": HOST_ARCH, "skipped": SKIPPED, "cases": CASES}
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    if os.path.exists(final):
        old = final + ".old-%d" % os.getpid()
        os.rename(final, old)
        shutil.rmtree(old)
    os.rename(OUT, final)


if __name__ == "__main__":
    main()
