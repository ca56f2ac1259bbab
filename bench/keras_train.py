#!/usr/bin/env python3
"""bench/keras_train.py: training steps per second of the Keras 3 (TensorFlow backend, CPU)
equivalents of kiln's built-in models (src/model/builtins.c), measured as `kiln-bench train`
measures kiln, for the table beside it (bench/cpu_train_table.sh).

  seed-cnn  Conv2D(32, 3x3, relu) -> BN -> MaxPool 2x2 -> Flatten -> Dense(64, relu) -> BN
            -> Dense(10, softmax)
  resnet20  ResNet-20 v1 (the Keras example's CIFAR ResNet): conv3x3(16)-BN-relu, three stages
            of three basic blocks (16, 32, 64 filters; the first block of stages 2 and 3
            strides 2 with a 1x1 projection shortcut, no BN on it), global average pooling,
            Dense(10, softmax); 'same' padding

Keras' defaults everywhere, as kiln's (BN momentum 0.99, epsilon 1e-3; Adam lr 1e-3, epsilon
1e-7; sparse categorical cross-entropy on the softmax output, which Keras computes from the
logits), NHWC (channels_last) float32, model.fit on random images in [0, 1) and random labels
held in host memory, shuffle off, jit_compile left at Keras' default ("auto": no XLA on a
CPU-only machine). One warm-up epoch of --steps batches (it traces the step function), then
--reps timed epochs (host clock from on_epoch_begin to on_epoch_end); the median gives steps/s.
--threads N sets TensorFlow's intra-op and inter-op pools to N threads (set OMP_NUM_THREADS=N
too, before Python starts: bench/cpu_train_table.sh does). Each result line has
"layer_params", every layer's weight count, for the layer-by-layer check against kiln.

  usage: keras_train.py [--model seed-cnn|resnet20|all] [--batch N] [--steps N] [--reps N]
                        [--input HxWxC] [--threads N] [--json OUT]
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

RUNS = (("seed-cnn", 32), ("seed-cnn", 256), ("resnet20", 128))


def seed_cnn(keras, shape, classes=10):
    L = keras.layers
    return keras.Sequential([
        keras.Input(shape), L.Conv2D(32, 3, activation="relu"), L.BatchNormalization(), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(64, activation="relu"), L.BatchNormalization(), L.Dense(classes, activation="softmax")])


def resnet20(keras, shape, classes=10):
    L = keras.layers

    def conv_bn(x, filters, k, stride, relu):
        x = L.BatchNormalization()(L.Conv2D(filters, k, stride, padding="same")(x))
        return L.Activation("relu")(x) if relu else x

    inp = keras.Input(shape)
    x = conv_bn(inp, 16, 3, 1, True)
    for stage in range(3):
        filters = 16 << stage
        for block in range(3):
            stride = 2 if stage > 0 and block == 0 else 1
            y = conv_bn(conv_bn(x, filters, 3, stride, True), filters, 3, 1, False)
            shortcut = L.Conv2D(filters, 1, stride, padding="same")(x) if stride != 1 else x
            x = L.Activation("relu")(L.Add()([y, shortcut]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(classes, activation="softmax")(x), name="resnet20")


def parse_input(v):
    try:
        h, w, c = (int(t) for t in v.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input is HxWxC (e.g. 28x28x1), not '{v}'")
    return h, w, c


def run(keras, np, name, batch, args):
    keras.utils.set_random_seed(42)
    model = (seed_cnn if name == "seed-cnn" else resnet20)(keras, args.input)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-7),
                  loss="sparse_categorical_crossentropy")
    n = batch * args.steps
    rng = np.random.default_rng(7)
    x = rng.random((n, *args.input), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    secs, losses, t0 = [], [], [0.0]

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            t0[0] = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            secs.append(time.perf_counter() - t0[0])
            losses.append(float(logs["loss"]))

    model.fit(x, y, batch_size=batch, epochs=args.reps + 1, shuffle=False, verbose=0, callbacks=[Timer()])
    timed = sorted(secs[1:])  # epoch 0 warms up
    k = len(timed)
    med = timed[k // 2] if k % 2 else 0.5 * (timed[k // 2 - 1] + timed[k // 2])
    layer_params = [lay.count_params() for lay in model.layers if lay.count_params()]
    rec = dict(bench="train", impl="keras", device="cpu", model=name, batch=batch, steps=args.steps, reps=args.reps,
               median_s=med, min_s=timed[0], steps_per_s=args.steps / med, images_per_s=n / med,
               params=model.count_params(), layer_params=layer_params, input="x".join(map(str, args.input)),
               threads=args.threads, warmup_s=secs[0], loss_first=losses[0], loss_last=losses[-1])
    print(f"keras_train: {name} batch {batch} on cpu: {rec['steps_per_s']:.2f} steps/s "
          f"({rec['images_per_s']:.0f} images/s), median of {args.reps} epochs of {args.steps} steps; "
          f"{rec['params']} params; loss {losses[0]:.4f} -> {losses[-1]:.4f}", file=sys.stderr)
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all", choices=("all", "seed-cnn", "resnet20"))
    ap.add_argument("--batch", type=int, default=0, help="one batch size for every model (default: 32 and 256 "
                                                           "for seed-cnn, 128 for resnet20)")
    ap.add_argument("--steps", type=int, default=5, help="steps per epoch (default 5)")
    ap.add_argument("--reps", type=int, default=3, help="timed epochs")
    ap.add_argument("--input", type=parse_input, default=(32, 32, 3), help="HxWxC (default 32x32x3)")
    ap.add_argument("--threads", type=int, default=0, help="TensorFlow's intra- and inter-op threads "
                                                            "(default: TensorFlow's own)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import numpy as np
    import tensorflow as tf
    if args.threads:  # before TensorFlow runs anything
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import keras
    out = open(args.json, "w") if args.json else sys.stdout
    print(json.dumps(dict(bench="meta", what="train", impl="keras", date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          device="cpu", name="cpu", driver=f"keras {keras.__version__}, tensorflow {tf.__version__}, "
                          f"oneDNN opts {os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default (on)')}",
                          command=" ".join(sys.argv), commit=os.environ.get("KILN_COMMIT"),
                          threads=args.threads or None)),
          file=out, flush=True)
    done = set()
    for model, batch in RUNS:
        if args.model not in ("all", model) or (args.batch and model in done):
            continue
        done.add(model)
        print(json.dumps(run(keras, np, model, args.batch or batch, args)), file=out, flush=True)
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main()
