"""bench/quality.py's bookkeeping: the run order, the runs CSV and the table built from it (no training)."""

from __future__ import annotations

from bench.quality import (DEFAULT_NAME, PLAIN_NAME, append_run, config_key, current_runs, describe_default,
                           done_keys, plan, read_runs, section_text, summarize, variants)
from pathlib import Path

from ganops.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def run(variant, budget, seed, fid, recall=0.9, status="ok", wall=100.0, config="k"):
    return {"variant": variant, "budget": budget, "seed": str(seed), "status": status, "epochs": "25",
            "wall_s": str(wall), "fid": str(fid), "precision": "0.6", "recall": str(recall), "kid": "0.05",
            "samples": "5000", "run_id": f"r{seed}", "load_avg": "1.5 1.2 1.0", "finished": "2026-11-24T08:00:00",
            "config": config, "threads": "2"}


def test_plan_finishes_every_variant_at_both_budgets_for_one_seed_before_the_next_seed():
    cells = plan({"a": "ka", "b": "kb"}, [42, 43], ["epochs", "wall"], 25, (240.0, {"a": 30, "b": 12}))
    assert [(c.variant, c.budget, c.seed, c.epochs) for c in cells] == [
        ("a", "25 epochs", 42, 25), ("b", "25 epochs", 42, 25), ("a", "240 s", 42, 30), ("b", "240 s", 42, 12),
        ("a", "25 epochs", 43, 25), ("b", "25 epochs", 43, 25), ("a", "240 s", 43, 30), ("b", "240 s", 43, 12)]
    assert {c.config for c in cells if c.variant == "a"} == {"ka"}
    assert len(plan({"a": "ka"}, [42], ["epochs", "wall"], 25, None)) == 1  # no calibration yet: no wall cells
    goal_first = plan({"a": "ka", PLAIN_NAME: "kp", DEFAULT_NAME: "kd"}, [42, 43], ["epochs", "wall"], 25,
                      (240.0, {"a": 30, PLAIN_NAME: 20, DEFAULT_NAME: 60}))
    assert [(c.variant, c.budget, c.seed) for c in goal_first][:4] == [
        (PLAIN_NAME, "25 epochs", 42), (DEFAULT_NAME, "25 epochs", 42), (PLAIN_NAME, "25 epochs", 43),
        (DEFAULT_NAME, "25 epochs", 43)]
    assert [c.variant for c in goal_first][8:] == ["a"] * 4


def test_rows_count_only_for_the_configuration_they_trained():
    base = load_config(ROOT / "params.yaml")
    made = variants(base)
    keys = {name: config_key(config) for name, config in made.items()}
    assert len(set(keys.values())) == len(keys)  # every variant trains something else
    assert config_key(made[PLAIN_NAME].replace(train={"seed": 7, "epochs": 3, "log_every": 1})) == keys[PLAIN_NAME]
    # A new default in params.yaml moves the default's row, not the pinned plain DCGAN's.
    moved = {name: config_key(config) for name, config in variants(base.replace(train={"lr": 1e-3})).items()}
    assert moved[PLAIN_NAME] == keys[PLAIN_NAME] and moved[DEFAULT_NAME] != keys[DEFAULT_NAME]

    # The table says what the default row trains: where params.yaml departs from the pinned plain DCGAN.
    assert describe_default(made[PLAIN_NAME]) == "nothing"
    assert describe_default(made[PLAIN_NAME].replace(train={"loss": "hinge", "ema": 0.999})) == \
        "train.loss hinge, train.ema 0.999"
    text = section_text([], Path("quality_runs.csv"), 60, "e", "u", default_change=describe_default(base))
    assert f"`{DEFAULT_NAME}` is the best combination, today's params.yaml: {describe_default(base)}." in text

    cells = plan({PLAIN_NAME: keys[PLAIN_NAME]}, [42], ["epochs"], 25, None)
    old, now = run(PLAIN_NAME, "25 epochs", 42, 99.0, config="older"), run(PLAIN_NAME, "25 epochs", 42, 98.0,
                                                                          config=keys[PLAIN_NAME])
    assert current_runs([old, now], cells) == [now]
    assert cells[0].key not in done_keys([old]) and cells[0].key in done_keys([old, now])


def test_runs_csv_round_trip_and_skip_keys(tmp_path):
    path = tmp_path / "runs.csv"
    append_run(path, run("a", "25 epochs", 42, 100.0))
    append_run(path, run("a, with comma", "240 s", 43, 50.0))
    runs = read_runs(path)
    assert [r["variant"] for r in runs] == ["a", "a, with comma"] and runs[1]["fid"] == "50.0"
    assert done_keys(runs) == {("a", "25 epochs", 42, "k"), ("a, with comma", "240 s", 43, "k")}
    assert path.read_text().count("variant,budget,seed") == 1  # one header

    older = tmp_path / "older.csv"  # a file from before the config and threads columns
    older.write_text("variant,budget,seed,status,fid\nplain DCGAN,25 epochs,42,ok,146.8\n")
    append_run(older, run("a", "25 epochs", 43, 100.0))
    rows = read_runs(older)
    assert [(r["variant"], r["fid"], r["config"]) for r in rows] == [("plain DCGAN", "146.8", ""), ("a", "100.0", "k")]


def test_table_is_mean_and_std_over_the_seeds_present_in_budget_then_variant_order():
    runs = [run("hinge", "240 s", 42, 30.0), run(DEFAULT_NAME, "240 s", 42, 12.0, recall=0.95),
            run(PLAIN_NAME, "240 s", 42, 240.0, recall=0.8), run(DEFAULT_NAME, "25 epochs", 42, 20.0, recall=0.95),
            run(PLAIN_NAME, "25 epochs", 42, 200.0), run(PLAIN_NAME, "25 epochs", 43, 300.0),
            run(DEFAULT_NAME, "25 epochs", 43, 30.0, recall=0.93), run("wgan-gp", "25 epochs", 42, 0, status="diverged")]
    rows, goals = summarize(runs)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (PLAIN_NAME, "25 epochs", "2"), (DEFAULT_NAME, "25 epochs", "2"), ("wgan-gp", "25 epochs", "0 (+1 diverged)"),
        (PLAIN_NAME, "240 s", "1"), (DEFAULT_NAME, "240 s", "1"), ("hinge", "240 s", "1")]
    assert rows[0][5] == "250.00 ± 70.71" and rows[1][5] == "25.00 ± 7.07"
    assert rows[1][6] == "10.00x" and rows[5][6] == "8.00x"  # against the plain DCGAN at the same budget
    assert rows[2][3:] == ["-"] * 8
    # The goal is judged at equal wall time only: the old pipeline against the new one in the same time.
    assert goals == [f"240 s: {DEFAULT_NAME} FID 12.00 vs {PLAIN_NAME} 240.00 = 20.00x lower (goal >= 10x), "
                     "recall 0.950 vs 0.800 (goal: not lower): PASS"]
    calibration = {"variants": {PLAIN_NAME: {"s_per_epoch": 8.0}, DEFAULT_NAME: {"s_per_epoch": 2.0}},
                   "budget_s": 240.0, "default_epochs": 120, "rounds": 3, "threads": 2, "measured": "x", "load_avg": "1"}
    text = section_text(runs, Path("quality_runs.csv"), 60, "ganops-quality-bench", "sqlite:///mlruns/mlflow.db",
                        calibration, left_out=2)
    assert "8 of 60 runs; 2 older rows" in text and "| config" in text
    speeds = [line.split("|")[1:4] for line in text.splitlines() if line.startswith("|") and ("| 8.00" in line or "| 2.00" in line)]
    assert [[cell.strip() for cell in row] for row in speeds][-2:] == [[PLAIN_NAME, "8.00", "30"],
                                                                       [DEFAULT_NAME, "2.00", "120"]]
