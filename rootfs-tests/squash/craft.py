#!/usr/bin/env python3
"""Crafts hostile SquashFS images that are valid enough to be walked: they attack the reader's
resource bounds, not its parsing. Used by rootfs-tests/squash.rs.

  craft.py hardlinks OUT BLOCKS N   one file inode of BLOCKS holes (all-zero block words), linked
                                    from N names: its block list must be read once, not N times
  craft.py xattrs OUT N K           N files sharing one xattr id of K xattrs, all pointing at one
                                    64 KiB out-of-line value
  craft.py whiteouts OUT N [PREFIX] N files named PREFIX%07d (default '.wh.f'), each 32 blocks
                                    long, sharing the same compressed data
  craft.py deep OUT M L             L nested directories whose listings are suffixes of one byte
                                    stream ending in M names
  craft.py tinyblocks OUT N V       N files sharing one V-byte xattr value stored in 1-byte
                                    metadata blocks (more blocks than the reader caches)
"""
import struct
import sys
import zlib


def meta(data, compress=True):
    out = bytearray(); starts = []
    for i in range(0, max(len(data),1), 8192):
        chunk = data[i:i+8192]
        starts.append(len(out))
        c = zlib.compress(chunk, 9) if compress else None
        if c is not None and len(c) < len(chunk):
            out += struct.pack('<H', len(c)) + c
        else:
            out += struct.pack('<H', len(chunk) | 0x8000) + chunk
    return bytes(out), starts

def meta1(data):
    """One stored 1-byte metadata block per byte: only a table's last block may be short."""
    out = bytearray(); starts = []
    for b in data:
        starts.append(len(out)); out += struct.pack('<H', 1 | 0x8000) + bytes([b])
    return bytes(out), starts


def ref(starts, off):
    return (starts[off // 8192] << 16) | (off % 8192)

def hdr(t, ino, mode=0o644):
    return struct.pack('<HHHHII', t, mode, 0, 0, 0, ino)

def build(out, entries_fn, nfile_inodes, file_inode_fn, xattr_kv=None, xattr_ids=None, log=12, data=b'', tiny_kv=False):
    """entries_fn(file_refs) -> list of (name, ref); single root dir listing."""
    # inode table decoded: file inodes first, then root dir inode (ext dir)
    inodes = bytearray(); file_offs = []
    for i in range(nfile_inodes):
        file_offs.append(len(inodes)); inodes += file_inode_fn(i)
    root_off = len(inodes)
    ROOT_LEN = 16 + 24
    # we need dir table stored (uncompressed) so positions are deterministic: listing starts at 0
    # compute listing later; dir inode needs listing size -> compute names first using placeholder refs
    placeholder = entries_fn([0]*nfile_inodes)
    def listing(entries):
        d = bytearray(); i = 0
        while i < len(entries):
            grp = [entries[i]]
            start = entries[i][1] >> 16
            j = i + 1
            while j < len(entries) and len(grp) < 256 and entries[j][1] >> 16 == start:
                grp.append(entries[j]); j += 1
            d += struct.pack('<III', len(grp) - 1, start, 1)
            for name, r in grp:
                d += struct.pack('<HhHH', r & 0xffff, 0, 2, len(name) - 1) + name
            i = j
        return bytes(d)
    # The listing's size depends on how many headers the inode blocks need, which depends on
    # the root inode's size field: iterate to the fixed point.
    lsize = len(listing(placeholder)); base = bytes(inodes)
    for _ in range(10):
        inodes = bytearray(base) + hdr(8, 1, 0o755) + struct.pack('<IIIIHHI', 2, lsize + 3, 0, 0, 0, 0, 0xffffffff)
        itab, istarts = meta(bytes(inodes), True)
        frefs = [ref(istarts, o) for o in file_offs]
        lst = listing(entries_fn(frefs))
        if len(lst) == lsize:
            break
        lsize = len(lst)
    assert len(lst) == lsize, (len(lst), lsize)
    dtab, _ = meta(lst, False)
    root_ref = ref(istarts, root_off)
    img = bytearray(96) + data
    inode_table = len(img); img += itab
    dir_table = len(img); img += dtab
    idblk, _ = meta(struct.pack('<I', 0), False)
    idb_at = len(img); img += idblk
    id_table = len(img); img += struct.pack('<Q', idb_at)
    xattr_table = 0xffffffffffffffff
    flags = 0x0200
    if xattr_kv is not None:
        if tiny_kv:
            kv, _ = meta1(xattr_kv(lambda off: None))
        else:
            kv, kstarts = meta(xattr_kv(lambda off: None), True)  # first pass to get starts
            kvdata = xattr_kv(lambda off: ref(kstarts, off))
            kv, kstarts2 = meta(kvdata, True); assert kstarts2 == kstarts
        kv_start = len(img); img += kv
        ids, _ = meta(xattr_ids(), True)
        ids_at = len(img); img += ids
        xattr_table = len(img); img += struct.pack('<QII', kv_start, len(xattr_ids()) // 16, 0)
        nblocks = (len(xattr_ids()) + 8191) // 8192
        # only support single-block id table
        assert nblocks == 1
        img += struct.pack('<Q', ids_at)
        flags = 0
    used = len(img)
    sb = struct.pack('<4sIIIIHHHHHHQQQQQQQQ', b'hsqs', nfile_inodes + 1, 0, 1 << log, 0, 1, log, flags, 1, 4, 0,
                     root_ref, used, id_table, xattr_table, inode_table, dir_table, 0xffffffffffffffff, 0xffffffffffffffff)
    img[:96] = sb
    img += b'\0' * ((-len(img)) % 4096)
    open(out, 'wb').write(img)

def hardlinks(argv):
    B = int(argv[1]); N = int(argv[2])
    def finode(i):
        # ext file: start, size, sparse, nlink, frag, offset, xattr, then B zero (hole) words
        return hdr(9, 2) + struct.pack('<QQQIIII', 96, B * 4096, 0, 2, 0xffffffff, 0, 0xffffffff) + b'\0' * (4 * B)
    build(argv[0], lambda refs: [(b'f%07d' % k, refs[0]) for k in range(N)], 1, finode)

def xattrs(argv):
    N = int(argv[1]); K = int(argv[2])
    def finode(i):
        return hdr(9, 2 + i) + struct.pack('<QQQIIII', 96, 0, 0, 1, 0xffffffff, 0, 0)
    def kv(r):
        d = bytearray()
        d += struct.pack('<HH', 0, 1) + b'a' + struct.pack('<I', 65536) + b'\0' * 65536
        vref = 5
        for _ in range(K - 1):
            d += struct.pack('<HH', 0x100, 1) + b'b' + struct.pack('<IQ', 8, vref)
        return bytes(d)
    def ids():
        return struct.pack('<QII', 0, K, 0)
    build(argv[0], lambda refs: [(b'f%05d' % k, refs[k]) for k in range(N)], N, finode, kv, ids)

def whiteouts(argv):
    N = int(argv[1]); NB = 32
    blk = zlib.compress(b'\0' * 4096, 9)
    data = blk * NB
    def finode(i):
        return hdr(2, 2) + struct.pack('<IIII', 96, 0xffffffff, 0, NB * 4096) + struct.pack('<I', len(blk)) * NB
    prefix = argv[2].encode() if len(argv) > 2 else b'.wh.f'
    build(argv[0], lambda refs: [(prefix + b'%07d' % k, refs[0]) for k in range(N)], 1, finode, data=data)

def deep(argv):
    out, M, L = argv[0], int(argv[1]), int(argv[2])
    # inode table: F at 0, then D_0..D_L ext dirs
    F_OFF = 0
    finode = hdr(2, 1) + struct.pack('<IIII', 96, 0xffffffff, 0, 0)
    DSZ = 40
    def doff(k): return 32 + k * DSZ
    # directory stream layout (sizes independent of refs)
    def stream(fref, drefs):
        s = bytearray(); hoff = []
        for k in range(L):
            hoff.append(len(s))
            r = drefs[k + 1]
            s += struct.pack('<III', 0, r >> 16, 1) + struct.pack('<HhHH', r & 0xffff, 0, 1, 5) + b'a%05d' % k
        hoff.append(len(s))
        names = [b'b%08d' % i for i in range(M)]
        for i in range(0, M, 256):
            grp = names[i:i+256]
            s += struct.pack('<III', len(grp) - 1, fref >> 16, 1)
            for n in grp:
                s += struct.pack('<HhHH', fref & 0xffff, 0, 2, len(n) - 1) + n
        return bytes(s), hoff
    s0, hoff = stream(0, [0] * (L + 1))
    inodes = bytearray(finode)
    for k in range(L + 1):
        off = hoff[k]
        blk = (off // 8192) * 8194
        inodes += hdr(8, 2 + k, 0o755) + struct.pack('<IIIIHHI', 2, len(s0) - off + 3, blk, 0, 0, off % 8192, 0xffffffff)
    itab, istarts = meta(bytes(inodes), True)
    fref = ref(istarts, 0)
    drefs = [ref(istarts, doff(k)) for k in range(L + 1)]
    s, _ = stream(fref, drefs)
    assert len(s) == len(s0)
    dtab, _ = meta(s, False)
    img = bytearray(96)
    inode_table = len(img); img += itab
    dir_table = len(img); img += dtab
    idblk, _ = meta(struct.pack('<I', 0), False)
    idb_at = len(img); img += idblk
    id_table = len(img); img += struct.pack('<Q', idb_at)
    used = len(img)
    NT = 0xffffffffffffffff
    img[:96] = struct.pack('<4sIIIIHHHHHHQQQQQQQQ', b'hsqs', L + 2, 0, 4096, 0, 1, 12, 0x0200, 1, 4, 0,
                           drefs[0], used, id_table, NT, inode_table, dir_table, NT, NT)
    img += b'\0' * ((-len(img)) % 4096)
    open(out, 'wb').write(img)

def tinyblocks(argv):
    N = int(argv[1]); V = int(argv[2])
    def finode(i):
        return hdr(9, 2 + i) + struct.pack('<QQQIIII', 96, 0, 0, 1, 0xffffffff, 0, 0)
    def kv(r):
        return struct.pack('<HH', 0, 1) + b'a' + struct.pack('<I', V) + b'x' * V
    def ids():
        return struct.pack('<QII', 0, 1, 0)
    build(argv[0], lambda refs: [(b'f%05d' % k, refs[k]) for k in range(N)], N, finode, kv, ids, tiny_kv=True)


if __name__ == "__main__":
    commands = {"hardlinks": hardlinks, "xattrs": xattrs, "whiteouts": whiteouts, "deep": deep, "tinyblocks": tinyblocks}
    commands[sys.argv[1]](sys.argv[2:])
