#!/usr/bin/env python3
"""tensor_hashes.py: trains the two reference runs of docs/architecture.md with the built `kiln`
and compares the SHA-256 of every tensor in their model.safetensors (the tensors' bytes, not the
file: metadata may change) with tests/golden/tensor_hashes.txt. Behaviour-preserving changes
(moves, renames, refactors) must leave these identical, bit for bit.

The runs are pinned where the arithmetic would otherwise follow the machine: 2 threads
(--threads: oneDNN's convolutions and GEMMs block their sums by thread) and oneDNN's AVX2
kernels (ONEDNN_MAX_CPU_ISA, so that AVX-512 and AVX2 machines agree). A build without oneDNN
(KILN_DNNL=OFF) runs im2col + OpenBLAS: its hashes are tests/golden/tensor_hashes_im2col.txt
(tests/CMakeLists.txt passes --golden).

  tensor_hashes.py KILN [--golden FILE] [--write]
exit 0: identical; 1: a tensor differs, is missing or extra (each named); 2: a run failed."""
import hashlib, json, os, struct, subprocess, sys, tempfile

RUNS = {
    "seed-cnn": ["--model", "seed-cnn", "--train-size", "256", "--test-size", "64", "--epochs", "2"],
    "resnet20": ["--model", "resnet20", "--train-size", "128", "--test-size", "32", "--epochs", "1"],
}
COMMON = ["--data", "synthetic", "--seed", "1", "--device", "cpu", "--threads", "2"]
PINNED = {"ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2"}


def tensor_hashes(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, v in sorted(header.items()):
        if name == "__metadata__":
            continue
        a, b = v["data_offsets"]
        shape = "x".join(str(d) for d in v["shape"])
        out[name] = f"{v['dtype']} {shape} {hashlib.sha256(data[a:b]).hexdigest()}"
    return out


def run_all(kiln):
    lines = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run, args in RUNS.items():
            out = os.path.join(tmp, run)
            p = subprocess.run([kiln, "train", *args, *COMMON, "--out", out], env={**os.environ, **PINNED},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if p.returncode != 0:
                sys.stderr.write(p.stdout)
                sys.exit(f"tensor_hashes: kiln train {run} exited {p.returncode}")
            for name, h in tensor_hashes(os.path.join(out, "model.safetensors")).items():
                lines[f"{run} {name}"] = h
    return lines


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    golden = os.path.join(here, "..", "tests", "golden", "tensor_hashes.txt")
    if "--golden" in args:
        golden = args[args.index("--golden") + 1]
    got = run_all(args[0])
    if "--write" in args:
        with open(golden, "w") as f:
            f.write("# run tensor dtype shape sha256 (scripts/tensor_hashes.py)\n")
            for k, v in got.items():
                f.write(f"{k} {v}\n")
        print(f"tensor_hashes: wrote {len(got)} tensors to {golden}")
        return 0
    want = {}
    with open(golden) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            run, name, rest = line.split(" ", 2)
            want[f"{run} {name}"] = rest.strip()
    bad = 0
    for k in sorted(set(want) | set(got)):
        if k not in got:
            print(f"missing: {k}"); bad += 1
        elif k not in want:
            print(f"extra: {k}"); bad += 1
        elif want[k] != got[k]:
            print(f"differs: {k}: want {want[k]}, got {got[k]}"); bad += 1
    print(f"tensor_hashes: {len(got) - bad} of {len(want)} tensors identical to {os.path.relpath(golden)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
