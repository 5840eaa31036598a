#!/usr/bin/env python3
"""canon_readobj.py READOBJ IMAGE OUT: runs llvm-readobj on a PE image and rewrites what it
prints into the canonical lines that test_pe also produces from kdh_pe, so the tool is the
oracle. Only llvm-readobj's output is used here, never kdh_pe."""
import re
import subprocess
import sys

readobj, image, out = sys.argv[1:4]
text = subprocess.run([readobj, "--file-headers", "--sections", "--coff-exports",
                       "--coff-imports", "--coff-debug-directory", "--unwind",
                       "--coff-basereloc", image], check=True, capture_output=True,
                      text=True).stdout

DIRS = ["ExportTable", "ImportTable", "ResourceTable", "ExceptionTable", "CertificateTable",
        "BaseRelocationTable", "Debug", "Architecture", "GlobalPtr", "TLSTable",
        "LoadConfigTable", "BoundImport", "IAT", "DelayImportDescriptor", "CLRRuntimeHeader",
        "Reserved"]


def num(s):
    return int(s, 0)


lines = []
hdr = {}
dirs = {}
cur = None          # the block being read: ("section", dict) etc.
image_base = 0
pe32plus = False
blocks = []
for raw in text.splitlines():
    line = raw.strip()
    m = re.match(r"^(\w+)\s*[\[{]$", line)
    indent = len(raw) - len(raw.lstrip())
    if m and indent <= 4 and m.group(1) in ("Section", "Export", "Import", "Entry",
                                             "DebugEntry", "RuntimeFunction"):
        cur = {"kind": m.group(1), "symbols": []}
        blocks.append(cur)
        continue
    kv = re.match(r"^(\w+): ?(.*)$", line) or re.match(r"^(\w+) \[ (\(0x[0-9A-Fa-f]+\))$", line)
    if not kv:
        continue
    k, v = kv.group(1), kv.group(2)
    if k == "Machine" and "Machine" not in hdr:
        hdr["Machine"] = num(re.search(r"\((0x[0-9A-Fa-f]+)\)", v).group(1))
    elif k == "TimeDateStamp" and "TimeDateStamp" not in hdr:
        hdr["TimeDateStamp"] = num(re.search(r"\((0x[0-9A-Fa-f]+)\)", v).group(1))
    elif k in ("SizeOfImage", "ImageBase", "Magic") and k not in hdr:
        hdr[k] = num(v)
    elif k.endswith("RVA") and k[:-3] in DIRS and cur is None:
        dirs.setdefault(k[:-3], [0, 0])[0] = num(v)
    elif k.endswith("Size") and k[:-4] in DIRS and cur is None:
        dirs.setdefault(k[:-4], [0, 0])[1] = num(v)
    elif cur is not None:
        if k == "Symbol":
            cur["symbols"].append(v)
        elif k not in cur:
            cur[k] = v

base = hdr["ImageBase"]
w = 8 if hdr["Magic"] == 0x20B else 4
lines.append("machine 0x%x" % hdr["Machine"])
lines.append("timestamp 0x%08x" % hdr["TimeDateStamp"])
lines.append("size_of_image 0x%x" % hdr["SizeOfImage"])
lines.append("image_base 0x%x" % base)
for i, d in enumerate(DIRS):
    rva, size = dirs.get(d, [0, 0])
    if rva or size:
        lines.append("dir %d 0x%x 0x%x" % (i, rva, size))


def hexin(s):
    return num(re.search(r"(0x[0-9A-Fa-f]+)", s).group(1))


for b in blocks:
    kind = b["kind"]
    if kind == "Section":
        name = b["Name"].split(" ")[0]
        chars = hexin(b["Characteristics"])
        lines.append("section %s va=0x%x vsize=0x%x raw_off=0x%x raw_size=0x%x chr=0x%x" % (
            name, num(b["VirtualAddress"]), num(b["VirtualSize"]), num(b["PointerToRawData"]),
            num(b["RawDataSize"]), chars))
    elif kind == "Export":
        if num(b["RVA"]) == 0:
            continue
        lines.append("export ord=%d name=%s rva=0x%x" % (num(b["Ordinal"]), b["Name"],
                                                         num(b["RVA"])))
    elif kind == "Import":
        iat = num(b["ImportAddressTableRVA"])
        lines.append("import dll=%s" % b["Name"])
        for i, s in enumerate(b["symbols"]):
            m = re.match(r"^(\S*) \((\d+)\)$", s)
            nm, hint = m.group(1), int(m.group(2))
            if nm:
                lines.append("import_fn name=%s hint=%d iat=0x%x" % (nm, hint, iat + i * w))
            else:
                lines.append("import_fn ordinal=%d iat=0x%x" % (hint, iat + i * w))
    elif kind == "Entry":
        if b["Type"] == "ABSOLUTE":
            continue
        t = {"HIGHLOW": 3, "DIR64": 10}[b["Type"]]
        lines.append("reloc 0x%x %d" % (num(b["Address"]), t))
    elif kind == "DebugEntry":
        t = hexin(b["Type"])
        lines.append("debug type=%d size=0x%x rva=0x%x off=0x%x" % (
            t, num(b["SizeOfData"]), num(b["AddressOfRawData"]), num(b["PointerToRawData"])))
        if "PDBGUID" in b:
            g = bytes(int(x, 16) for x in re.findall(r"[0-9A-Fa-f]{2}", b["PDBGUID"]))
            lines.append("codeview guid=%s age=%d name=%s" % (g.hex().upper(), num(b["PDBAge"]),
                                                              b["PDBFileName"]))
            # The store key, computed here from the printed bytes: Data1-3 are little-endian.
            key = "%08X%04X%04X%s%X" % (int.from_bytes(g[0:4], "little"),
                                        int.from_bytes(g[4:6], "little"),
                                        int.from_bytes(g[6:8], "little"), g[8:].hex().upper(),
                                        num(b["PDBAge"]))
            pdb = re.split(r"[\\/]", b["PDBFileName"])[-1]
            lines.append("pdb_key %s/%s" % (pdb, key))
    elif kind == "RuntimeFunction":
        lines.append("pdata 0x%x 0x%x 0x%x" % (hexin(b["StartAddress"]) - base,
                                               hexin(b["EndAddress"]) - base,
                                               hexin(b["UnwindInfoAddress"]) - base))
lines.append("image_key %s/%08X%x" % (image.rsplit("/", 1)[-1], hdr["TimeDateStamp"],
                                      hdr["SizeOfImage"]))
with open(out, "w") as f:
    f.write("\n".join(lines) + "\n")
