"""Fusion on Beauty: every member and every combiner side by side, learned weights fitted on validation.

    .venv/bin/python benchmarks/fusion_beauty.py [--members RUN ...] [--top-n 200] [--out FILE] [--check]

Members are run folders of `foundrec train` made on the same data and split (default: three SASRec
seeds, popularity, ItemKNN and BPR under /tmp). Protocol: members were trained on the training split
only. Each member's top-N unseen items are computed once for the validation users (history = train)
and once for the test users (history = train + validation item). Learned fusions (weights, stacking)
see only the validation lists and targets; the test lists are used once, for the reported numbers.
Metrics@K come from the candidate rows, which equals FullRankingEvaluator@K on `Fusion.score`;
`--check` confirms it on the best weighted fusion after a save/load round trip (one more scoring pass).
Writes benchmarks/results/fusion_beauty.json (or --out) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from foundrec.config import RunConfig  # noqa: E402
from foundrec.eval.ranking import metric_names  # noqa: E402
from foundrec.experiment import prepare  # noqa: E402
from foundrec.fusion import (  # noqa: E402
    BordaCount,
    Fusion,
    MajorityVoting,
    ReciprocalRankFusion,
    StackingFusion,
    TopLists,
    WeightedScoreFusion,
    candidate_per_user,
    collect_top_lists,
    load_member,
    load_model,
)
from machine import machine_info  # noqa: E402

HERE = Path(__file__).parent
KS = (5, 10, 20)
DEFAULT_MEMBERS = [
    "/tmp/runs/beauty-s1",
    "/tmp/runs/beauty-s2",
    "/tmp/runs/b-cos",
    "/tmp/runs/pop",
    "/tmp/fusion/knn-beauty",
    "/tmp/fusion/bpr-beauty",
]
COMBINERS: dict[str, Callable[..., Fusion]] = {
    "weighted rank (fitted)": lambda ms, n: WeightedScoreFusion(ms, "rank", top_n=n),
    "weighted minmax (fitted)": lambda ms, n: WeightedScoreFusion(ms, "minmax", top_n=n),
    "weighted zscore (fitted)": lambda ms, n: WeightedScoreFusion(ms, "zscore", top_n=n),
    "weighted minmax (equal)": lambda ms, n: WeightedScoreFusion(ms, "minmax", top_n=n),
    "rrf k=60": lambda ms, n: ReciprocalRankFusion(ms, k=60, top_n=n),
    "borda": lambda ms, n: BordaCount(ms, top_n=n),
    "voting k=20": lambda ms, n: MajorityVoting(ms, k=20, top_n=n),
    "stacking (logistic regression)": lambda ms, n: StackingFusion(ms, top_n=n),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", nargs="+", default=DEFAULT_MEMBERS, help="run folders")
    parser.add_argument("--subset", nargs="+", default=None, help="member names of a second, smaller fusion")
    parser.add_argument("--top-n", type=int, default=200)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "fusion_beauty.json")
    parser.add_argument("--cache", type=Path, default=None, help="folder to keep the members' top lists")
    parser.add_argument("--check", action="store_true", help="evaluate the best weighted fusion in full")
    parser.add_argument("--save-dir", type=Path, default=Path("/tmp/fusion/saved"), help="for --check")
    args = parser.parse_args()
    torch.set_num_threads(1)

    members = [load_member(path) for path in args.members]
    cfg = RunConfig.model_validate_json((Path(args.members[0]) / "config.json").read_text())
    p = prepare(cfg)  # the members' split, rebuilt from the first run's settings
    split = p.split
    lists, list_seconds, from_cache = {}, {}, {}
    for part, data in (("valid", split.valid), ("test", split.test)):
        cached = args.cache / f"{part}-{args.top_n}.pt" if args.cache else None
        start = time.perf_counter()
        from_cache[part] = cached is not None and cached.is_file()
        if from_cache[part]:
            saved = torch.load(cached, weights_only=True)
            if saved["members"] != [m.name for m in members]:
                raise SystemExit(f"{cached} holds other members; delete it")
            lists[part] = TopLists(saved["items"], saved["scores"])
        else:
            lists[part] = collect_top_lists([m.model for m in members], data, args.top_n)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                names = [m.name for m in members]
                torch.save(
                    {"members": names, "items": lists[part].items, "scores": lists[part].scores}, cached
                )
        list_seconds[part] = time.perf_counter() - start
        print(
            f"{part}: top-{args.top_n} lists of {len(members)} members in {list_seconds[part]:.0f} s",
            flush=True,
        )

    names = metric_names(KS)
    test_ndcg: dict[str, torch.Tensor] = {}  # per test user, for the paired comparison below

    def metrics(name: str, fuse: Callable, index: list[int]) -> dict[str, dict[str, float]]:
        out = {}
        for part, data in (("valid", split.valid), ("test", split.test)):
            per_user = candidate_per_user(fuse, lists[part].members(index), data.targets, KS).double()
            out[part] = {k: float(v) for k, v in zip(names, per_user.mean(0), strict=True) if "@" in k}
            if part == "test":
                test_ndcg[name] = per_user[:, names.index("ndcg@10")]
        return out

    rows: dict[str, dict] = {}
    for i, m in enumerate(members):
        reported = json.loads((m.path.parent / "metrics.json").read_text())["test"]

        def alone(c):  # the member's own ranking: its list, best first
            return torch.where(c.listed[0], -c.ranks[0].float(), -torch.inf)

        rows[m.name] = {
            "kind": "member",
            **metrics(m.name, alone, [i]),
            "run_folder_test_ndcg@10": reported["ndcg@10"],
        }
        print(f"member {m.name}: test ndcg@10 {rows[m.name]['test']['ndcg@10']:.4f}", flush=True)

    groups = {"all": list(range(len(members)))}
    if args.subset:
        groups["subset"] = [[m.name for m in members].index(name) for name in args.subset]
    fitted: dict[str, Fusion] = {}
    for group, index in groups.items():
        chosen = [members[i] for i in index]
        for label, make in COMBINERS.items():
            fusion = make(chosen, args.top_n).fit(split.train, split.n_items)
            start = time.perf_counter()
            if "(equal)" not in label:
                fusion.fit_top_lists(lists["valid"].members(index), split.valid.targets)
            seconds = time.perf_counter() - start
            name = f"{group}: {label}"
            fitted[name] = fusion
            rows[name] = {
                "kind": "fusion",
                "members": [m.name for m in chosen],
                "fit_seconds": seconds,
                "fitted": fusion.fitted_values(),
                **metrics(name, fusion.fuse, index),
            }
            print(
                f"{name}: test ndcg@10 {rows[name]['test']['ndcg@10']:.4f} (fit {seconds:.0f} s)", flush=True
            )

    check = None
    if args.check:
        best = max(
            (n for n in fitted if n.startswith("all: weighted") and "(fitted)" in n),
            key=lambda n: rows[n]["valid"]["ndcg@10"],
        )
        folder = args.save_dir / f"weighted-{fitted[best].normalization}"
        fitted[best].save(folder)
        start = time.perf_counter()
        full = p.evaluator.evaluate(load_model(folder), split.test)
        check = {
            "fusion": best,
            "saved_to": str(folder),
            "full_ranking_test": {k: full[k] for k in ("hr@10", "ndcg@10", "hr@20", "ndcg@20")},
            "candidate_test": {k: rows[best]["test"][k] for k in ("hr@10", "ndcg@10", "hr@20", "ndcg@20")},
            "seconds": time.perf_counter() - start,
        }
        print(f"check {best}: full ranking ndcg@10 {full['ndcg@10']:.6f}", flush=True)

    member_rows = [n for n, r in rows.items() if r["kind"] == "member"]
    best_member = max(member_rows, key=lambda n: rows[n]["valid"]["ndcg@10"])
    for name, row in rows.items():
        if row["kind"] == "fusion":
            row["test_ndcg@10_gain_over_best_single"] = paired_gain(test_ndcg[name], test_ndcg[best_member])
    result = {
        "machine": machine_info(),
        "data": p.data.source,
        "protocol": {
            "split": split.protocol,
            "members": "trained on the training split only (run folders of `foundrec train`)",
            "candidates": f"each member's top-{args.top_n} unseen items per user; history masked first",
            "fitting": "weights / stacking fitted on validation targets (history = train) only",
            "test": "history = train + validation item; evaluated once; metrics@K over candidate rows",
            "best_single": "the member with the best validation ndcg@10",
            "gain": "mean per-user test ndcg@10 difference to best_single, 95% normal interval (paired)",
        },
        "top_n": args.top_n,
        "list_seconds": list_seconds,  # loading time only where the lists came from --cache
        "lists_from_cache": from_cache,
        "best_single": best_member,
        "rows": rows,
        "check": check,
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nbest single member (by validation): {best_member}\n")
    print("| model | valid ndcg@10 | test ndcg@10 | test hr@10 | test ndcg@20 | test hr@20 | gain [95% CI] |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        v, t = r["valid"], r["test"]
        gain = r.get("test_ndcg@10_gain_over_best_single")
        shown = f"{gain['mean']:+.4f} [{gain['ci95'][0]:+.4f}, {gain['ci95'][1]:+.4f}]" if gain else ""
        print(
            f"| {name} | {v['ndcg@10']:.4f} | {t['ndcg@10']:.4f} | {t['hr@10']:.4f} | "
            f"{t['ndcg@20']:.4f} | {t['hr@20']:.4f} | {shown} |"
        )


def paired_gain(values: torch.Tensor, baseline: torch.Tensor) -> dict[str, float | list[float]]:
    """Mean per-user difference and its 95% normal interval (users are the independent units)."""
    diff = values - baseline
    half = 1.96 * float(diff.std()) / len(diff) ** 0.5
    mean = float(diff.mean())
    return {"mean": mean, "ci95": [mean - half, mean + half]}


if __name__ == "__main__":
    main()
