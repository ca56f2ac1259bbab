#!/usr/bin/env python3
"""bench/torch_train.py: training steps per second of the PyTorch equivalents of kiln's built-in
models (src/model/builtins.c), measured as `kiln-bench train` measures kiln, for the table beside it.

  seed-cnn  Conv2D(32, 3x3, relu) -> BN -> MaxPool 2x2 -> Flatten -> Dense(64, relu) -> BN
            -> Dense(10); 32x32x3 inputs
  resnet20  ResNet-20 v1 (the Keras example's CIFAR ResNet): conv3x3(16)-BN-relu, three stages
            of three basic blocks (16, 32, 64 filters; the first block of stages 2 and 3
            strides 2 with a 1x1 projection shortcut, no BN on it), global average pooling,
            Dense(10)

Like kiln: Keras' BN settings (momentum 0.99 -> torch momentum 0.01, epsilon 1e-3), biases on
every conv and dense layer, Adam (lr 1e-3, Keras' epsilon 1e-7), softmax cross-entropy on the
logits, strict fp32 (TF32 off unless --tf32), random images and labels in host memory copied
to the device every step. One warm-up epoch of --steps batches, then --reps timed epochs
(CUDA events around each epoch, the loss summed on the device and read once per epoch); the
median epoch gives steps/s. Without CUDA it runs on the CPU with a host clock.

  usage: torch_train.py [--device cuda|cpu] [--model seed-cnn|resnet20|all] [--batch N]
                        [--steps N] [--reps N] [--channels-last] [--tf32] [--json OUT]
                        [--input HxWxC] [--threads N]

--input 28x28x1 gives MNIST-shaped data (default 32x32x3); --threads N calls
torch.set_num_threads(N) (set OMP_NUM_THREADS=N too, before Python starts: bench/cpu_train_table.sh
does). Each result line has "layer_params": every layer's weight count (BN with its running
statistics, as Keras counts them), for the layer-by-layer check against kiln and Keras.
"""
import argparse
import json
import os
import sys
import time

import torch
from torch import nn

RUNS = (("seed-cnn", 32), ("seed-cnn", 256), ("resnet20", 128))


def bn(c, dims=2):
    return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(c, eps=1e-3, momentum=0.01)


def seed_cnn(classes=10, shape=(32, 32, 3)):
    h, w, c = shape
    return nn.Sequential(
        nn.Conv2d(c, 32, 3), nn.ReLU(), bn(32), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear((h - 2) // 2 * ((w - 2) // 2) * 32, 64), nn.ReLU(), bn(64, dims=1), nn.Linear(64, classes))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1), bn(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1), bn(cout)
        self.proj = nn.Conv2d(cin, cout, 1, stride) if stride != 1 else None

    def forward(self, x):
        y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
        return torch.relu(y + (self.proj(x) if self.proj is not None else x))


def resnet20(classes=10, shape=(32, 32, 3)):
    layers, cin = [nn.Conv2d(shape[2], 16, 3, 1, 1), bn(16), nn.ReLU()], 16
    for stage in range(3):
        for block in range(3):
            cout = 16 << stage
            layers.append(Block(cin, cout, 2 if stage > 0 and block == 0 else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes)]
    return nn.Sequential(*layers)


def keras_param_count(model):
    """Keras' count: weights plus BN's moving statistics (non-trainable there)"""
    return sum(p.numel() for p in model.parameters()) + sum(
        b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))


def layer_params(model):
    """each leaf module's weight count (in registration order, which is kiln's layer order)"""
    out = []
    for m in model.modules():
        if next(m.children(), None) is None:
            k = sum(p.numel() for p in m.parameters(recurse=False)) + sum(
                b.numel() for name, b in m.named_buffers(recurse=False) if name in ("running_mean", "running_var"))
            if k:
                out.append(k)
    return out


def parse_input(v):
    try:
        h, w, c = (int(t) for t in v.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input is HxWxC (e.g. 28x28x1), not '{v}'")
    return h, w, c


def run(name, batch, args, dev):
    torch.manual_seed(42)
    model = (seed_cnn if name == "seed-cnn" else resnet20)(shape=args.input).to(dev)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    n = batch * args.steps
    g = torch.Generator().manual_seed(7)
    h, w, c = args.input
    x = torch.rand(n, c, h, w, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    if dev.type == "cuda":
        x, y = x.pin_memory(), y.pin_memory()
    cuda = dev.type == "cuda"

    def epoch():
        total = torch.zeros((), device=dev)
        for i in range(args.steps):
            xb = x[i * batch:(i + 1) * batch].to(dev, non_blocking=True).contiguous(memory_format=fmt)
            yb = y[i * batch:(i + 1) * batch].to(dev, non_blocking=True)
            loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        return total

    model.train()
    secs, losses = [], []
    for _ in range(args.reps + 1):  # epoch 0 warms up
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            total = epoch()
            b.record()
            losses.append(total.item() / args.steps)  # waits for the epoch, as kiln's fetch does
            secs.append(a.elapsed_time(b) * 1e-3)
        else:
            t0 = time.perf_counter()
            losses.append(epoch().item() / args.steps)
            secs.append(time.perf_counter() - t0)
    timed = sorted(secs[1:])
    k = len(timed)
    med = timed[k // 2] if k % 2 else 0.5 * (timed[k // 2 - 1] + timed[k // 2])
    rec = dict(bench="train", impl="torch", device=dev.type, model=name, batch=batch, steps=args.steps,
               reps=args.reps, median_s=med, min_s=timed[0], steps_per_s=args.steps / med, images_per_s=n / med,
               params=keras_param_count(model), layer_params=layer_params(model),
               input="x".join(map(str, args.input)), threads=torch.get_num_threads(), warmup_s=secs[0], loss_first=losses[0], loss_last=losses[-1],
               channels_last=args.channels_last, tf32=args.tf32)
    print(f"torch_train: {name} batch {batch} on {dev.type}: {rec['steps_per_s']:.2f} steps/s "
          f"({rec['images_per_s']:.0f} images/s), median of {args.reps} epochs of {args.steps} steps; "
          f"{rec['params']} params; loss {losses[0]:.4f} -> {losses[-1]:.4f}", file=sys.stderr)
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", default="all", choices=("all", "seed-cnn", "resnet20"))
    ap.add_argument("--batch", type=int, default=0, help="one batch size for every model (default: 32 and 256 "
                                                           "for seed-cnn, 128 for resnet20)")
    ap.add_argument("--steps", type=int, default=0, help="steps per epoch (default 50 cuda, 5 cpu)")
    ap.add_argument("--reps", type=int, default=3, help="timed epochs")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 (kiln computes strict fp32)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--input", type=parse_input, default=(32, 32, 3), help="HxWxC (default 32x32x3)")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's own)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: torch.cuda.is_available() is False")
    args.steps = args.steps or (50 if dev.type == "cuda" else 5)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cudnn.benchmark = False
    out = open(args.json, "w") if args.json else sys.stdout
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(json.dumps(dict(bench="meta", what="train", impl="torch", date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          device=dev.type, name=name, driver=f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
                          f"cuDNN {torch.backends.cudnn.version()}", command=" ".join(sys.argv), commit=os.environ.get("KILN_COMMIT"),
                          threads=torch.get_num_threads())),
          file=out, flush=True)
    done = set()
    for model, batch in RUNS:
        if args.model not in ("all", model) or (args.batch and model in done):
            continue
        done.add(model)
        print(json.dumps(run(model, args.batch or batch, args, dev)), file=out, flush=True)
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main()
