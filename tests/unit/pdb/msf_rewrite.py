#!/usr/bin/env python3
"""msf_rewrite.py IN OUT BLOCK_SIZE EXTRA_NIL_STREAMS SEED [minimal | omap IN_EXPECT OUT_EXPECT]:
rewrites a PDB's MSF container with another block size, blocks in shuffled order, and extra nil (0xFFFFFFFF) streams appended to the
directory; enough of them make the directory's block list span several block-map blocks,
whose numbers then follow BlockMapAddr at superblock offsets 56, 60... Stream contents are
unchanged, so the publics must read the same. With "minimal", every stream that public lookup
does not use (all but info, DBI, symbol records and section headers) becomes nil: a small seed
for the fuzzer. With "omap", the PDB pretends its image was rearranged after linking: original
section headers (every VA + 0x10000) and an OMAP_FROM_SRC table are added and named in the DBI
debug header; in .text, [0, 0x20) moves to +0x30, [0x20, 0x40) is eliminated, the rest stays.
OUT_EXPECT is IN_EXPECT (canon_pdbutil.py text) with the RVAs mapped the same way here.
Written independently of kdh_pdb."""
import random
import struct
import sys

inp, outp = sys.argv[1], sys.argv[2]
B, extra, seed = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
data = open(inp, "rb").read()
bs, _fpm, _nblocks, dirbytes, _unk, bmaddr = struct.unpack_from("<6I", data, 32)


def ceil(a, b):
    return (a + b - 1) // b


ndir = ceil(dirbytes, bs)
dirblocks = struct.unpack_from("<%dI" % ndir, data, bmaddr * bs)
d = b"".join(data[b * bs:(b + 1) * bs] for b in dirblocks)[:dirbytes]
ns = struct.unpack_from("<I", d, 0)[0]
sizes = struct.unpack_from("<%dI" % ns, d, 4)
pos = 4 + 4 * ns
streams = []
for sz in sizes:
    if sz == 0xFFFFFFFF:
        streams.append(None)
        continue
    nb = ceil(sz, bs)
    blocks = struct.unpack_from("<%dI" % nb, d, pos)
    pos += 4 * nb
    streams.append(b"".join(data[b * bs:(b + 1) * bs] for b in blocks)[:sz])
if len(sys.argv) > 6 and sys.argv[6] == "minimal":
    dbi = streams[3]
    symrec = struct.unpack_from("<H", dbi, 20)[0]
    sub = sum(struct.unpack_from("<5i", dbi, 24)) + struct.unpack_from("<i", dbi, 52)[0]
    dbg_at = 64 + sub
    sections = struct.unpack_from("<H", dbi, dbg_at + 2 * 5)[0]
    keep = {1, 3, symrec, sections}
    streams = [s if i in keep else None for i, s in enumerate(streams)]
if len(sys.argv) > 6 and sys.argv[6] == "omap":
    dbi = bytearray(streams[3])
    sub = sum(struct.unpack_from("<5i", dbi, 24)) + struct.unpack_from("<i", dbi, 52)[0]
    dbg_at = 64 + sub
    assert struct.unpack_from("<i", dbi, 48)[0] >= 22, "debug header lacks slots 4 and 10"
    sect = streams[struct.unpack_from("<H", dbi, dbg_at + 2 * 5)[0]]
    final = [struct.unpack_from("<I", sect, 40 * i + 12)[0] for i in range(len(sect) // 40)]
    orig = bytearray(sect)
    for i in range(len(final)):
        struct.pack_into("<I", orig, 40 * i + 12, final[i] + 0x10000)
    table = [(final[0] + 0x10000, final[0] + 0x30), (final[0] + 0x10020, 0),
             (final[0] + 0x10040, final[0] + 0x40)]
    table += [(v + 0x10000, v) for v in final[1:]]
    table.sort()
    streams.append(bytes(orig))
    struct.pack_into("<H", dbi, dbg_at + 2 * 10, len(streams) - 1)
    streams.append(b"".join(struct.pack("<II", a, b) for a, b in table))
    struct.pack_into("<H", dbi, dbg_at + 2 * 4, len(streams) - 1)
    streams[3] = bytes(dbi)

    def omap(x):
        hit = [(a, b) for a, b in table if a <= x]
        if not hit:
            return 0
        a, b = hit[-1]
        return 0 if b == 0 else b + (x - a)

    lines = open(sys.argv[7]).read().splitlines()
    pubs = []
    for ln in lines[1:]:
        _, _rva, segoff, flags, name = ln.split(" ", 4)
        seg, off = (int(v) for v in segoff.split(":"))
        rva = omap(final[seg - 1] + 0x10000 + off)
        if rva:
            pubs.append((rva, name, segoff, flags))
    with open(sys.argv[8], "w") as fh:
        fh.write(lines[0] + "\n")
        for rva, name, segoff, flags in sorted(pubs):
            fh.write("public %x %s %s %s\n" % (rva, segoff, flags, name))
streams += [None] * extra

chunks = []  # (stream, bytes)
for i, s in enumerate(streams):
    for k in range(ceil(len(s), B) if s else 0):
        chunks.append((i, s[k * B:(k + 1) * B]))
nstreams = len(streams)
dirsize = 4 + 4 * nstreams + 4 * len(chunks)
ndirb = ceil(dirsize, B)
nmap = ceil(ndirb * 4, B)
assert 52 + 4 * nmap <= B, "too many block-map blocks for this block size"
total = 3 + len(chunks) + ndirb + nmap
numbers = list(range(3, total))
random.Random(seed).shuffle(numbers)
chunk_no = numbers[:len(chunks)]
dir_no = numbers[len(chunks):len(chunks) + ndirb]
map_no = numbers[len(chunks) + ndirb:]

out = bytearray(total * B)
directory = bytearray(struct.pack("<I", nstreams))
for s in streams:
    directory += struct.pack("<I", 0xFFFFFFFF if s is None else len(s))
for (i, c), n in zip(chunks, chunk_no):
    out[n * B:n * B + len(c)] = c
ci = 0
for s in streams:
    for _ in range(ceil(len(s), B) if s else 0):
        directory += struct.pack("<I", chunk_no[ci])
        ci += 1
assert len(directory) == dirsize
for k, n in enumerate(dir_no):
    part = directory[k * B:(k + 1) * B]
    out[n * B:n * B + len(part)] = part
maplist = b"".join(struct.pack("<I", n) for n in dir_no)
for k, n in enumerate(map_no):
    part = maplist[k * B:(k + 1) * B]
    out[n * B:n * B + len(part)] = part
out[0:32] = data[0:32]
struct.pack_into("<6I", out, 32, B, 1, total, dirsize, 0, map_no[0])
for k, n in enumerate(map_no):
    struct.pack_into("<I", out, 52 + 4 * k, n)
open(outp, "wb").write(out)
