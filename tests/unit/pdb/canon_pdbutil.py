#!/usr/bin/env python3
"""canon_pdbutil.py PDBUTIL PDB OUT: turns `llvm-pdbutil dump -summary -publics -section-headers`
into the canonical lines test_pdb also prints from kdh_pdb (the tool is the oracle):
  key <GUID hex, Data1-3 as numbers><age %X>
  public <rva hex> <seg>:<off> flags=<n> <name>        sorted by RVA, then name"""
import re
import subprocess
import sys

tool, pdb, out = sys.argv[1:4]
text = subprocess.run([tool, "dump", "-summary", "-publics", "-section-headers", pdb],
                      check=True, capture_output=True, text=True).stdout

guid = re.search(r"GUID: \{([0-9A-Fa-f-]+)\}", text).group(1).replace("-", "").upper()
age = int(re.search(r"^\s*Age: (\d+)", text, re.M).group(1))
lines = ["key %s%X" % (guid, age)]

vas = {}
for m in re.finditer(r"SECTION HEADER #(\d+)\n(?:.*\n)*?\s*([0-9A-Fa-f]+) virtual address", text):
    vas[int(m.group(1))] = int(m.group(2), 16)

FLAGS = {"none": 0, "code": 1, "function": 2, "managed": 4, "msil": 8}
pubs = []
for m in re.finditer(r"S_PUB32 \[size = \d+\] `([^`]*)`\n\s*flags = ([a-z |]+), addr = (\d+):(\d+)",
                     text):
    name, flags, seg, off = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
    f = 0
    for word in flags.split("|"):
        f |= FLAGS[word.strip()]
    if seg not in vas:
        continue  # absolute symbols have no RVA
    pubs.append((vas[seg] + off, name, seg, off, f))
for rva, name, seg, off, f in sorted(pubs):
    lines.append("public %x %d:%d flags=%d %s" % (rva, seg, off, f, name))
with open(out, "w") as fh:
    fh.write("\n".join(lines) + "\n")
