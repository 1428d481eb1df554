"""Print the pipeline's headline numbers (after `make repro`)."""

import json
from pathlib import Path


def main() -> None:
    for name in ("fid_stats", "train", "eval"):
        path = Path("metrics") / f"{name}.json"
        if path.is_file():
            values = json.loads(path.read_text())
            shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
            print(f"{name}: {shown}")
    eval_path = Path("metrics/eval.json")
    if eval_path.is_file():
        print(f"final FID: {json.loads(eval_path.read_text())['fid']:.3f}")


if __name__ == "__main__":
    main()
