"""FID speed: the project's feature extraction + FID against pytorch-fid's command line.

Why: the train stage computes an FID every few epochs and the evaluate stage on thousands of samples,
so the metric path must be fast. Both sides compute the FID between two halves of the same images
(the first `--images` mnist-5k digits, as 3-channel pictures) with the same network:

- pytorch-fid CLI: `python -m pytorch_fid dirA dirB --device cpu --dims 2048` in a subprocess, over
  folders of PNG files written by this bench. Its time includes interpreter start-up, imports,
  building the network, PNG decoding (DataLoader workers, its default), the features and the distance.
- ours: `InceptionExtractor` (pytorch-fid's own network class) built from the same weights file, then
  `feature_statistics` + `frechet_distance` on the uint8 tensor the preprocess stage stores. Its time
  includes building the network, the features and the distance; no PNG decoding, because the project
  keeps data and samples as uint8 tensors (that is the design, and part of its advantage).
- ours, classifier: the offline `ClassifierExtractor` (a FeatureClassifier, random weights) on the
  same images (1 channel, its training form), for comparison with the CLI.

RANDOM WEIGHTS, FOR TIMING ONLY: the CLI would download the FID Inception weights, and this machine
may have no internet, so a random-weight state dict is written where torch.hub looks for them
(TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth, in a temporary folder) and both
sides load that file. The cost of a forward pass does not depend on the weights' values. The values
computed are not FIDs and are never printed; only the two sides' agreement is (the same network on
the same pixels must give the same number). Target: ours >= 1.5x the CLI's images/s.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench._common import interleaved, load_average, machine, median, mnist_digits, table, verdict
from ganops.metrics import (INCEPTION_WEIGHTS_FILE, ClassifierExtractor, FeatureClassifier, InceptionExtractor,
                            feature_statistics, frechet_distance)
from ganops.metrics.extractors.inception import _random_inception_state

SPEEDUP_TARGET = 1.5
DEVICE = torch.device("cpu")


def write_pngs(images: torch.Tensor, folder: Path) -> None:
    """uint8 N x 1 x H x W digits as RGB PNG files (gray repeated), as an image folder would hold them."""
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        rgb = image.expand(3, -1, -1).permute(1, 2, 0).numpy()
        Image.fromarray(np.ascontiguousarray(rgb)).save(folder / f"{i:05d}.png")


def cli(dirs: tuple[Path, Path], torch_home: Path) -> float:
    env = {**os.environ, "TORCH_HOME": str(torch_home)}
    out = subprocess.run([sys.executable, "-m", "pytorch_fid", str(dirs[0]), str(dirs[1]), "--device", "cpu",
                          "--dims", "2048"], env=env, capture_output=True, text=True, check=True)
    return float(re.search(r"FID:\s+(\S+)", out.stdout).group(1))


def ours(extractor_factory, halves: tuple[torch.Tensor, torch.Tensor]) -> float:
    extractor = extractor_factory()
    stats = [feature_statistics(extractor.features(half)) for half in halves]
    return frechet_distance(*stats[0], *stats[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400,
                        help="images in all, split in two halves (default 400; 2000 takes about 6 min on 2 idle cores)")
    parser.add_argument("--rounds", type=int, default=1, help="timed rounds per side (default 1)")
    parser.add_argument("--quick", action="store_true", help="200 images, 1 round")
    args = parser.parse_args()
    count = 200 if args.quick else args.images
    # Fewer images than feature dims make singular covariances; scipy warns, and it does not matter for timing.
    warnings.filterwarnings("ignore", message="Matrix is singular")

    digits = mnist_digits().images[:count]  # uint8 N x 1 x 32 x 32, as the preprocess stage stores them
    halves = (digits[: count // 2], digits[count // 2:])
    values: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="ganops-bench-fid-") as tmp:
        tmp = Path(tmp)
        dirs = (tmp / "a", tmp / "b")
        for half, folder in zip(halves, dirs):
            write_pngs(half, folder)
        torch.manual_seed(0)
        weights = tmp / "torch" / "hub" / "checkpoints" / INCEPTION_WEIGHTS_FILE
        weights.parent.mkdir(parents=True)
        torch.save(_random_inception_state(), weights)
        classifier = FeatureClassifier(channels=1, image_size=32, width=32, num_classes=10)

        def run(name, fn):
            return lambda: lambda: values.__setitem__(name, fn())
        makers = {
            "pytorch-fid CLI": run("cli", lambda: cli(dirs, tmp / "torch")),
            "ours, inception": run("inception", lambda: ours(
                lambda: InceptionExtractor(str(weights), DEVICE), tuple(h.expand(-1, 3, -1, -1) for h in halves))),
            "ours, classifier": run("classifier", lambda: ours(
                lambda: ClassifierExtractor(classifier, DEVICE), halves)),
            "CLI start-up only": run("startup", lambda: subprocess.run(
                [sys.executable, "-c", "import pytorch_fid.fid_score"], check=True)),
        }
        load_before = load_average()
        times = interleaved(makers, args.rounds)
        load_after = load_average()

    ips = {name: count / median(t) for name, t in times.items()}
    base = ips["pytorch-fid CLI"]
    includes = {
        "pytorch-fid CLI": "process start, imports, network, PNG decode (2 workers), features, FID",
        "ours, inception": "network from the file, features from uint8 tensors, statistics, FID",
        "ours, classifier": "features from uint8 tensors (1 channel), statistics, FID",
        "CLI start-up only": "python -c 'import pytorch_fid.fid_score'",
    }
    print(f"# fid_speed: FID between two halves of {count} mnist-5k digits (32x32, as 3-channel PNGs for the "
          f"CLI), 2048-d pool3 features, {args.rounds} round(s) a side, median")
    print("# RANDOM-WEIGHT Inception on both sides: for timing only; the numbers it gives are not FIDs")
    print(f"machine: {machine()}; load average {load_before} before, {load_after} after\n")
    rows = [[name, f"{median(t):.1f}", f"{ips[name]:.1f}" if name != "CLI start-up only" else "",
             f"{ips[name] / base:.2f}x" if name != "CLI start-up only" else "", includes[name]]
            for name, t in times.items()]
    print(table(["path", "seconds", "images/s", "vs CLI", "includes"], rows))
    agree = abs(values["inception"] - values["cli"]) / abs(values["cli"])
    print(f"\nagreement check (same random network, same pixels): relative difference of the two paths' "
          f"values {agree:.1e}")
    speedup = ips["ours, inception"] / base
    print()
    print(table(["target", "measured", "result"], [
        [f"ours (inception) >= {SPEEDUP_TARGET}x the CLI's images/s", f"{speedup:.2f}x",
         verdict(speedup >= SPEEDUP_TARGET)],
    ]))


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"(bench took {time.perf_counter() - start:.0f} s)")
