#!/usr/bin/env python3
"""msf_rewrite.py IN OUT BLOCK_SIZE EXTRA_NIL_STREAMS SEED [minimal]: rewrites a PDB's MSF container with
another block size, blocks in shuffled order, and extra nil (0xFFFFFFFF) streams appended to the
directory; enough of them make the directory's block list span several block-map blocks,
whose numbers then follow BlockMapAddr at superblock offsets 56, 60... Stream contents are
unchanged, so the publics must read the same. With "minimal", every stream that public lookup
does not use (all but info, DBI, symbol records and section headers) becomes nil: a small seed
for the fuzzer. Written independently of kdh_pdb."""
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
