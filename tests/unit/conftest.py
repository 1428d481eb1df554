from pathlib import Path

import pytest

from ganops.config import from_dict
from ganops.data import fetch, prepare


@pytest.fixture(scope="session")
def tiny_digits(tmp_path_factory):
    """256 real embedded MNIST digits at 32x32, prepared through the real data path."""
    raw = tmp_path_factory.mktemp("raw")
    data = from_dict({"data": {"limit": 256}}).data
    fetch(data, Path(raw))
    return prepare(data, Path(raw))


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory):
    """MLflow migrates a new sqlite database for about 6 s; do it once and copy the result per test."""
    from ganops.config import TrackingConfig
    from ganops.tracking.mlflow_tracker import connect

    folder = tmp_path_factory.mktemp("mlflow-template")
    connect(TrackingConfig(uri=f"sqlite:///{folder}/mlflow.db"))
    return folder / "mlflow.db"


@pytest.fixture
def tracking_config(tmp_path, mlflow_template_db):
    import shutil

    from ganops.config import TrackingConfig

    (tmp_path / "mlruns").mkdir()
    shutil.copyfile(mlflow_template_db, tmp_path / "mlruns" / "mlflow.db")
    return TrackingConfig(uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db", artifact_root=str(tmp_path / "mlruns" / "artifacts"))
