"""Quality benchmark: classifier FID (evaluate's: 5,000 samples), precision, recall and KID on mnist-5k, for
today's plain DCGAN, the params.yaml default and each generator switch alone, at equal epochs and at equal
wall time, several seeds each (mean ± std). Every run is an MLflow run in one experiment.

    .venv/bin/python -m bench.quality               # the full table (hours on a 2-core CPU); resumable
    .venv/bin/python -m bench.quality --jobs 2      # two runs at a time, the cores split between them
    .venv/bin/python -m bench.quality --table-only  # rebuild the README table from bench/quality_runs.csv
    .venv/bin/python -m bench.quality --quick       # end to end in a few minutes: 2 variants, 1 seed, 1 epoch

Equal wall time is the default pipeline's training time on this machine: params.yaml's epochs at the
default's speed. Each variant gets the epochs that fit in that time at its own speed, measured before the
runs (epochs in turn, best of rounds, the machine's cores; bench/quality_calibration.json keeps it, so a
resumed table uses the same epochs). A wall-time run is therefore an epochs run too: load from other
processes, or `--jobs`, changes how long it takes, never how far it trains.

Each finished run appends a row to bench/quality_runs.csv and rewrites the table in bench/README.md
(`## quality`), so partial progress is visible; runs already in the CSV are skipped on the next start.
A row counts only for the configuration it trained (its `config` key): change a variant, or the
default in params.yaml, and its old rows drop out of the table and are run again.
The most informative runs come first: the equal-epochs budget for every variant at the first seed, then
the other seeds, then the wall-time budget in the same order.

The FID reference is built as the fid_stats stage builds it (the label classifier, statistics and
real features of all 5,000 digits), once per invocation and shared with the worker processes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
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
CALIBRATION = Path(__file__).with_name("quality_calibration.json")
SECTION = "## quality"
EXPERIMENT = "ganops-quality-bench"
RUN_FIELDS = ("variant", "budget", "seed", "status", "epochs", "wall_s", "fid", "precision", "recall", "kid",
              "samples", "run_id", "load_avg", "finished", "config", "threads")
# Today's default before this work: the plain DCGAN (fp32, BCE, no average, no augmentation).
PLAIN_NAME, DEFAULT_NAME = "plain DCGAN", "params.yaml default"
# Every training key pinned, so that a new default in params.yaml leaves this baseline where it was.
PLAIN: dict[str, dict[str, Any]] = {
    "model": {"arch": "dcgan", "nz": 100, "ngf": 64, "ndf": 64, "spectral_norm": False},
    "train": {"batch_size": 128, "lr": 2e-4, "beta1": 0.5, "beta2": 0.999, "label_smoothing": 0.0, "g_steps": 1,
              "hflip": False, "amp": False, "loss": "bce", "gp_weight": 10.0, "lr_d": None, "lr_g": None,
              "ema": 0.0, "diffaug": None}}
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
    """One run of the table: a variant at a budget and a seed, and the epochs that budget gives it."""

    variant: str
    budget: str  # "25 epochs" or "240 s": the label the CSV and the table use
    seed: int
    epochs: int
    config: str  # config_key of the variant

    @property
    def key(self) -> tuple[str, str, int, str]:
        return self.variant, self.budget, self.seed, self.config


def config_key(config) -> str:
    """What a run learns from, apart from seed and length: rows of another key belong to an older setting."""
    from ganops.training import NOT_IN_FINGERPRINT  # what the resume fingerprint leaves out; the cell sets the seed

    left_out = {"seed", "from_study", *NOT_IN_FINGERPRINT}
    train = {k: v for k, v in dataclasses.asdict(config.train).items() if k not in left_out}
    blob = json.dumps({"model": dataclasses.asdict(config.model), "train": train}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def wall_label(seconds: float) -> str:
    return f"{seconds:.0f} s"


def plan(keys: Mapping[str, str], seeds: Sequence[int], budgets: Sequence[str], epochs: int,
         wall: Optional[tuple[float, Mapping[str, int]]]) -> list[Cell]:
    """The goal's two rows (plain DCGAN, default) at every budget and seed first; then seed by seed, both
    budgets, every other variant, so that a partial table is a complete one at fewer seeds.

    `keys` maps each variant to its config key; `wall` is (seconds, epochs per variant) for the wall budget.
    """
    def cell(name: str, kind: str, seed: int) -> Optional[Cell]:
        if kind == "epochs":
            return Cell(name, f"{epochs} epochs", seed, epochs, keys[name])
        return Cell(name, wall_label(wall[0]), seed, wall[1][name], keys[name]) if wall is not None else None

    goal = [n for n in (PLAIN_NAME, DEFAULT_NAME) if n in keys]
    order = [(n, k, s) for k in budgets for s in seeds for n in goal]
    order += [(n, k, s) for s in seeds for k in budgets for n in keys if n not in goal]
    return [c for c in (cell(*args) for args in order) if c is not None]


# ---------------------------------------------------------------------------------------------------
# The runs file: one row per finished run; the table is built from it

def read_runs(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def append_run(path: Path, row: Mapping[str, Any]) -> None:
    """Add one row; the whole file is rewritten (with today's columns) atomically, so a kill leaves the old
    file or the new one."""
    rows = read_runs(path) + [{field: row.get(field, "") for field in RUN_FIELDS}]
    out = io.StringIO()
    writer = csv.DictWriter(out, RUN_FIELDS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows({field: r.get(field) or "" for field in RUN_FIELDS} for r in rows)
    write_text(path, out.getvalue())


def row_key(row: Mapping[str, str]) -> tuple[str, str, int, str]:
    """A CSV row's Cell.key (rows from before the config column have the key "")."""
    return row["variant"], row["budget"], int(row["seed"]), row.get("config") or ""


def done_keys(runs: Iterable[Mapping[str, str]]) -> set[tuple[str, str, int, str]]:
    return {row_key(r) for r in runs}


def current_runs(runs: Sequence[Mapping[str, str]], cells: Sequence[Cell]) -> list[Mapping[str, str]]:
    """The rows of planned cells: the variant's present configuration, at a planned budget."""
    wanted = {c.key for c in cells}
    return [r for r in runs if row_key(r) in wanted]


def mean_std(values: Sequence[float], digits: int, style: str = "f") -> str:
    """"mean ± sample std" with `digits` decimals (style "f") or significant digits (style "g")."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}{style}} ± {spread:.{digits}{style}}"


def is_wall_budget(label: str) -> bool:
    """A budget label from wall_label ("190 s"), not an epoch count ("25 epochs")."""
    return not label.endswith(" epochs")


def _budget_order(label: str) -> tuple[int, float]:
    return int(is_wall_budget(label)), float(label.split(" ", 1)[0])


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
    # The goal (issue 12) is the default pipeline against the old one in the same training time: the wall
    # budget. At equal epochs the table only shows how much each switch gives per epoch.
    goals = []
    for budget in sorted({b for b, _ in means}, key=_budget_order):
        plain, default = means.get((budget, PLAIN_NAME)), means.get((budget, DEFAULT_NAME))
        if plain and default and is_wall_budget(budget):
            ratio = plain["fid"] / default["fid"]
            ok = ratio >= GOAL_FID_RATIO and default["recall"] >= plain["recall"]
            goals.append(f"{budget}: {DEFAULT_NAME} FID {default['fid']:.2f} vs {PLAIN_NAME} {plain['fid']:.2f} = "
                         f"{ratio:.2f}x lower (goal >= {GOAL_FID_RATIO:g}x), recall {default['recall']:.3f} vs "
                         f"{plain['recall']:.3f} (goal: not lower): {verdict(ok)}")
    return rows, goals


HEADERS = ["config", "budget", "seeds", "epochs", "wall s", "FID", "plain FID / FID", "precision", "recall",
           "KID", "load avg (1 min)"]


def describe_default(default) -> str:
    """Where the params.yaml default departs from the plain DCGAN, as `section.key value` pairs."""
    changed = []
    for section, pinned in PLAIN.items():
        values = dataclasses.asdict(getattr(default, section))
        changed += [f"{section}.{key} {values[key]}" for key, value in pinned.items() if values[key] != value]
    return ", ".join(changed) or "nothing"


def section_text(runs: Sequence[Mapping[str, str]], runs_csv: Path, planned: Optional[int], experiment: str,
                 uri: str, calibration: Optional[Mapping[str, Any]] = None, left_out: int = 0,
                 default_change: Optional[str] = None) -> str:
    """The README section: the table of `runs` (the current ones), the goal lines and the speed calibration."""
    rows, goals = summarize(runs)
    samples = sorted({r["samples"] for r in runs}) or ["?"]
    progress = f"{len(runs)} of {planned} runs" if planned else f"{len(runs)} runs"
    if left_out:
        progress += f"; {left_out} older rows of the CSV, for settings since changed, left out"
    lines = [f"Built from `{runs_csv.name}` ({progress}, {time.strftime('%Y-%m-%d %H:%M')}) by "
             f"`.venv/bin/python -m bench.quality` (`--table-only` rebuilds it from the CSV; a new start skips the "
             f"runs already there). Mean ± std over the seeds present; {'/'.join(samples)} generated images per "
             f"evaluation, classifier features; wall s is training only, as measured (several runs at a time with "
             f"`--jobs`, and other jobs on the machine: the load column); one MLflow run per row of the CSV in the "
             f"experiment `{experiment}` ({uri}).", "", table(HEADERS, rows)]
    if default_change is not None:
        lines += ["", f"Rows: `{PLAIN_NAME}` is the pipeline's default before issue 12 (BCE, fp32, ngf/ndf 64, batch "
                  f"128, lr 2e-4, pinned in bench/quality.py); each switch row is that plain DCGAN with the one change "
                  f"its name says; `{DEFAULT_NAME}` is the best combination, today's params.yaml: {default_change}."]
    if goals:
        lines += [""] + [f"- {g}" for g in goals]
    if calibration and calibration.get("variants"):
        budget = calibration.get("budget_s")
        lines += ["", f"Equal wall time: {wall_label(budget)}, the default's {calibration.get('default_epochs')} "
                  f"epochs at its measured speed. Speed of each variant (best of {calibration.get('rounds')} one-epoch "
                  f"rounds in turn, {calibration.get('threads')} threads, {calibration.get('measured')}, load average "
                  f"{calibration.get('load_avg')}) and the epochs that fit:", "",
                  table(["config", "s / epoch", f"epochs in {wall_label(budget)}"],
                        [[name, f"{v['s_per_epoch']:.2f}", epochs_in(budget, v["s_per_epoch"])]
                         for name, v in sorted(calibration["variants"].items(), key=lambda kv: _variant_order(kv[0]))])]
    lines += ["", "The single-seed experiments that chose the candidates, with their FID, precision, recall and wall "
              "times, are in [quality_notes.md](quality_notes.md)."]
    return "\n".join(lines)


def epochs_in(seconds: float, seconds_per_epoch: float) -> int:
    return max(1, round(seconds / seconds_per_epoch))


def write_section(readme: Path, text: str) -> None:
    body = readme.read_text() if readme.is_file() else ""
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


def measure_speed(configs: Mapping[str, Any], prepared, device, rounds: int) -> dict[str, float]:
    """Seconds per epoch of each config: one-epoch rounds in turn (a, b, ..., a, b, ...), best round each,
    after an untimed epoch that builds the oneDNN kernels. No tracking, FID or checkpoints, as in the runs."""
    from bench._common import interleaved
    from ganops.training import Trainer

    def maker(config):
        def make():
            trainer = Trainer(config.model, config.replace(train={"epochs": 1}).train, prepared, device,
                              show_progress=False)
            return trainer.fit
        return make

    makers = {name: maker(config) for name, config in configs.items()}
    for make in makers.values():
        make()()
    times = interleaved(makers, rounds)
    return {name: min(values) for name, values in times.items()}


def calibrate(configs: Mapping[str, Any], keys: Mapping[str, str], default_epochs: int, path: Path, prepared, device,
              rounds: int, seconds: Optional[float]) -> dict[str, Any]:
    """The wall budget and each variant's speed, measured for the variants (or settings) path does not hold yet."""
    import torch

    saved = json.loads(path.read_text()) if path.is_file() else {}
    known = {n: v for n, v in saved.get("variants", {}).items() if v.get("config") == keys.get(n)}
    missing = {n: c for n, c in configs.items() if n not in known}
    if missing:
        print(f"calibration: measuring {len(missing)} variants ({rounds} one-epoch rounds each, in turn)", flush=True)
        measured = measure_speed(missing, prepared, device, rounds)
        known.update({n: {"config": keys[n], "s_per_epoch": round(v, 3)} for n, v in measured.items()})
        saved.update(threads=torch.get_num_threads(), rounds=rounds, measured=time.strftime("%Y-%m-%d %H:%M"),
                     load_avg=load_average())
    if DEFAULT_NAME not in known:
        raise SystemExit(f"the wall budget is the default's training time: calibrate with {DEFAULT_NAME!r} among the variants")
    budget = seconds  # given: kept; otherwise the default's epochs at its speed, re-derived when either changed
    if budget is None:
        stale = DEFAULT_NAME in missing or saved.get("default_epochs") != default_epochs or "budget_s" not in saved
        budget = round(default_epochs * known[DEFAULT_NAME]["s_per_epoch"], -1) if stale else saved["budget_s"]
    saved.update(variants={**saved.get("variants", {}), **known}, budget_s=budget, default_epochs=default_epochs)
    write_text(path, json.dumps(saved, indent=1) + "\n")
    return saved


def run_one(config, cell: Cell, prepared, reference, real_features, tracker, samples: int, device) -> dict[str, Any]:
    import torch

    from ganops.errors import DivergenceError, one_line
    from ganops.evaluation import evaluate_generator
    from ganops.tracking import TRAINING_PARAMS, RunStatus, run_tags, stage_params
    from ganops.tracking.base import SOURCE_TAG
    from ganops.tracking.callback import TrackingCallback
    from ganops.training import Trainer

    config = config.replace(train={"seed": cell.seed, "epochs": cell.epochs})
    params = {**stage_params(config, TRAINING_PARAMS), "bench.budget": cell.budget, "bench.samples": str(samples),
              "bench.config": cell.config, "bench.threads": str(torch.get_num_threads())}
    tags = {**run_tags(config, "bench", device, bench="quality", variant=cell.variant, budget=cell.budget,
                       seed=str(cell.seed)), SOURCE_TAG: "bench/quality.py"}
    logger = TrackingCallback(tracker, f"{cell.variant} | {cell.budget} | seed {cell.seed}", params, tags)
    # No in-training FID: it would take wall time from the budget; the evaluation below is what counts.
    trainer = Trainer(config.model, config.train, prepared, device, callbacks=[logger], show_progress=False)
    row: dict[str, Any] = {"variant": cell.variant, "budget": cell.budget, "seed": cell.seed, "samples": samples,
                           "config": cell.config, "threads": torch.get_num_threads()}
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


# ---------------------------------------------------------------------------------------------------
# Worker processes (--jobs N): each loads the invocation's reference and trains one cell at a time

_WORKER: dict[str, Any] = {}


def _start_worker(threads: int, reference_file: str, base, limit: int) -> None:
    import torch

    from bench._common import mnist_digits
    from ganops.evaluation import FidReference
    from ganops.metrics import ClassifierExtractor, feature_statistics
    from ganops.runtime import configure_backends, resolve_device
    from ganops.tracking import open_tracker

    signal.signal(signal.SIGTERM, _stop_worker)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the workers (SIGTERM), not the terminal
    device = resolve_device(base.train.device)
    configure_backends(device)
    torch.set_num_threads(threads)
    saved = torch.load(reference_file, weights_only=False)
    extractor = ClassifierExtractor(saved["net"].to(device), device, base.fid.batch_size)
    reference = FidReference(extractor, *feature_statistics(saved["features"]))
    _WORKER.update(prepared=mnist_digits(limit), reference=reference, features=saved["features"],
                   tracker=open_tracker(base), device=device)


def _stop_worker(signum, frame):
    """During a run: end it as KILLED in MLflow (KeyboardInterrupt, as Ctrl-C does); between runs: just exit."""
    if _WORKER.get("busy"):
        raise KeyboardInterrupt(f"signal {signum}")
    os._exit(128 + signum)


def _run_in_worker(config, cell: Cell, samples: int) -> dict[str, Any]:
    w = _WORKER
    w["busy"] = True
    try:
        return run_one(config, cell, w["prepared"], w["reference"], w["features"], w["tracker"], samples, w["device"])
    finally:
        w["busy"] = False


def artifact_root(uri: str, default: str) -> str:
    """Beside a sqlite store (sqlite:///mlruns/mlflow.db -> mlruns/artifacts), so a throwaway store keeps its files."""
    return str(Path(uri[len("sqlite:///"):]).parent / "artifacts") if uri.startswith("sqlite:///") else default


def _interrupt(signum, frame):  # SIGTERM ends the current run as KILLED in MLflow, like Ctrl-C
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=25, help="the equal-epochs budget")
    parser.add_argument("--seconds", type=float, help="the equal-wall-time budget (default: the params.yaml "
                        "default's training time on this machine, measured)")
    parser.add_argument("--samples", type=int, default=5000, help="generated images per evaluation")
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    parser.add_argument("--budgets", nargs="*", default=["epochs", "wall"], choices=["epochs", "wall"])
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, the cores split between them")
    parser.add_argument("--rounds", type=int, default=3, help="timed one-epoch rounds per variant (calibration)")
    parser.add_argument("--tracking-uri", default="sqlite:///mlruns/mlflow.db")
    parser.add_argument("--runs-csv", type=Path, help=f"one row per finished run (default: {RUNS_CSV}; with "
                        "--quick, a new temporary file)")
    parser.add_argument("--calibration", type=Path, help=f"the measured speeds (default: {CALIBRATION}; with "
                        "--quick, beside the runs CSV)")
    parser.add_argument("--readme", type=Path, help=f"where the table goes (default: {README}; with --quick, "
                        "nowhere unless given)")
    parser.add_argument("--no-readme", action="store_true", help="print the table only")
    parser.add_argument("--table-only", action="store_true", help="rebuild the table from the CSV; train nothing")
    parser.add_argument("--quick", action="store_true", help="2 variants, 1 seed, 1 epoch / 20 s, 1,000 samples, "
                        "1,000 images, 1 calibration round, experiment ganops-quality-bench-quick; proves the "
                        "command end to end")
    args = parser.parse_args()
    limit, experiment = 0, EXPERIMENT
    if args.quick:
        args.seeds, args.epochs, args.samples, args.rounds, limit = 1, 1, 1000, 1, 1000
        args.seconds = args.seconds or 20
        args.only = args.only or [PLAIN_NAME, DEFAULT_NAME]
        args.runs_csv = args.runs_csv or Path(tempfile.mkdtemp(prefix="quality-quick-")) / "quality_runs.csv"
        args.calibration = args.calibration or args.runs_csv.with_name("quality_calibration.json")
        experiment = f"{EXPERIMENT}-quick"
    else:
        args.readme = args.readme or README
    runs_csv: Path = args.runs_csv or RUNS_CSV
    calibration_file: Path = args.calibration or CALIBRATION
    readme = None if args.no_readme else args.readme
    unknown = set(args.only or ()) - set(VARIANT_ORDER)
    if unknown:
        parser.error(f"--only: unknown variant(s) {sorted(unknown)}; allowed: {list(VARIANT_ORDER)}")
    if args.jobs < 1:
        parser.error(f"--jobs: {args.jobs} is not allowed (at least 1)")

    from ganops.config import load_config

    params = load_config("params.yaml")
    base = params.replace(data={"dataset": "mnist-5k", "limit": limit}, train={"log_every": 10},
                          fid={"extractor": "classifier"},
                          tracking={"enabled": True, "uri": args.tracking_uri, "experiment": experiment,
                                    "artifact_root": artifact_root(args.tracking_uri, params.tracking.artifact_root)})
    configs = {n: c for n, c in variants(base).items() if not args.only or n in args.only}
    keys = {n: config_key(c) for n, c in configs.items()}
    seeds = [base.train.seed + i for i in range(args.seeds)]

    def wall_plan(calibration: Optional[Mapping[str, Any]]) -> Optional[tuple[float, dict[str, int]]]:
        speeds = (calibration or {}).get("variants", {})
        if "wall" not in args.budgets or not all(speeds.get(n, {}).get("config") == keys[n] for n in configs):
            return None
        budget = calibration["budget_s"]
        return budget, {n: epochs_in(budget, speeds[n]["s_per_epoch"]) for n in configs}

    def publish(cells: Sequence[Cell], calibration: Optional[Mapping[str, Any]]) -> None:
        runs = read_runs(runs_csv)
        shown = current_runs(runs, cells)
        text = section_text(shown, runs_csv, len(cells), experiment, args.tracking_uri, calibration,
                            left_out=len(runs) - len(shown), default_change=describe_default(base))
        print(text, flush=True)
        if readme is not None:
            write_section(readme, text)

    saved = json.loads(calibration_file.read_text()) if calibration_file.is_file() else None
    if args.table_only:
        publish(plan(keys, seeds, args.budgets, args.epochs, wall_plan(saved)), saved)
        return

    from bench._common import machine, mnist_digits
    from ganops.runtime import configure_backends, resolve_device
    from ganops.tracking import open_tracker

    signal.signal(signal.SIGTERM, _interrupt)
    device = resolve_device(base.train.device)
    configure_backends(device)
    prepared = mnist_digits(limit)
    if "wall" in args.budgets:
        saved = calibrate(configs, keys, params.train.epochs, calibration_file, prepared, device, args.rounds,
                          args.seconds)
    cells = plan(keys, seeds, args.budgets, args.epochs, wall_plan(saved))
    done = done_keys(read_runs(runs_csv))
    todo = [c for c in cells if c.key not in done]
    print(f"# quality: {len(configs)} variants x {args.budgets} x {args.seeds} seeds = {len(cells)} runs, "
          f"{len(cells) - len(todo)} already in {runs_csv}; {args.jobs} at a time; {machine()}; load average "
          f"{load_average()}", flush=True)
    if not todo:
        publish(cells, saved)
        return
    reference, real_features = build_reference(prepared, base, device)
    tracker = open_tracker(base)
    print(f"MLflow experiment {experiment}: {tracker.experiment_url()}", flush=True)
    if args.jobs == 1:
        for cell in todo:
            append_run(runs_csv, run_one(configs[cell.variant], cell, prepared, reference, real_features, tracker,
                                         args.samples, device))
            publish(cells, saved)
        return
    run_in_workers(todo, configs, base, reference, real_features, limit, args.jobs, args.samples,
                   on_row=lambda row: (append_run(runs_csv, row), publish(cells, saved)))


def run_in_workers(todo: Sequence[Cell], configs: Mapping[str, Any], base, reference, real_features, limit: int,
                   jobs: int, samples: int, on_row) -> None:
    """The cells on `jobs` processes (spawned: no forked OpenMP or sqlite state), torch threads split evenly."""
    import torch

    threads = max(1, (os.cpu_count() or 1) // jobs)
    with tempfile.TemporaryDirectory(prefix="quality-reference-") as tmp:
        reference_file = str(Path(tmp) / "reference.pt")
        torch.save({"net": reference.extractor.net.cpu(), "features": real_features}, reference_file)
        context = multiprocessing.get_context("spawn")
        pool = concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker,
                                                      initargs=(threads, reference_file, base, limit))
        try:
            pending = {pool.submit(_run_in_worker, configs[c.variant], c, samples) for c in todo[:jobs]}
            queue = list(todo[jobs:])
            while pending:
                finished, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    on_row(future.result())
                    if queue:
                        cell = queue.pop(0)
                        pending.add(pool.submit(_run_in_worker, configs[cell.variant], cell, samples))
        except BaseException:
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()  # SIGTERM: each worker ends its run as KILLED in MLflow
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as stop:
        print(f"interrupted ({stop or 'SIGINT'}, {time.strftime('%H:%M:%S')}): the run in progress is marked KILLED in MLflow; run the same command again to go on "
              "from the CSV", file=sys.stderr)
        raise SystemExit(130)
