"""Images from a trained generator, without writing Python.

    python -m ganops.sample --model models:/ganops-mnist-5k@champion --n 1000 --out samples/
    python -m ganops.sample --model <run id> --n 64 --out grid.png
    python -m ganops.sample --model models/generator.pt --n 5000 --out samples.npz
    python -m ganops.sample --model models:/ganops-mnist-5k@champion --n 8 --interpolate 16 --out walk.gif

--model: an MLflow run id, a runs:/ or models:/ URI (the store: --tracking-uri, MLFLOW_TRACKING_URI or
tracking.uri in ./params.yaml), or a models/generator.pt file. --out decides the form: a folder (N PNG
files), .npz (uint8 N x H x W x C under `images`), .png (one grid), .gif (with --interpolate: N rows
walking from one latent to another in --interpolate steps, and the same walk as a grid in a .png beside it).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from ganops.errors import GanopsError

FILE_FORMATS = (".npz", ".png", ".gif")
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ganops.sample", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--model", required=True, help="run id, runs:/ or models:/ URI, or a generator .pt file")
    parser.add_argument("--n", type=int, default=64, help="images (with --interpolate: rows); default 64")
    parser.add_argument("--out", required=True, help="folder/, file.npz, grid.png or walk.gif")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interpolate", type=int, metavar="STEPS", help="latent walk of STEPS frames (.gif)")
    parser.add_argument("--path", choices=("linear", "spherical"), default="spherical",
                        help="how the walk crosses latent space (spherical keeps the norm a Gaussian latent has)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--tracking-uri", help="the MLflow store that holds --model")
    parser.add_argument("--batch-size", type=int, default=500)
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> Path:
    """Every user error, before torch loads. Returns the output path."""
    if args.n <= 0:
        raise GanopsError(f"--n {args.n} is not allowed: it must be > 0")
    if args.batch_size <= 0:
        raise GanopsError(f"--batch-size {args.batch_size} is not allowed: it must be > 0")
    out = Path(args.out)
    wants_folder = args.out.endswith(("/", os.sep)) or out.suffix.lower() not in FILE_FORMATS
    if args.interpolate is not None:
        if args.interpolate < 2:
            raise GanopsError(f"--interpolate {args.interpolate} is not allowed: at least 2 steps")
        if out.suffix.lower() != ".gif":
            raise GanopsError(f"--out {args.out!r}: an interpolation is written as a .gif (and a .png grid beside it)")
    elif out.suffix.lower() == ".gif":
        raise GanopsError(f"--out {args.out!r}: a .gif needs --interpolate STEPS")
    if wants_folder:
        if out.exists() and not out.is_dir():
            raise GanopsError(f"--out {args.out!r} is a file, not a folder; name a folder, or a .npz/.png/.gif file")
        if out.is_dir() and any(out.iterdir()) and not args.overwrite:
            raise GanopsError(f"--out {args.out!r} is a folder that is not empty; add --overwrite to replace it")
    else:
        if out.is_dir():
            raise GanopsError(f"--out {args.out!r} is a folder; remove it or name another file")
        if out.exists() and not args.overwrite:
            raise GanopsError(f"--out {args.out!r} exists; add --overwrite to replace it")
    return out


def tracking_uri(args: argparse.Namespace) -> str:
    if args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"):
        return args.tracking_uri or os.environ["MLFLOW_TRACKING_URI"]
    if Path("params.yaml").is_file():
        from ganops.config import load_config

        return load_config("params.yaml").tracking.uri
    return DEFAULT_TRACKING_URI


def load_model(source: str, uri_of_store: str):
    """The generator (in eval mode, on the CPU) and its latent size."""
    path = Path(source)
    if source.endswith(".pt") or path.is_file():
        from ganops.fileio import torch_load
        from ganops.models import generator_from_record

        generator, model = generator_from_record(torch_load(path, "generator"))
        return generator, model.nz
    if RUN_ID.match(source):
        source = f"runs:/{source}/generator"
    elif not source.startswith(("runs:/", "models:/")):
        raise GanopsError(f"--model {source!r} is not a run id (32 hex digits), a runs:/ or models:/ URI, or a file")
    from ganops.tracking.mlflow_tracker import load_generator

    return load_generator(source, uri_of_store)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    try:
        out = check_args(args)
        run(args, out)
    except GanopsError as error:
        print(f"ganops sample: error: {' '.join(str(error).split())}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("ganops sample: interrupted", file=sys.stderr)
        sys.exit(130)


def run(args: argparse.Namespace, out: Path) -> None:
    from ganops import sampling

    generator, nz = load_model(args.model, tracking_uri(args))
    if args.interpolate is not None:
        walk = sampling.latent_walk(generator, nz, args.n, args.interpolate, args.path, args.seed)
        sampling.write_walk(walk, out)
        print(f"wrote {out} and {out.with_suffix('.png')} ({args.n} rows x {args.interpolate} steps, {args.path})")
        return
    images = sampling.generate(generator, nz, args.n, args.seed, args.batch_size)
    if out.suffix.lower() == ".npz":
        sampling.write_npz(images, out)
    elif out.suffix.lower() == ".png":
        sampling.write_grid(images, out)
    else:
        write_folder_atomically(out, lambda folder: sampling.write_pngs(images, folder))
    print(f"wrote {args.n} images to {out}")


def write_folder_atomically(out: Path, fill) -> None:
    """Fill a temporary folder beside `out`, then swap it in: a folder is complete or untouched."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        fill(staging)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(staging, out)
            shutil.rmtree(old)
        else:
            os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


if __name__ == "__main__":
    main()
