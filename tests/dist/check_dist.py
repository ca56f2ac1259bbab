#!/usr/bin/env python3
"""check_dist.py: data-parallel training under mpirun (docs/distributed.md), run by CTest when
kiln is built with MPI.

  check_dist.py KILN CASE [NP]
CASE:
  sync     NP ranks with --sync-bn and a global batch of 32 give the per-step losses and final
           weights of one process with batch 32 (SGD; without and with shuffle; the seed model
           and ResNet-20), within TOL; teeth: the same runs without --sync-bn differ by far more
  plain    without --sync-bn (2 ranks, one SGD step): rank 0's moving statistics are those of one
           process trained on rank 0's share alone, and every trainable weight is the mean of
           the weights of one process trained on each share alone (the gradient is the mean)
  resume   2 ranks: 1 epoch, then --resume for the 2nd, equals 2 uninterrupted epochs (bit for bit)
  bucket   2 ranks: the gradients all-reduced in many small buckets (KILN_DIST_BUCKET_BYTES=4096,
           each handed over as the backward completes it), in the default 25 MiB ones, and in one
           message after the backward (=0) give the same per-step losses and final weights, bit
           for bit (seed model with shuffle, ResNet-20)
  dropout  2 ranks train a model with Dropout and SpatialDropout2D (and an L2 regularizer) to the
           per-step losses and final weights of one process within TOL: each rank draws the masks
           one process draws for its rows of the global batch; its gradient buckets (4096 bytes,
           sent after the regularizer's term joins) equal the one-message path bit for bit
  nccl     2 CUDA ranks (one GPU each, the NCCL engine: gradient buckets on a second stream)
           give the per-step losses and final weights of one process on one GPU within TOL_NCCL;
           skipped (exit 77, CTest's SKIP_RETURN_CODE) saying why without 2 GPUs or without a
           CUDA build of kiln
  fail     a rank fed a bad file ends every rank within seconds, naming the rank and the error;
           a rank left waiting in a collective times out (KILN_DIST_TIMEOUT) instead of hanging;
           a global batch that does not divide among the ranks says so; usage errors exit 2 (a
           bad flag, --from-logits on a softmax model, that batch), other failures 1
exit 0 on success, 1 with each difference named."""
import json, os, struct, subprocess, sys, tempfile, time

# float32 training of the same global batch whose sums run in another order (per-rank partial
# sums, Chan's merge of per-rank BN statistics, the gradient all-reduced in double): each step
# perturbs values at float32 rounding (~1e-7 relative); a few SGD steps amplify it modestly.
# docs/distributed.md gives the measured differences (about 1e-7) and this 10-100x margin.
TOL_LOSS = 1e-5
TOL_W = 1e-5
# ResNet-20 has ~1.5M ReLU inputs per step here: now and then one lies within float rounding of
# 0, and the two runs take its kink on opposite sides; that one element's product (~1e-2) then
# moves one conv weight's gradient, and the weight by lr x 1e-2 = ~1.6e-4 (measured, 4 ranks;
# 2 ranks: 1.2e-7). The next step's loss moves by ~1e-5. Without --sync-bn ~7e-3 on both.
TOL_RESNET_LOSS = 5e-5
TOL_RESNET_W = 5e-4

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
# In the sanitizer build, LeakSanitizer would report Open MPI's own allocations (its plugins
# are unloaded at MPI_Finalize, so they cannot even be suppressed by library name): the ranks
# run with ASan and UBSan but without the leak check (test_dist.c checks the single engine's).
ENV["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
MPIRUN = ["mpirun", "--oversubscribe", "--bind-to", "none"]
FAILED = []


def check(ok, what):
    if not ok:
        FAILED.append(what)
        print("FAIL:", what)


def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, v in header.items():
        if name == "__metadata__" or v["dtype"] != "F32":
            continue
        a, b = v["data_offsets"]
        out[name] = struct.unpack("<%df" % ((b - a) // 4), data[a:b])
    return out


def steps(path):
    with open(path) as f:
        return [float(line.split(",")[2]) for line in f.read().split("\n")[1:] if line]


def run(cmd, timeout=120, env=None):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env or ENV, timeout=timeout)
    if p.returncode != 0:
        print(" ".join(cmd), "\n", p.stdout)
        raise SystemExit("a run failed (exit %d)" % p.returncode)
    return p.stdout


def train(kiln, out, args, np=1, extra=(), env=None, device="cpu"):
    cmd = ([*MPIRUN, "-np", str(np)] if np > 1 else []) + [kiln, "train", "--device", device, "--optimizer", "sgd",
                                                         "--seed", "1", "--verbose", "0", "--out", out,
                                                         "--log-steps", out + "/steps.csv", *args, *extra]
    run(cmd, env=env)
    return steps(out + "/steps.csv"), tensors(out + "/model.safetensors")


def max_diff(a, b):
    d = 0.0
    for name in a:
        d = max(d, max(abs(x - y) for x, y in zip(a[name], b[name])))
    return d


def case_sync(kiln, np, tmp):
    runs = [("seed-cnn", ["--model", "seed-cnn", "--data", "synthetic", "--train-size", "128", "--test-size", "32",
                          "--epochs", "2", "--batch-size", "32"]),
            ("resnet20", ["--model", "resnet20", "--data", "synthetic", "--train-size", "64", "--test-size", "32",
                          "--image-size", "8", "--epochs", "1", "--batch-size", "32"])]
    for model, args in runs:
        for shuffle in ([], ["--no-shuffle"]) if model == "seed-cnn" else (["--no-shuffle"],):
            tag = "%s%s np=%d" % (model, " no-shuffle" if shuffle else " shuffle", np)  # shuffle: the flag
            base = os.path.join(tmp, "one-" + model + str(len(shuffle)))
            if not os.path.exists(base):
                train(kiln, base, args + shuffle)
            ls, ws = steps(base + "/steps.csv"), tensors(base + "/model.safetensors")
            ld, wd = train(kiln, os.path.join(tmp, "sync"), args + shuffle, np, ["--sync-bn"])
            dl = max(abs(a - b) for a, b in zip(ls, ld))
            dw = max_diff(ws, wd)
            tol_l, tol_w = (TOL_LOSS, TOL_W) if model == "seed-cnn" else (TOL_RESNET_LOSS, TOL_RESNET_W)
            print("%s --sync-bn: %d steps, max |loss diff| %.3g, max |weight diff| %.3g" % (tag, len(ld), dl, dw))
            check(len(ls) == len(ld) and dl <= tol_l, "%s: per-step losses differ by %g (> %g)" % (tag, dl, tol_l))
            check(set(ws) == set(wd) and dw <= tol_w, "%s: final weights differ by %g (> %g)" % (tag, dw, tol_w))
            if shuffle:  # teeth (the --no-shuffle runs): per-rank statistics differ by far more
                lp, wp = train(kiln, os.path.join(tmp, "plain"), args + shuffle, np)
                dp, dpw = max(abs(a - b) for a, b in zip(ls, lp)), max_diff(ws, wp)
                print("%s without --sync-bn: max |loss diff| %.3g, max |weight diff| %.3g" % (tag, dp, dpw))
                check(dp > 10 * tol_l and dpw > 5 * tol_w, "%s: without --sync-bn the run should differ (by %g, %g only)" % (tag, dp, dpw))


def case_bucket(kiln, tmp):
    runs = [("seed-cnn", ["--model", "seed-cnn", "--data", "synthetic", "--train-size", "96", "--test-size", "32",
                          "--epochs", "2", "--batch-size", "32", "--sync-bn"]),
            ("resnet20", ["--model", "resnet20", "--data", "synthetic", "--train-size", "64", "--test-size", "32",
                          "--image-size", "8", "--epochs", "1", "--batch-size", "32", "--no-shuffle"])]
    for model, args in runs:
        got = {}
        for bucket in ("4096", "", "0"):
            env = dict(ENV, KILN_DIST_BUCKET_BYTES=bucket)
            got[bucket] = train(kiln, os.path.join(tmp, "bucket%s-%s" % (bucket, model)), args, 2, env=env)
        for bucket in ("4096", "0"):
            (la, wa), (lb, wb) = got[""], got[bucket]
            same = la == lb and wa == wb
            print("%s, 2 ranks: KILN_DIST_BUCKET_BYTES=%s vs the default: %s (max |loss diff| %.3g, |weight diff| %.3g)"
                  % (model, bucket, "bit for bit" if same else "DIFFERENT", max(abs(a - b) for a, b in zip(la, lb)),
                     max_diff(wa, wb)))
            check(same and len(la) > 1, "%s: KILN_DIST_BUCKET_BYTES=%s changed the run" % (model, bucket))


def dropout_model(tmp):
    def layer(cls, **cfg):
        return {"class_name": cls, "config": dict(cfg, name=cls.lower() + str(len(layers)))}
    layers = []
    layers.append({"class_name": "InputLayer", "config": {"batch_shape": [None, 8, 8, 3], "name": "in"}})
    layers.append(layer("Conv2D", filters=6, kernel_size=[3, 3], activation="relu"))
    layers.append(layer("SpatialDropout2D", rate=0.3))
    layers.append(layer("Flatten"))
    layers.append(layer("Dense", units=16, activation="relu",
                        kernel_regularizer={"class_name": "L2", "config": {"l2": 0.01}}))
    layers.append(layer("Dropout", rate=0.5))
    layers.append(layer("Dense", units=10, activation="softmax"))
    path = os.path.join(tmp, "dropout.json")
    with open(path, "w") as f:
        json.dump({"class_name": "Sequential", "config": {"name": "drop", "layers": layers}}, f)
    return path


def case_dropout(kiln, tmp):
    args = ["--model", dropout_model(tmp), "--data", "synthetic", "--train-size", "96", "--test-size", "32",
            "--image-size", "8", "--classes", "10", "--epochs", "2", "--batch-size", "32"]
    ls, ws = train(kiln, os.path.join(tmp, "one"), args)
    ld, wd = train(kiln, os.path.join(tmp, "np2"), args, 2)
    dl, dw = max(abs(a - b) for a, b in zip(ls, ld)), max_diff(ws, wd)
    print("Dropout model, 2 ranks vs one process: %d steps, max |loss diff| %.3g, max |weight diff| %.3g" % (len(ld), dl, dw))
    check(len(ls) == len(ld) and dl <= TOL_LOSS, "dropout: per-step losses differ by %g (> %g)" % (dl, TOL_LOSS))
    check(set(ws) == set(wd) and dw <= TOL_W, "dropout: final weights differ by %g (> %g)" % (dw, TOL_W))
    lo, wo = train(kiln, os.path.join(tmp, "one-msg"), args, 2, env=dict(ENV, KILN_DIST_BUCKET_BYTES="0"))
    lb, wb = train(kiln, os.path.join(tmp, "buckets"), args, 2, env=dict(ENV, KILN_DIST_BUCKET_BYTES="4096"))
    print("Dropout model (L2), 2 ranks: 4096-byte buckets vs one message: %s" % ("bit for bit" if (lo, wo) == (lb, wb) else "DIFFERENT"))
    check((lo, wo) == (lb, wb) and (lo, wo) == (ld, wd), "dropout: the buckets changed the run with a regularizer")


# NCCL sums the f32 gradients in f32 in its own order (ring or tree): a few float32 ulps more
# than the host path's double sums; the same margin as the CPU ranks' equivalence otherwise
TOL_NCCL = 1e-4
SKIP = 77


def gpu_count():
    try:
        p = subprocess.run(["nvidia-smi", "-L"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in p.stdout.splitlines() if line.startswith("GPU ")) if p.returncode == 0 else 0


def case_nccl(kiln, tmp):
    n = gpu_count()
    if n < 2:
        print("SKIP: the NCCL engine needs 2 GPUs, one per rank (nvidia-smi lists %d); NCCL cannot put two "
              "ranks on one GPU" % n)
        return SKIP
    args = ["--model", "seed-cnn", "--data", "synthetic", "--train-size", "128", "--test-size", "32", "--epochs", "2",
            "--batch-size", "32", "--sync-bn"]
    probe = subprocess.run([kiln, "train", "--device", "cuda", "--model", "seed-cnn", "--train-size", "32",
                            "--test-size", "32", "--epochs", "1", "--verbose", "0"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env=ENV, timeout=300)
    if probe.returncode != 0:
        print("SKIP: this kiln cannot train on CUDA here:", probe.stdout.strip())
        return SKIP
    ls, ws = train(kiln, os.path.join(tmp, "one"), args, device="cuda")
    ld, wd = train(kiln, os.path.join(tmp, "np2"), args, 2, device="cuda")
    dl, dw = max(abs(a - b) for a, b in zip(ls, ld)), max_diff(ws, wd)
    print("NCCL, 2 GPUs vs one: %d steps, max |loss diff| %.3g, max |weight diff| %.3g" % (len(ld), dl, dw))
    check(len(ls) == len(ld) and dl <= TOL_NCCL, "nccl: per-step losses differ by %g (> %g)" % (dl, TOL_NCCL))
    check(set(ws) == set(wd) and dw <= TOL_NCCL, "nccl: final weights differ by %g (> %g)" % (dw, TOL_NCCL))
    return 0


def write_npy(path, descr, shape, fmt, values):
    head = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, ", ".join(map(str, shape)) + ("," if len(shape) == 1 else ""))
    head += " " * (63 - (len(head) + 10) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head.encode())
        f.write(struct.pack("<%d%s" % (len(values), fmt), *values))


def dataset(tmp, name, rows, seed=7):
    h = w = 12
    x, y = [], []
    for r in rows:  # each pixel a function of (seed, row, index) alone: a row is the same in every file
        for k in range(h * w * 3):
            s = ((seed * 1000003 + r) * 1000033 + k) * 6364136223846793005 % (1 << 64)
            s = (s ^ (s >> 29)) * 1442695040888963407 % (1 << 64)
            x.append((s >> 40) % 256)
        y.append(r % 10)
    xp, yp = os.path.join(tmp, name + "_x.npy"), os.path.join(tmp, name + "_y.npy")
    write_npy(xp, "|u1", (len(rows), h, w, 3), "B", x)
    write_npy(yp, "<i4", (len(rows),), "i", y)
    return "npy:%s,%s" % (xp, yp)


def case_plain(kiln, tmp):
    common = ["--model", "seed-cnn", "--epochs", "1", "--no-shuffle", "--classes", "10"]
    full = dataset(tmp, "full", range(32))
    halves = [dataset(tmp, "half0", range(16)), dataset(tmp, "half1", range(16, 32))]
    _, w2 = train(kiln, os.path.join(tmp, "np2"), common + ["--data", full, "--batch-size", "32"], 2)
    share = [train(kiln, os.path.join(tmp, "half%d" % k), common + ["--data", halves[k], "--batch-size", "16"])[1]
             for k in range(2)]
    d_stats = d_mean = 0.0
    for name, v in w2.items():
        if "moving" in name:  # rank 0 writes: its statistics are its own share's
            d_stats = max(d_stats, max(abs(a - b) for a, b in zip(v, share[0][name])))
        else:
            d_mean = max(d_mean, max(abs(a - (b + c) / 2) for a, b, c in zip(v, share[0][name], share[1][name])))
    print("plain BN, 2 ranks: moving statistics vs rank 0's share alone %.3g; weights vs the mean of the shares' "
          "one-step updates %.3g" % (d_stats, d_mean))
    check(d_stats <= TOL_W, "plain BN: rank 0's moving statistics are not its share's (%g)" % d_stats)
    check(d_mean <= TOL_W, "plain BN: the update is not the mean of the shares' (%g)" % d_mean)


def case_resume(kiln, tmp):
    args = ["--model", "seed-cnn", "--data", "synthetic", "--train-size", "64", "--test-size", "32", "--batch-size", "32",
            "--sync-bn"]
    la, wa = train(kiln, os.path.join(tmp, "whole"), args + ["--epochs", "2"], 2)
    part = os.path.join(tmp, "part")
    train(kiln, part, args + ["--epochs", "1"], 2)
    lb, wb = train(kiln, part, args + ["--epochs", "2", "--resume", part + "/checkpoint.safetensors"], 2)
    print("resume: steps %s vs %s" % (la, lb))
    check(la == lb, "resume: the step losses differ from the uninterrupted run")
    check(wa == wb, "resume: the final weights differ from the uninterrupted run (%g)" % max_diff(wa, wb))


def expect_failure(cmd, needles, what, limit, env=None, status=None):
    t0 = time.time()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env or ENV,
                           timeout=limit + 30)
        out, rc = p.stdout, p.returncode
    except subprocess.TimeoutExpired:
        out, rc = "(hung: killed)", None
    dt = time.time() - t0
    print("%s: exit %s after %.1f s" % (what, rc, dt))
    ok = rc not in (0, None) and dt < limit and all(n in out for n in needles) and status in (None, rc)
    check(ok, "%s: wanted a failure (exit %s) within %g s saying %s, got exit %s after %.1f s:\n%s"
          % (what, status or "> 0", limit, needles, rc, dt, out))


def case_fail(kiln, tmp):
    def cmd(data="synthetic", epochs=1, batch=32):
        return [kiln, "train", "--device", "cpu", "--model", "seed-cnn", "--data", data, "--train-size", "64",
                "--test-size", "32", "--batch-size", str(batch), "--epochs", str(epochs), "--verbose", "0"]
    bad = os.path.join(tmp, "bad.npy")
    with open(bad, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00garbage")
    badspec = "npy:%s,%s" % (bad, bad)
    expect_failure([*MPIRUN, "-np", "1", *cmd(), ":", "-np", "1", *cmd(data=badspec)],
                   ["rank 1 of 2 failed", "bad.npy"], "a rank fed a bad file", 15, status=1)
    env = dict(ENV, KILN_DIST_TIMEOUT="2")
    expect_failure([*MPIRUN, "-np", "1", *cmd(), ":", "-np", "1", *cmd(epochs=3)],
                   ["rank 1 of 2 failed", "timed out"], "a rank left waiting in a collective", 20, env)
    # usage errors exit 2 under mpirun, as without it (a bad flag, a flag that does not fit the
    # model, a global batch that does not divide among the ranks); other failures 1
    expect_failure([*MPIRUN, "-np", "4", *cmd(batch=30)],
                   ["does not divide among 4 ranks"], "a global batch of 30 on 4 ranks", 15, status=2)
    expect_failure([*MPIRUN, "-np", "2", *cmd(), "--bogus"], ["--bogus"], "an unknown flag", 15, status=2)
    expect_failure([*MPIRUN, "-np", "2", *cmd()], ["KILN_DIST_BUCKET_BYTES='lots' is not a byte count"],
                   "a bad KILN_DIST_BUCKET_BYTES", 15, dict(ENV, KILN_DIST_BUCKET_BYTES="lots"), status=1)
    # every rank finds this fault; whichever aborts first names itself
    expect_failure([*MPIRUN, "-np", "2", *cmd(), "--from-logits"], [" of 2 failed", "not logits"],
                   "--from-logits on a softmax model", 15, status=2)



def main():
    kiln, case = sys.argv[1], sys.argv[2]
    np = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    with tempfile.TemporaryDirectory() as tmp:
        if case == "sync":
            case_sync(kiln, np, tmp)
        elif case == "plain":
            case_plain(kiln, tmp)
        elif case == "resume":
            case_resume(kiln, tmp)
        elif case == "nccl":
            if case_nccl(kiln, tmp) == SKIP:
                return SKIP
        elif case == "dropout":
            case_dropout(kiln, tmp)
        elif case == "bucket":
            case_bucket(kiln, tmp)
        elif case == "fail":
            case_fail(kiln, tmp)
        else:
            raise SystemExit("unknown case " + case)
    print("%d failure(s)" % len(FAILED))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
