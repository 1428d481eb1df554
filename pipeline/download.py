"""Stage `download`: put the data set's files into data/raw/<dataset>/ and record their checksums."""

from ganops.config import Config
from ganops.paths import paths_for
from pipeline._stage import run_stage


def main(config: Config) -> None:
    # Imports inside main: params are checked before torch loads (see pipeline/_stage.py).
    from ganops.data import fetch

    paths = paths_for(config)
    sums = fetch(config.data, paths.raw_dir)
    print(f"{config.data.dataset}: {len(sums)} file(s) in {paths.raw_dir} (sha256 in SHA256SUMS)")


if __name__ == "__main__":
    run_stage("download", main)
