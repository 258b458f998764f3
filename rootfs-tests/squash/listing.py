#!/usr/bin/env python3
"""Prints a JSON listing of a directory tree: per path, its type, mode, size, content digest,
symlink target, user.* xattrs and hard-link group (the first path, in sorted order, of the
paths sharing its inode). rootfs-tests/squash.rs computes the same of what gpurun extracted.

Usage: listing.py DIR > listing.json"""
import hashlib
import json
import os
import stat
import sys

root = sys.argv[1]
entries = {}
by_inode = {}
for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for name in sorted(dirnames + filenames):
        full = os.path.join(dirpath, name)
        rel = os.path.relpath(full, root)
        st = os.lstat(full)
        e = {"mode": stat.S_IMODE(st.st_mode)}
        if stat.S_ISDIR(st.st_mode):
            e["type"] = "dir"
        elif stat.S_ISLNK(st.st_mode):
            e["type"] = "symlink"
            e["target"] = os.readlink(full)
            del e["mode"]
        elif stat.S_ISFIFO(st.st_mode):
            e["type"] = "fifo"
        elif stat.S_ISREG(st.st_mode):
            e["type"] = "file"
            e["size"] = st.st_size
            h = hashlib.sha256()
            with open(full, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            e["sha256"] = h.hexdigest()
            if st.st_nlink > 1:
                by_inode.setdefault(st.st_ino, []).append(rel)
        else:
            e["type"] = "other"
        if not stat.S_ISLNK(st.st_mode):
            xattrs = {}
            for x in sorted(os.listxattr(full, follow_symlinks=False)):
                if x.startswith("user."):
                    xattrs[x] = os.getxattr(full, x, follow_symlinks=False).hex()
            if xattrs:
                e["xattrs"] = xattrs
        entries[rel] = e
for paths in by_inode.values():
    first = min(paths)
    for p in paths:
        entries[p]["link_group"] = first
json.dump(entries, sys.stdout, indent=1, sort_keys=True)
