"""Default distillation on a dataset that is not Fashion-MNIST, through every route kdjax reads: IDX files, PaddleClas
list files of PNGs, and the TFDS dataset `prepare_data` makes of those lists.

    python benchmarks/own_data_routes.py [--workdir=DIR] [--epochs=4]

The data is scikit-learn's handwritten digits (1,797 8×8 images, 17 gray levels, upscaled ×2 to 16×16 and scaled to
0..255): the first 1,437 for training, the last 360 for testing. Each route runs `python -m kdjax.main
--config=configs/dkd.py` (teacher trained first, then CE + DKD) with only the data flags changed, and the script
prints per route: both models' test top-1, the mean/std kdjax computed from the training images, the augmentation
`auto` chose, and the share of the distillation phase the devices waited for data. Needs scikit-learn
(`pip install scikit-learn`); nothing is downloaded (the digits ship inside the package).
"""

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = 1437


def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images / 16.0 * 255.0).astype(np.uint8)
    images = images.repeat(2, axis=1).repeat(2, axis=2)
    labels = d.target.astype(np.uint8)
    return (images[:TRAIN], labels[:TRAIN]), (images[TRAIN:], labels[TRAIN:])


def write_idx(directory, train, test):
    os.makedirs(directory, exist_ok=True)
    for stem, (images, labels) in (("train", train), ("t10k", test)):
        for kind, array in (("images", images), ("labels", labels)):
            header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
            with gzip.open(os.path.join(directory, f"{stem}-{kind}-idx{array.ndim}-ubyte.gz"), "wb") as f:
                f.write(header + np.ascontiguousarray(array).tobytes())


def write_lists(root, train, test):
    from PIL import Image

    for list_name, (images, labels) in (("train_list.txt", train), ("val_list.txt", test)):
        sub = list_name.split("_")[0]
        os.makedirs(os.path.join(root, sub), exist_ok=True)
        with open(os.path.join(root, list_name), "w") as f:
            for i, (image, label) in enumerate(zip(images, labels)):
                rel = f"{sub}/{i:05d}.png"
                Image.fromarray(image).save(os.path.join(root, rel))
                f.write(f"{rel} {int(label)}\n")


def run(name, workdir, flags, epochs):
    cmd = [sys.executable, "-m", "kdjax.main", "--config=configs/dkd.py", f"--workdir={workdir}",
           f"--config.train.epochs={epochs}", f"--config.pretrain.epochs={epochs}", "--config.train.batch_size=64",
           "--config.pretrain.batch_size=64", "--config.train.eval_batch_size=120", *flags]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(f"{name}: failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        return None
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    stats = json.load(open(os.path.join(workdir, "config.json"))).get("data_stats") or {}
    ev = summary["eval"]
    record = {"route": name, "command": " ".join(cmd[1:]), "wall_s": round(wall, 1),
              "teacher_top1": ev.get("Teacher/top1"), "student_top1": ev.get("Student/top1"),
              "data_wait_fraction": ev.get("data_wait_fraction"), "load": round(os.getloadavg()[0], 1)}
    record["computed_mean"], record["computed_std"] = stats.get("mean"), stats.get("std")
    record["log"] = [line.strip() for line in proc.stdout.splitlines() if "computed from" in line or "augment" in line]
    return record


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="", help="where the data and runs go (default: a temporary folder)")
    parser.add_argument("--epochs", type=float, default=4.0, help="teacher and student epochs (default 4)")
    parser.add_argument("--routes", default="idx,list,tfds", help="which routes to run (default: all three)")
    args = parser.parse_args()
    root = args.workdir or tempfile.mkdtemp(prefix="kdjax_own_data_")
    train, test = digits()
    write_idx(os.path.join(root, "idx"), train, test)
    write_lists(os.path.join(root, "lists"), train, test)
    subprocess.run([sys.executable, "-m", "kdjax.tools.prepare_data", f"--root={os.path.join(root, 'lists')}",
                    "--num_classes=10", "--name=digits", f"--out_dir={os.path.join(root, 'tfds')}"],
                   cwd=REPO, check=True, capture_output=True)
    routes = {
        "idx": [f"--config.data.data_dir={os.path.join(root, 'idx')}"],
        "list": [f"--config.data.root={os.path.join(root, 'lists')}", "--config.data.num_classes=10",
                 "--config.data.image_size=16"],
        "tfds": ["--config.data.source=tfds", "--config.data.name=digits",
                 f"--config.data.tfds_data_dir={os.path.join(root, 'tfds')}"],
    }
    for name, flags in routes.items():
        if name not in args.routes.split(","):
            continue
        record = run(name, os.path.join(root, f"run_{name}"), flags, args.epochs)
        if record:
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
