"""Quality benchmark: classifier FID (evaluate's: 5,000 samples), precision and recall on mnist-5k, for
today's plain DCGAN, each generator switch alone, and the params.yaml default, at equal epochs and at
equal wall time, several seeds each (mean ± std). Every run is an MLflow run in one experiment.

    .venv/bin/python -m bench.quality            # the full table (hours on a 2-core CPU)
    .venv/bin/python -m bench.quality --quick    # end to end in a few minutes: 2 variants, 1 seed, 1 epoch

The FID reference is built as the fid_stats stage builds it (the label classifier, statistics and
real features of all 5,000 digits), once per invocation.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import torch

from bench._common import load_average, machine, mnist_digits, table
from ganops import tracking
from ganops.config import Config, TrackingConfig, from_dict, load_config
from ganops.evaluation import FidReference, evaluate_generator
from ganops.metrics import ClassifierExtractor, feature_statistics, train_classifier
from ganops.training import Callback, Trainer

README = Path(__file__).with_name("README.md")
SECTION = "## quality"
EXPERIMENT = "ganops-quality-bench"
# Today's default before this work: the plain DCGAN (fp32, BCE, no average, no augmentation).
PLAIN: dict[str, dict[str, Any]] = {"model": {"ngf": 64, "ndf": 64, "spectral_norm": False}, "train": {
    "amp": False, "loss": "bce", "lr_d": None, "lr_g": None, "ema": 0.0, "diffaug": None}}
SWITCHES: dict[str, dict[str, dict[str, Any]]] = {
    "plain DCGAN": {},
    "amp (bf16)": {"train": {"amp": True}},
    "ema 0.999": {"train": {"ema": 0.999}},
    "diffaug translation,cutout": {"train": {"diffaug": ["translation", "cutout"]}},
    "hinge": {"train": {"loss": "hinge"}},
    "lsgan": {"train": {"loss": "lsgan"}},
    "wgan-gp": {"train": {"loss": "wgan-gp"}},
    "spectral_norm": {"model": {"spectral_norm": True}},
    "ttur lr_d 4e-4 lr_g 1e-4": {"train": {"lr_d": 4e-4, "lr_g": 1e-4}},
}
DEFAULT_NAME = "params.yaml default"


class WallClockBudget(Callback):
    """Ends training after the epoch in which `seconds` ran out: the loop reads train.epochs every epoch,
    so that epoch becomes the last one (evaluated and sampled as the last epoch always is)."""

    def __init__(self, seconds: float):
        self.seconds, self.trainer, self.start = seconds, None, 0.0

    def on_train_start(self, trainer, state):
        self.trainer, self.start = trainer, time.perf_counter()

    def on_epoch_end(self, state, grid):
        if time.perf_counter() - self.start >= self.seconds:
            self.trainer.cfg = dataclasses.replace(self.trainer.cfg, epochs=state.epoch)


def variants(base: Config) -> dict[str, Config]:
    plain = base.replace(**PLAIN)
    made = {name: plain.replace(**change) for name, change in SWITCHES.items()}
    made[DEFAULT_NAME] = base
    return made


def build_reference(prepared, base: Config, device: torch.device) -> tuple[FidReference, Any]:
    net, accuracy = train_classifier(prepared, base.fid.classifier_epochs, base.fid.classifier_width, device,
                                     seed=base.train.seed)
    extractor = ClassifierExtractor(net, device, base.fid.batch_size)
    features = extractor.features(prepared.images)
    print(f"reference: classifier held-out accuracy {accuracy:.4f}, {features.shape[1]} feature dims")
    return FidReference(extractor, *feature_statistics(features)), features


def run_one(config: Config, name: str, budget: str, prepared, reference, real_features, client, experiment_id,
            seconds: Optional[float], samples: int, device: torch.device) -> dict[str, float]:
    grids = Path(tempfile.mkdtemp(prefix="quality-grids-"))
    params = tracking.flatten(config.to_dict())
    logger = tracking.MlflowLogger(client, experiment_id, f"{name} | {budget} | seed {config.train.seed}", params,
                                   {"bench": "quality", "variant": name, "budget": budget}, grids_dir=grids)
    callbacks: list[Callback] = [logger] + ([WallClockBudget(seconds)] if seconds else [])
    # No in-training FID: it would take wall time from the budget; the evaluation below is what counts.
    trainer = Trainer(config.model, config.train, prepared, device, callbacks=callbacks, show_progress=False)
    start = time.perf_counter()
    state = trainer.fit()
    wall = time.perf_counter() - start
    ev = config.evaluate
    metrics, _ = evaluate_generator(trainer.sampling_generator(), config.model.nz, reference, real_features, samples,
                                    ev.kid_subsets, min(ev.kid_subset_size, samples), device)
    result = {"epochs": float(state.epoch), "wall_s": wall, **metrics}
    tracking.log_metrics(client, state.run_id, {f"eval_{k}": v for k, v in result.items()}, step=state.step)
    tracking.finish_run(client, state.run_id)
    print(f"{name} | {budget} | seed {config.train.seed}: {state.epoch} epochs in {wall:.0f} s, FID {metrics['fid']:.2f}, "
          f"precision {metrics['precision']:.3f}, recall {metrics['recall']:.3f}", flush=True)
    return result


def mean_std(values: list[float], digits: int) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"


def write_section(text: str) -> None:
    body = README.read_text()
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    block = f"{SECTION}\n\n{text}\n\n"
    README.write_text(pattern.sub(lambda _: block, body) if pattern.search(body) else body.rstrip() + "\n\n" + block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=25, help="the equal-epochs budget")
    parser.add_argument("--seconds", type=float, default=240, help="the equal-wall-time budget (the default "
                        "pipeline's training time on the 2-core CPU)")
    parser.add_argument("--samples", type=int, default=5000, help="generated images per evaluation")
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    parser.add_argument("--budgets", nargs="*", default=["epochs", "wall"], choices=["epochs", "wall"])
    parser.add_argument("--tracking-uri", default="sqlite:///mlruns/mlflow.db")
    parser.add_argument("--quick", action="store_true", help="2 variants, 1 seed, 1 epoch / 20 s, 1,000 samples, "
                        "1,000 images; proves the command end to end")
    parser.add_argument("--no-readme", action="store_true", help="print the table only")
    args = parser.parse_args()
    limit = 0
    if args.quick:
        args.seeds, args.epochs, args.seconds, args.samples, limit = 1, 1, 20, 1000, 1000
        args.only = args.only or ["plain DCGAN", DEFAULT_NAME]

    base = load_config("params.yaml").replace(data={"dataset": "mnist-5k", "limit": limit},
                                              train={"device": "cpu", "log_every": 10})
    device = torch.device("cpu")
    prepared = mnist_digits(limit)
    reference, real_features = build_reference(prepared, base, device)
    client = tracking.connect(TrackingConfig(uri=args.tracking_uri))
    experiment_id = tracking.ensure_experiment(client, EXPERIMENT, "mlruns/artifacts")
    chosen = {n: c for n, c in variants(base).items() if not args.only or n in args.only}
    print(f"# quality: {len(chosen)} variants x {args.budgets} x {args.seeds} seeds; {machine()}; "
          f"load average {load_average()}", flush=True)
    rows = []
    for budget in args.budgets:
        label = f"{args.epochs} epochs" if budget == "epochs" else f"{args.seconds:.0f} s"
        for name, config in chosen.items():
            results = []
            for seed in range(args.seeds):
                epochs = args.epochs if budget == "epochs" else 10_000
                run_config = config.replace(train={"seed": config.train.seed + seed, "epochs": epochs})
                results.append(run_one(run_config, name, label, prepared, reference, real_features, client,
                                       experiment_id, args.seconds if budget == "wall" else None, args.samples, device))
            pick = lambda key: [r[key] for r in results]  # noqa: E731
            rows.append([name, label, mean_std(pick("epochs"), 1), mean_std(pick("wall_s"), 0),
                         mean_std(pick("fid"), 2), mean_std(pick("precision"), 3), mean_std(pick("recall"), 3)])
    text = (f"Latest output (`.venv/bin/python -m bench.quality{' --quick' if args.quick else ''}`, "
            f"{time.strftime('%Y-%m-%d')}; {args.seeds} seed(s), {args.samples} samples, mean ± std; MLflow "
            f"experiment `{EXPERIMENT}` in {args.tracking_uri}):\n\n"
            + table(["config", "budget", "epochs", "wall s", "FID", "precision", "recall"], rows))
    print(text)
    if not args.no_readme:
        write_section(text)


if __name__ == "__main__":
    main()
