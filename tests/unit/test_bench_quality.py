"""bench/quality.py's bookkeeping: the run order, the runs CSV and the table built from it (no training)."""

from __future__ import annotations

from bench.quality import (DEFAULT_NAME, PLAIN_NAME, append_run, done_keys, plan, read_runs, section_text,
                           summarize)


def run(variant, budget, seed, fid, recall=0.9, status="ok", wall=100.0):
    return {"variant": variant, "budget": budget, "seed": str(seed), "status": status, "epochs": "25",
            "wall_s": str(wall), "fid": str(fid), "precision": "0.6", "recall": str(recall), "kid": "0.05",
            "samples": "5000", "run_id": f"r{seed}", "load_avg": "1.5 1.2 1.0", "finished": "2026-11-24T08:00:00"}


def test_plan_puts_every_variant_at_the_first_seed_first_and_wall_time_last():
    cells = plan(["a", "b"], [42, 43], ["epochs", "wall"], 25, 240)
    assert [(c.variant, c.budget, c.seed) for c in cells] == [
        ("a", "25 epochs", 42), ("b", "25 epochs", 42), ("a", "25 epochs", 43), ("b", "25 epochs", 43),
        ("a", "240 s", 42), ("b", "240 s", 42), ("a", "240 s", 43), ("b", "240 s", 43)]
    assert (cells[0].epochs, cells[0].seconds, cells[-1].epochs, cells[-1].seconds) == (25, None, None, 240)


def test_runs_csv_round_trip_and_skip_keys(tmp_path):
    path = tmp_path / "runs.csv"
    append_run(path, run("a", "25 epochs", 42, 100.0))
    append_run(path, run("a, with comma", "240 s", 43, 50.0))
    runs = read_runs(path)
    assert [r["variant"] for r in runs] == ["a", "a, with comma"] and runs[1]["fid"] == "50.0"
    assert done_keys(runs) == {("a", "25 epochs", 42), ("a, with comma", "240 s", 43)}
    assert path.read_text().count("variant,budget,seed") == 1  # one header


def test_table_is_mean_and_std_over_the_seeds_present_in_budget_then_variant_order():
    runs = [run("hinge", "240 s", 42, 30.0), run(DEFAULT_NAME, "25 epochs", 42, 20.0, recall=0.95),
            run(PLAIN_NAME, "25 epochs", 42, 200.0), run(PLAIN_NAME, "25 epochs", 43, 300.0),
            run(DEFAULT_NAME, "25 epochs", 43, 30.0, recall=0.93), run("wgan-gp", "25 epochs", 42, 0, status="diverged")]
    rows, goals = summarize(runs)
    assert [(r[0], r[1], r[2]) for r in rows] == [(PLAIN_NAME, "25 epochs", "2"), (DEFAULT_NAME, "25 epochs", "2"),
                                                  ("wgan-gp", "25 epochs", "0 (+1 diverged)"), ("hinge", "240 s", "1")]
    assert rows[0][5] == "250.00 ± 70.71" and rows[1][5] == "25.00 ± 7.07"
    assert rows[1][6] == "10.00x" and rows[3][6] == ""  # no plain row at 240 s to compare with
    assert rows[2][3:] == ["-"] * 8
    assert goals == [f"25 epochs: {DEFAULT_NAME} FID 25.00 vs {PLAIN_NAME} 250.00 = 10.00x lower (goal >= 10x), "
                     "recall 0.940 vs 0.900 (goal: not lower): PASS"]
    from pathlib import Path

    text = section_text(runs, Path("quality_runs.csv"), 60, "ganops-quality-bench", "sqlite:///mlruns/mlflow.db")
    assert "6 of 60 runs" in text and "| config" in text
