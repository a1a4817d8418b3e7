#!/usr/bin/env python3
"""Convert Amazon Beauty sequences (`user item item ...`, time order) to a RecBole atomic .inter file.

Output: benchmarks/recbole/data/beauty/beauty.inter with columns
user_id:token, item_id:token, timestamp:float (timestamp = 0-based position in the user's sequence).

`--max-users N` keeps only the first N users of the file (a slice for smoke tests); it writes the dataset
`beauty_small` (data/beauty_small/beauty_small.inter) unless `--name` says otherwise, so the full
data/beauty/beauty.inter is left alone. run_recbole.py picks a dataset with `--dataset NAME`.
"""

import argparse
import os

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_INPUT = os.path.join(REPO_ROOT, "..", "shared", "data", "amazon-beauty", "sequences.txt")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "input",
        nargs="?",
        default=DEFAULT_INPUT,
        help="sequences file (default: ../shared/data/amazon-beauty/sequences.txt from repo root)",
    )
    ap.add_argument(
        "--max-users", type=int, default=None, help="keep only the first N users (smoke-test slice)"
    )
    ap.add_argument(
        "--name",
        default=None,
        help="RecBole dataset name: writes data/NAME/NAME.inter "
        "(default: beauty, or beauty_small with --max-users)",
    )
    ap.add_argument("--output", default=None, help="explicit output path (overrides --name)")
    args = ap.parse_args()
    if args.max_users is not None and args.max_users < 1:
        ap.error("--max-users must be >= 1")
    name = args.name or ("beauty" if args.max_users is None else "beauty_small")
    if args.output is None:
        args.output = os.path.join(HERE, "data", name, f"{name}.inter")

    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    users = inters = 0
    items = set()
    tmp = args.output + ".tmp"
    with open(args.input) as fin, open(tmp, "w") as fout:
        fout.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for line in fin:
            parts = line.split()
            if not parts:
                continue
            if args.max_users is not None and users >= args.max_users:
                break
            user, seq = parts[0], parts[1:]
            users += 1
            for pos, item in enumerate(seq):
                fout.write(f"{user}\t{item}\t{pos}\n")
                items.add(item)
            inters += len(seq)
    os.replace(tmp, args.output)
    print(f"wrote {args.output}: {users} users, {len(items)} items, {inters} interactions")


if __name__ == "__main__":
    main()
