"""Quality benchmark: classifier FID (evaluate's: 5,000 samples), precision, recall and KID on mnist-5k, for
today's plain DCGAN, the params.yaml default and each generator switch alone, at equal epochs and at equal
wall time, several seeds each (mean ± std). Every run is an MLflow run in one experiment.

    .venv/bin/python -m bench.quality               # the full table (hours on a 2-core CPU); resumable
    .venv/bin/python -m bench.quality --table-only  # rebuild the README table from bench/quality_runs.csv
    .venv/bin/python -m bench.quality --quick       # end to end in a few minutes: 2 variants, 1 seed, 1 epoch

Each finished run appends a row to bench/quality_runs.csv and rewrites the table in bench/README.md
(`## quality`), so partial progress is visible; runs already in the CSV are skipped on the next start.
The most informative runs come first: the equal-epochs budget for every variant at the first seed, then
the other seeds, then the wall-time budget in the same order.

The FID reference is built as the fid_stats stage builds it (the label classifier, statistics and
real features of all 5,000 digits), once per invocation.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Optional, Sequence

from bench._common import load_average, table, verdict
from ganops.fileio import write_text

README = Path(__file__).with_name("README.md")
RUNS_CSV = Path(__file__).with_name("quality_runs.csv")
SECTION = "## quality"
EXPERIMENT = "ganops-quality-bench"
RUN_FIELDS = ("variant", "budget", "seed", "status", "epochs", "wall_s", "fid", "precision", "recall", "kid",
              "samples", "run_id", "load_avg", "finished")
# Today's default before this work: the plain DCGAN (fp32, BCE, no average, no augmentation).
PLAIN_NAME, DEFAULT_NAME = "plain DCGAN", "params.yaml default"
PLAIN: dict[str, dict[str, Any]] = {"model": {"ngf": 64, "ndf": 64, "spectral_norm": False}, "train": {
    "amp": False, "loss": "bce", "lr_d": None, "lr_g": None, "ema": 0.0, "diffaug": None}}
SWITCHES: dict[str, dict[str, dict[str, Any]]] = {
    "amp (bf16)": {"train": {"amp": True}},
    "ema 0.999": {"train": {"ema": 0.999}},
    "diffaug translation,cutout": {"train": {"diffaug": ["translation", "cutout"]}},
    "hinge": {"train": {"loss": "hinge"}},
    "lsgan": {"train": {"loss": "lsgan"}},
    "wgan-gp": {"train": {"loss": "wgan-gp"}},
    "spectral_norm": {"model": {"spectral_norm": True}},
    "ttur lr_d 4e-4 lr_g 1e-4": {"train": {"lr_d": 4e-4, "lr_g": 1e-4}},
}
VARIANT_ORDER = (PLAIN_NAME, DEFAULT_NAME, *SWITCHES)  # the goal's two rows first
GOAL_FID_RATIO = 10.0


class Cell(NamedTuple):
    """One run of the table: a variant at a budget and a seed."""

    variant: str
    budget: str  # "25 epochs" or "240 s": the label the CSV and the table use
    seed: int
    epochs: Optional[int]  # the equal-epochs budget, or None
    seconds: Optional[float]  # the wall-time budget, or None

    @property
    def key(self) -> tuple[str, str, int]:
        return self.variant, self.budget, self.seed


def budget_label(kind: str, epochs: int, seconds: float) -> str:
    return f"{epochs} epochs" if kind == "epochs" else f"{seconds:g} s"


def plan(names: Sequence[str], seeds: Sequence[int], budgets: Sequence[str], epochs: int, seconds: float) -> list[Cell]:
    """Budget by budget, seed by seed, every variant: a partial table is a complete one at fewer seeds."""
    return [Cell(name, budget_label(kind, epochs, seconds), seed, epochs if kind == "epochs" else None,
                 seconds if kind == "wall" else None)
            for kind in budgets for seed in seeds for name in names]


# ---------------------------------------------------------------------------------------------------
# The runs file: one row per finished run; the table is built from it

def read_runs(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def append_run(path: Path, row: Mapping[str, Any]) -> None:
    """Add one row; the file is rewritten atomically, so a kill leaves the old file or the new one."""
    old = path.read_text() if path.is_file() else ""
    out = io.StringIO()
    writer = csv.DictWriter(out, RUN_FIELDS, lineterminator="\n")
    if not old:
        writer.writeheader()
    writer.writerow({field: row.get(field, "") for field in RUN_FIELDS})
    write_text(path, old + out.getvalue())


def done_keys(runs: Iterable[Mapping[str, str]]) -> set[tuple[str, str, int]]:
    return {(r["variant"], r["budget"], int(r["seed"])) for r in runs}


def mean_std(values: Sequence[float], digits: int, style: str = "f") -> str:
    """"mean ± sample std" with `digits` decimals (style "f") or significant digits (style "g")."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}{style}} ± {spread:.{digits}{style}}"


def _budget_order(label: str) -> tuple[int, float]:
    number, unit = label.split(" ", 1)
    return (0 if unit == "epochs" else 1), float(number)


def _variant_order(name: str) -> tuple[int, str]:
    return (VARIANT_ORDER.index(name), "") if name in VARIANT_ORDER else (len(VARIANT_ORDER), name)


def summarize(runs: Sequence[Mapping[str, str]]) -> tuple[list[list[str]], list[str]]:
    """Table rows (one per budget and variant, mean ± std over the seeds present) and the goal lines."""
    groups: dict[tuple[str, str], list[Mapping[str, str]]] = {}
    for run in runs:
        groups.setdefault((run["budget"], run["variant"]), []).append(run)
    means: dict[tuple[str, str], dict[str, float]] = {}
    rows = []
    for budget, variant in sorted(groups, key=lambda k: (_budget_order(k[0]), _variant_order(k[1]))):
        group = groups[budget, variant]
        ok = [r for r in group if r["status"] == "ok"]
        failed = len(group) - len(ok)
        seeds = f"{len(ok)}" + (f" (+{failed} diverged)" if failed else "")
        if not ok:
            rows.append([variant, budget, seeds] + ["-"] * 8)
            continue
        pick = lambda key: [float(r[key]) for r in ok]  # noqa: E731
        means[budget, variant] = {k: statistics.mean(pick(k)) for k in ("fid", "recall")}
        loads = [float(r["load_avg"].split()[0]) for r in ok if r["load_avg"]]
        rows.append([variant, budget, seeds, mean_std(pick("epochs"), 1), mean_std(pick("wall_s"), 0),
                     mean_std(pick("fid"), 2), "", mean_std(pick("precision"), 3), mean_std(pick("recall"), 3),
                     mean_std(pick("kid"), 3, "g"),
                     f"{min(loads):.1f}-{max(loads):.1f}" if loads else "?"])
    for row in rows:  # how many times lower than the plain DCGAN's FID at the same budget
        plain, mine = means.get((row[1], PLAIN_NAME)), means.get((row[1], row[0]))
        if plain and mine and row[6] == "":
            row[6] = f"{plain['fid'] / mine['fid']:.2f}x"
    goals = []
    for budget in sorted({b for b, _ in means}, key=_budget_order):
        plain, default = means.get((budget, PLAIN_NAME)), means.get((budget, DEFAULT_NAME))
        if plain and default:
            ratio = plain["fid"] / default["fid"]
            ok = ratio >= GOAL_FID_RATIO and default["recall"] >= plain["recall"]
            goals.append(f"{budget}: {DEFAULT_NAME} FID {default['fid']:.2f} vs {PLAIN_NAME} {plain['fid']:.2f} = "
                         f"{ratio:.2f}x lower (goal >= {GOAL_FID_RATIO:g}x), recall {default['recall']:.3f} vs "
                         f"{plain['recall']:.3f} (goal: not lower): {verdict(ok)}")
    return rows, goals


HEADERS = ["config", "budget", "seeds", "epochs", "wall s", "FID", "plain FID / FID", "precision", "recall",
           "KID", "load avg (1 min)"]


def section_text(runs: Sequence[Mapping[str, str]], runs_csv: Path, planned: Optional[int], experiment: str,
                 uri: str) -> str:
    rows, goals = summarize(runs)
    samples = sorted({r["samples"] for r in runs}) or ["?"]
    progress = f"{len(runs)} of {planned} runs" if planned else f"{len(runs)} runs"
    lines = [f"Built from `{runs_csv.name}` ({progress}, {time.strftime('%Y-%m-%d %H:%M')}) by "
             f"`.venv/bin/python -m bench.quality` (`--table-only` rebuilds it from the CSV; a new start skips the "
             f"runs already there). Mean ± std over the seeds present; {'/'.join(samples)} generated images per "
             f"evaluation, classifier features; wall s is training only, on a machine shared with other jobs (the "
             f"load column); one MLflow run per row of the CSV in the experiment `{experiment}` ({uri}).", "",
             table(HEADERS, rows)]
    if goals:
        lines += [""] + [f"- {g}" for g in goals]
    lines += ["", "The single-seed experiments that chose the candidates, with their FID, precision, recall and wall "
              "times, are in [quality_notes.md](quality_notes.md)."]
    return "\n".join(lines)


def write_section(readme: Path, text: str) -> None:
    body = readme.read_text()
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    block = f"{SECTION}\n\n{text}\n\n"
    write_text(readme, pattern.sub(lambda _: block, body) if pattern.search(body) else body.rstrip() + "\n\n" + block)


# ---------------------------------------------------------------------------------------------------
# Training and scoring one cell

def variants(base):
    plain = base.replace(**PLAIN)
    made = {PLAIN_NAME: plain, DEFAULT_NAME: base}
    made.update({name: plain.replace(**change) for name, change in SWITCHES.items()})
    return made


def build_reference(prepared, base, device):
    from ganops.evaluation import FidReference
    from ganops.metrics import ClassifierExtractor, feature_statistics, train_classifier

    net, accuracy = train_classifier(prepared, base.fid.classifier_epochs, base.fid.classifier_width, device,
                                     seed=base.train.seed)
    extractor = ClassifierExtractor(net, device, base.fid.batch_size)
    features = extractor.features(prepared.images)
    print(f"reference: classifier held-out accuracy {accuracy:.4f}, {features.shape[1]} feature dims", flush=True)
    return FidReference(extractor, *feature_statistics(features)), features


def wall_clock_budget(seconds: float):
    from ganops.training import Callback

    class WallClockBudget(Callback):
        """Ends training after the epoch in which `seconds` ran out: the loop reads train.epochs every
        epoch, so that epoch becomes the last one."""

        def on_train_start(self, trainer, state):
            self.trainer, self.start = trainer, time.perf_counter()

        def on_epoch_end(self, state, grid):
            if time.perf_counter() - self.start >= seconds:
                self.trainer.cfg = dataclasses.replace(self.trainer.cfg, epochs=state.epoch)

    return WallClockBudget()


def run_one(config, cell: Cell, prepared, reference, real_features, tracker, samples: int, device) -> dict[str, Any]:
    from ganops.errors import DivergenceError, one_line
    from ganops.evaluation import evaluate_generator
    from ganops.tracking import TRAINING_PARAMS, RunStatus, run_tags, stage_params
    from ganops.tracking.base import SOURCE_TAG
    from ganops.tracking.callback import TrackingCallback
    from ganops.training import Trainer

    params = {**stage_params(config, TRAINING_PARAMS), "bench.budget": cell.budget, "bench.samples": str(samples)}
    tags = {**run_tags(config, "bench", device, bench="quality", variant=cell.variant, budget=cell.budget,
                       seed=str(cell.seed)), SOURCE_TAG: "bench/quality.py"}
    logger = TrackingCallback(tracker, f"{cell.variant} | {cell.budget} | seed {cell.seed}", params, tags)
    callbacks = [logger] + ([wall_clock_budget(cell.seconds)] if cell.seconds else [])
    # No in-training FID: it would take wall time from the budget; the evaluation below is what counts.
    trainer = Trainer(config.model, config.train, prepared, device, callbacks=callbacks, show_progress=False)
    row: dict[str, Any] = {"variant": cell.variant, "budget": cell.budget, "seed": cell.seed, "samples": samples}
    start = time.perf_counter()
    try:
        state = trainer.fit()
    except DivergenceError as error:  # a result, not a crash: the callback has marked the run FAILED
        print(f"{cell.variant} | {cell.budget} | seed {cell.seed}: {one_line(error)}", flush=True)
        return {**row, "status": "diverged", "epochs": trainer.state.epoch, "run_id": trainer.state.run_id,
                "wall_s": f"{time.perf_counter() - start:.1f}", "load_avg": load_average(),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    wall = time.perf_counter() - start
    try:
        ev = config.evaluate
        metrics, _ = evaluate_generator(trainer.sampling_generator(), config.model.nz, reference, real_features,
                                        samples, ev.kid_subsets, min(ev.kid_subset_size, samples), device)
        tracker.log_metrics(state.run_id, {"train_wall_s": wall, "train_epochs": float(state.epoch),
                                           **{f"eval_{k}": v for k, v in metrics.items()}}, step=state.step)
    except BaseException as error:
        status = RunStatus.KILLED if isinstance(error, KeyboardInterrupt) else RunStatus.FAILED
        tracker.finish_run(state.run_id, status, one_line(error, limit=5000))
        raise
    tracker.finish_run(state.run_id)
    print(f"{cell.variant} | {cell.budget} | seed {cell.seed}: {state.epoch} epochs in {wall:.0f} s, "
          f"FID {metrics['fid']:.2f}, precision {metrics['precision']:.3f}, recall {metrics['recall']:.3f}, "
          f"KID {metrics['kid_mean']:.5f} (run {state.run_id})", flush=True)
    return {**row, "status": "ok", "epochs": state.epoch, "wall_s": f"{wall:.1f}", "fid": f"{metrics['fid']:.4f}",
            "precision": f"{metrics['precision']:.4f}", "recall": f"{metrics['recall']:.4f}",
            "kid": f"{metrics['kid_mean']:.6f}", "run_id": state.run_id, "load_avg": load_average(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}


def artifact_root(uri: str, default: str) -> str:
    """Beside a sqlite store (sqlite:///mlruns/mlflow.db -> mlruns/artifacts), so a throwaway store keeps its files."""
    return str(Path(uri[len("sqlite:///"):]).parent / "artifacts") if uri.startswith("sqlite:///") else default


def _interrupt(signum, frame):  # SIGTERM ends the current run as KILLED in MLflow, like Ctrl-C
    raise KeyboardInterrupt(f"signal {signum}")


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
    parser.add_argument("--runs-csv", type=Path, help=f"one row per finished run (default: {RUNS_CSV}; with "
                        "--quick, a new temporary file)")
    parser.add_argument("--readme", type=Path, help=f"where the table goes (default: {README}; with --quick, "
                        "nowhere unless given)")
    parser.add_argument("--no-readme", action="store_true", help="print the table only")
    parser.add_argument("--table-only", action="store_true", help="rebuild the table from the CSV; train nothing")
    parser.add_argument("--quick", action="store_true", help="2 variants, 1 seed, 1 epoch / 20 s, 1,000 samples, "
                        "1,000 images, experiment ganops-quality-bench-quick; proves the command end to end")
    args = parser.parse_args()
    limit, experiment = 0, EXPERIMENT
    if args.quick:
        args.seeds, args.epochs, args.seconds, args.samples, limit = 1, 1, 20, 1000, 1000
        args.only = args.only or [PLAIN_NAME, DEFAULT_NAME]
        args.runs_csv = args.runs_csv or Path(tempfile.mkdtemp(prefix="quality-quick-")) / "quality_runs.csv"
        experiment = f"{EXPERIMENT}-quick"
    else:
        args.readme = args.readme or README
    runs_csv: Path = args.runs_csv or RUNS_CSV
    readme = None if args.no_readme else args.readme
    unknown = set(args.only or ()) - set(VARIANT_ORDER)
    if unknown:
        parser.error(f"--only: unknown variant(s) {sorted(unknown)}; allowed: {list(VARIANT_ORDER)}")

    def publish(planned: Optional[int]) -> None:
        text = section_text(read_runs(runs_csv), runs_csv, planned, experiment, args.tracking_uri)
        print(text, flush=True)
        if readme is not None:
            write_section(readme, text)

    if args.table_only:
        publish(None)
        return

    from bench._common import machine, mnist_digits
    from ganops.config import load_config
    from ganops.runtime import configure_backends, resolve_device
    from ganops.tracking import open_tracker

    signal.signal(signal.SIGTERM, _interrupt)
    params = load_config("params.yaml")
    base = params.replace(data={"dataset": "mnist-5k", "limit": limit}, train={"log_every": 10},
                          fid={"extractor": "classifier"},
                          tracking={"enabled": True, "uri": args.tracking_uri, "experiment": experiment,
                                    "artifact_root": artifact_root(args.tracking_uri, params.tracking.artifact_root)})
    configs = {n: c for n, c in variants(base).items() if not args.only or n in args.only}
    cells = plan(list(configs), [base.train.seed + i for i in range(args.seeds)], args.budgets, args.epochs, args.seconds)
    done = done_keys(read_runs(runs_csv))
    todo = [c for c in cells if c.key not in done]
    print(f"# quality: {len(configs)} variants x {args.budgets} x {args.seeds} seeds = {len(cells)} runs, "
          f"{len(cells) - len(todo)} already in {runs_csv}; {machine()}; load average {load_average()}", flush=True)
    if todo:
        device = resolve_device(base.train.device)
        configure_backends(device)
        prepared = mnist_digits(limit)
        reference, real_features = build_reference(prepared, base, device)
        tracker = open_tracker(base)
        print(f"MLflow experiment {experiment}: {tracker.experiment_url()}", flush=True)
        for cell in todo:
            config = configs[cell.variant].replace(train={"seed": cell.seed, "epochs": cell.epochs or 100_000})
            append_run(runs_csv, run_one(config, cell, prepared, reference, real_features, tracker, args.samples,
                                         device))
            publish(len(cells))
    else:
        publish(len(cells))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as stop:
        print(f"interrupted ({stop or 'SIGINT'}, {time.strftime('%H:%M:%S')}): the run in progress is marked KILLED in MLflow; run the same command again to go on "
              "from the CSV", file=sys.stderr)
        raise SystemExit(130)
