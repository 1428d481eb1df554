"""Stage `preprocess`: turn the raw files into one uint8 tensor file at the configured size."""

from ganops.config import Config
from ganops.paths import paths_for
from pipeline._stage import run_stage


def main(config: Config) -> None:
    # Imports inside main: params are checked before torch loads (see pipeline/_stage.py).
    from ganops.data import prepare, save_prepared

    paths = paths_for(config)
    prepared = prepare(config.data, paths.raw_dir)
    save_prepared(prepared, paths.prepared)
    print(f"{paths.prepared}: {tuple(prepared.images.shape)} uint8, {prepared.meta}")


if __name__ == "__main__":
    run_stage("preprocess", main)
