#!/usr/bin/env python3
"""Convert Amazon Beauty sequences (`user item item ...`, time order) to a RecBole atomic .inter file.

Output: benchmarks/recbole/data/beauty/beauty.inter with columns
user_id:token, item_id:token, timestamp:float (timestamp = 0-based position in the user's sequence).
"""

import argparse
import os

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_INPUT = os.path.join(REPO_ROOT, "..", "shared", "data", "amazon-beauty", "sequences.txt")
DEFAULT_OUTPUT = os.path.join(HERE, "data", "beauty", "beauty.inter")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "input",
        nargs="?",
        default=DEFAULT_INPUT,
        help="sequences file (default: ../shared/data/amazon-beauty/sequences.txt from repo root)",
    )
    ap.add_argument("--output", default=DEFAULT_OUTPUT)
    args = ap.parse_args()

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
