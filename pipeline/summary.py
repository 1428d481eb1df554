"""Print the pipeline's headline numbers (after `make repro`)."""

import json
from pathlib import Path


def main() -> None:
    found = {}
    for name in ("fid_stats", "train", "eval"):
        path = Path("metrics") / f"{name}.json"
        if path.is_file():
            found[name] = values = json.loads(path.read_text())
            shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
            print(f"{name}: {shown}")
    if "eval" in found:
        print(f"final FID: {found['eval']['fid']:.3f}")


if __name__ == "__main__":
    main()
