"""How `pipeline.tune --workers N` places its workers: trials, GPUs, CPU threads."""

from ganops.tuning.workers import plan_workers


def test_gpus_round_robin_and_more_workers_than_gpus_says_they_share():
    plan = plan_workers(3, n_trials=7, gpus=["2", "5"], cpu_count=8)
    assert [w.n_trials for w in plan.workers] == [3, 2, 2]
    assert [w.env["CUDA_VISIBLE_DEVICES"] for w in plan.workers] == ["2", "5", "2"]
    assert "more workers than GPUs, so GPUs are shared round-robin (up to 2 workers per GPU" in plan.note
    assert plan_workers(2, 4, ["0", "1"], 8).note == "2 workers on 2 GPU(s), one each"


def test_cpu_cores_are_split_between_workers():
    plan = plan_workers(2, n_trials=4, gpus=[], cpu_count=2)
    assert [(w.n_trials, w.env["OMP_NUM_THREADS"], w.env["MKL_NUM_THREADS"]) for w in plan.workers] == [(2, "1", "1")] * 2
    assert all("CUDA_VISIBLE_DEVICES" not in w.env for w in plan.workers)
    assert [w.env["GANOPS_TUNE_WORKER"] for w in plan.workers] == ["1/2", "2/2"]
    assert plan_workers(1, 4, [], 16).workers[0].env["OMP_NUM_THREADS"] == "16"
    assert plan_workers(3, 3, [], 2).note.endswith("more workers than cores, so they take turns")
