#!/usr/bin/env python3
"""check_exports.py: libkiln.so exports the public API and nothing else.

  check_exports.py LIBKILN_SO

The public API is every function marked KILN_API in include/kiln/*.h. Each must be exported
(defined) by the library, and the library must export no other symbol (the library is built
with -fvisibility=hidden; a missing KILN_API or a stray internal export fails here).
exit 0 when both hold, 1 otherwise."""
import glob, os, re, subprocess, sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def public_api():
    names = set()
    for h in glob.glob(os.path.join(ROOT, "include", "kiln", "*.h")):
        text = open(h).read()
        for m in re.finditer(r"^KILN_API\b[^;{]*?\b(kiln_\w+)\s*\(", text, re.M):
            names.add(m.group(1))
    return names


def exported(lib):
    out = subprocess.run(["nm", "-D", "--defined-only", lib], stdout=subprocess.PIPE, text=True,
                         check=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TDBRVWiu":
            names.add(parts[2].split("@")[0])
    return names


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    api, exp = public_api(), exported(sys.argv[1])
    exp = {n for n in exp if not n.startswith(("_init", "_fini", "_edata", "_end", "__bss_start"))}
    missing, extra = sorted(api - exp), sorted(exp - api)
    for n in missing:
        print(f"public but not exported: {n}")
    for n in extra:
        print(f"exported but not public: {n}")
    print(f"check_exports: {len(api)} public functions, {len(exp)} exported symbols: "
          f"{len(missing)} missing, {len(extra)} extra")
    return 1 if missing or extra else 0


if __name__ == "__main__":
    sys.exit(main())
