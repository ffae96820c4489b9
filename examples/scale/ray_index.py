"""Index a repository with its blocks encoded on Ray, then search it.

    python examples/scale/ray_index.py [REPO] [--address HOST:PORT]

Without --address a local Ray instance is started (or $RAY_ADDRESS / a `ray start` cluster is joined).
Needs the ray extra: pip install 'longapps[ray]'. Run it twice: the second run encodes nothing.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from longapps import CodeSearch
from longapps.distributed import RayConfig

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("repo", nargs="?", default=str(HERE.parent / "demo_repo"))
    ap.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or local)")
    ap.add_argument("--workers", type=int, default=None, help="actors (default: one per GPU, else per CPU)")
    args = ap.parse_args()
    cs = CodeSearch(args.repo, ray=RayConfig(address=args.address, workers=args.workers))
    s = cs.index()
    print(f"{s.units} units, {s.blocks} blocks: {s.encoded} encoded on Ray, {s.cached} from the cache")
    for hit in cs.search("parse a duration string like 1h30m", k=3):
        print(f"{hit.rank}. {hit.location}  {hit.name}  {hit.score:.3f}")


if __name__ == "__main__":
    main()
