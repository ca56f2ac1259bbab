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
    """(marked, unmarked): the KILN_API functions, and prototypes in include/kiln without it."""
    names, unmarked = set(), []
    for h in sorted(glob.glob(os.path.join(ROOT, "include", "kiln", "*.h"))):
        text = open(h).read()
        for m in re.finditer(r"^KILN_API\b[^;{]*?\b(kiln_\w+)\s*\(", text, re.M):
            names.add(m.group(1))
        for m in re.finditer(r"^(?!KILN_API|typedef|static|struct|enum|extern|#)[a-z][\w \t*]*?\b(kiln_\w+)\s*\(", text, re.M):
            unmarked.append(f"{os.path.basename(h)}: {m.group(1)}")
    return names, unmarked


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
    (api, unmarked), exp = public_api(), exported(sys.argv[1])
    for n in unmarked:
        print(f"declared in a public header without KILN_API: {n}")
    exp = {n for n in exp if not n.startswith(("_init", "_fini", "_edata", "_end", "__bss_start"))}
    missing, extra = sorted(api - exp), sorted(exp - api)
    for n in missing:
        print(f"public but not exported: {n}")
    for n in extra:
        print(f"exported but not public: {n}")
    print(f"check_exports: {len(api)} public functions, {len(exp)} exported symbols: "
          f"{len(missing)} missing, {len(extra)} extra, {len(unmarked)} unmarked")
    return 1 if missing or extra or unmarked else 0


if __name__ == "__main__":
    sys.exit(main())
