#!/usr/bin/env python3
"""check_layers.py: checks kiln's architecture on a built tree.

  check_layers.py BUILD_DIR

The layers and what each may use come from the kiln_layer(...) lines of src/CMakeLists.txt (and
kiln_layer_subdir(...) lines: a subfolder whose files belong to a layer).
Three checks, each printing every offender:
  1. includes: a file includes only headers of its own layer, the layers it names, or kiln/
     (the compiler enforces this already; here it is also checked for headers-only folders);
  2. calls: from the object files' symbols (nm), file A -> file B when A uses a symbol B defines;
     no call goes to a layer A's layer does not name;
  3. circles: no strongly connected group of two or more files in the include graph or in the
     call graph.
exit 0 when all hold, 1 otherwise."""
import os, re, subprocess, sys
from collections import defaultdict

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
SRC = os.path.join(ROOT, "src")
SUFFIXES = (".c", ".h", ".cu", ".cuh", ".cpp")


def read_layers():
    text = open(os.path.join(SRC, "CMakeLists.txt")).read()
    layers = {}  # name -> (dir, [deps])
    for m in re.finditer(r"^\s*kiln_layer\((\w+)\s+([\w/]+)(?:\s+DEPS([\w\s]*))?\)", text, re.M):
        layers[m.group(1)] = (m.group(2), (m.group(3) or "").split())
    # optional dependencies added later: target_... lines are not deps; `kiln_layer_dep(a b)` is
    for m in re.finditer(r"^\s*kiln_layer_dep\((\w+)\s+(\w+)\)", text, re.M):
        layers[m.group(1)][1].append(m.group(2))
    # a layer's sources in a subfolder: `kiln_layer_subdir(name dir)`
    for m in re.finditer(r"^\s*kiln_layer_subdir\((\w+)\s+([\w/]+)\)", text, re.M):
        SUBDIRS[m.group(2)] = m.group(1)
    return layers


SUBDIRS = {}  # folder -> the layer it belongs to (kiln_layer_subdir)


def layer_of(path, layers):
    rel = os.path.relpath(path, SRC)
    if os.path.dirname(rel) in SUBDIRS:
        return SUBDIRS[os.path.dirname(rel)]
    best = None
    for name, (d, _) in layers.items():
        if os.path.dirname(rel) == d:
            best = name
    return best


def sccs(graph):
    """Tarjan's strongly connected components (iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    nodes = set(graph) | {w for vs in graph.values() for w in vs}
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter[0]; counter[0] += 1
        stack.append(root); on.add(root)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]; counter[0] += 1
                    stack.append(nxt); on.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                elif nxt in on:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop(); on.discard(w); comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    build = sys.argv[1]
    layers = read_layers()
    allowed = {n: {n, *deps} for n, (d, deps) in layers.items()}
    files = []
    for dirpath, _, names in os.walk(SRC):
        files += [os.path.join(dirpath, n) for n in names if n.endswith(SUFFIXES)]
    by_name = defaultdict(list)
    for f in files:
        by_name[os.path.basename(f)].append(f)
    rel = lambda p: os.path.relpath(p, ROOT)
    problems = 0

    # 1. includes
    inc_graph = defaultdict(set)
    for f in files:
        lf = layer_of(f, layers)
        for m in re.finditer(r'^\s*#\s*include\s+"([^"]+)"', open(f).read(), re.M):
            name = m.group(1)
            if name.startswith("kiln/"):
                continue
            here = os.path.join(os.path.dirname(f), name)
            cands = [here] if os.path.exists(here) else by_name.get(os.path.basename(name), [])
            if not cands:
                continue  # a system or toolkit header
            target = cands[0]
            inc_graph[rel(f)].add(rel(target))
            lt = layer_of(target, layers)
            if lf and lt and lt not in allowed[lf]:
                print(f"upward include: {rel(f)} ({lf}) includes {rel(target)} ({lt})")
                problems += 1

    # 2. calls, from the object files
    defs, uses = {}, defaultdict(set)
    objdir = os.path.join(build, "src", "CMakeFiles")
    objects = []
    for d in (objdir, os.path.join(build, "bench", "CMakeFiles", "kiln_bench.dir")):
        for dirpath, _, names in os.walk(d):
            objects += [os.path.join(dirpath, n) for n in names if n.endswith(".o")]
    if not objects:
        sys.exit(f"check_layers: no object files under {objdir}: build first")
    for o in objects:
        if "/kiln_bench.dir/" in o:  # the benchmark tool: checked for circles only
            src = "bench/" + os.path.basename(o)[:-2]
        else:
            src = re.sub(r"^.*?/kiln_\w+\.dir/", "src/", o)[:-2]
        nm = subprocess.run(["nm", "-P", o], stdout=subprocess.PIPE, text=True, check=True).stdout
        for line in nm.splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue
            sym, kind = parts[0], parts[1]
            if kind == "U":
                uses[src].add(sym)
            elif kind in "TDBRVW" and kind.isupper():
                defs[sym] = src
    call_graph = defaultdict(set)
    for f, syms in uses.items():
        for s in syms:
            g = defs.get(s)
            if g and g != f:
                call_graph[f].add(g)
                lf, lg = layer_of(os.path.join(ROOT, f), layers), layer_of(os.path.join(ROOT, g), layers)
                if lf and lg and lg not in allowed[lf]:
                    print(f"upward call: {f} ({lf}) calls {s} in {g} ({lg})")
                    problems += 1

    # 3. circles
    for kind, graph in (("include", inc_graph), ("call", call_graph)):
        for comp in sccs(graph):
            print(f"{kind} circle: " + " <-> ".join(comp))
            problems += 1
    n_calls = sum(len(v) for v in call_graph.values())
    n_inc = sum(len(v) for v in inc_graph.values())
    print(f"check_layers: {len(layers)} layers, {len(files)} files, {n_inc} include edges, "
          f"{n_calls} call edges between {len(objects)} object files: {problems} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
