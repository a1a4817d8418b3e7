#!/usr/bin/env python3
"""Run one RecBole 1.2.1 model (Pop or BPR) on Amazon Beauty (leave-one-out, full ranking) -> JSON summary.

Usage: .venv/bin/python run_recbole.py {Pop,BPR} --out results/recbole_pop.json
Needs data/beauty/beauty.inter (see convert_beauty.py) and the venv from setup.sh.
"""

import argparse
import json
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))

BASE_CONFIG = {
    # paths (RecBole also writes log/ and log_tensorboard/ into the cwd, which we set to HERE)
    "data_path": os.path.join(HERE, "data"),
    "checkpoint_dir": os.path.join(HERE, "saved"),
    # environment: CPU only
    "use_gpu": False,
    "device": "cpu",
    "seed": 2020,
    "reproducibility": True,
    "show_progress": False,
    "state": "INFO",
    "worker": 0,
    # data: user_id:token item_id:token timestamp:float (timestamp = position in the user's sequence)
    "field_separator": "\t",
    "USER_ID_FIELD": "user_id",
    "ITEM_ID_FIELD": "item_id",
    "TIME_FIELD": "timestamp",
    "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
    # no filtering (data is already 5-core)
    "user_inter_num_interval": "[0,inf)",
    "item_inter_num_interval": "[0,inf)",
    "rm_dup_inter": None,
    "val_interval": None,
    # training
    "epochs": 60,
    "stopping_step": 10,
    "eval_step": 1,
    "learner": "adam",
    "learning_rate": 0.001,
    "train_batch_size": 256,
    "weight_decay": 0.0,
    # evaluation: leave-one-out by time order, full ranking over all items
    "eval_args": {"split": {"LS": "valid_and_test"}, "group_by": "user", "order": "TO", "mode": "full"},
    "repeatable": True,
    "metrics": ["Hit", "NDCG", "MRR", "Recall", "Precision"],
    "topk": [5, 10, 20],
    "valid_metric": "NDCG@10",
    "valid_metric_bigger": True,
    "metric_decimal_place": 6,
    # general-model full-sort eval batch = eval_batch_size // n_items users (3,100,000 // 12,102 = 256 users)
    "eval_batch_size": 3100000,
}

MODEL_CONFIG = {
    # Pop.calculate_loss does item_cnt[item] += 1 per batch (an item counts once per batch, and sampled
    # negatives would be counted too): no negative sampling and batch size 1 make the counts exact.
    # TraditionalTrainer runs a single epoch whatever `epochs` says.
    "Pop": {"train_neg_sample_args": None, "train_batch_size": 1},
    "BPR": {
        "embedding_size": 64,
        "train_neg_sample_args": {
            "distribution": "uniform",
            "sample_num": 1,
            "alpha": 1.0,
            "dynamic": False,
            "candidate_num": 0,
        },
    },
}


def norm_metrics(result):
    """RecBole's {'hit@10': ...} -> {'hr@10': ...}, all lower-case, plain floats."""
    out = {}
    for k, v in (result or {}).items():
        name, _, k_ = k.lower().partition("@")
        if name == "hit":
            name = "hr"
        out[f"{name}@{k_}"] = float(v)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", choices=sorted(MODEL_CONFIG))
    ap.add_argument("--out", required=True, help="output JSON path")
    args = ap.parse_args()
    out_path = os.path.abspath(args.out)
    os.chdir(HERE)

    import recbole
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    config_dict = dict(BASE_CONFIG)
    config_dict.update(MODEL_CONFIG[args.model])
    config = Config(model=args.model, dataset="beauty", config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)

    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

    # Time training epochs and validation passes separately; remember which epoch was saved last (= best).
    train_times, valid_times, valid_scores, saved_epochs = [], [], [], []
    orig_train, orig_valid, orig_save = trainer._train_epoch, trainer._valid_epoch, trainer._save_checkpoint

    def timed_train(*a, **kw):
        t = time.perf_counter()
        r = orig_train(*a, **kw)
        train_times.append(time.perf_counter() - t)
        return r

    def timed_valid(*a, **kw):
        t = time.perf_counter()
        score, result = orig_valid(*a, **kw)
        valid_times.append(time.perf_counter() - t)
        valid_scores.append(float(score))
        return score, result

    def record_save(epoch, *a, **kw):
        saved_epochs.append(epoch)
        return orig_save(epoch, *a, **kw)

    trainer._train_epoch, trainer._valid_epoch, trainer._save_checkpoint = (
        timed_train,
        timed_valid,
        record_save,
    )

    t0 = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=True, show_progress=config["show_progress"]
    )
    fit_seconds = time.perf_counter() - t0

    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)

    # One extra timed full-ranking pass over the test split, best model in memory (no checkpoint load).
    t = time.perf_counter()
    test_again = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    eval_seconds = time.perf_counter() - t
    assert norm_metrics(test_again) == norm_metrics(test_result), "timed pass disagrees with test pass"

    epochs = len(train_times)
    summary = {
        "model": args.model,
        "dataset": "amazon-beauty",
        "valid": norm_metrics(best_valid_result),
        "test": norm_metrics(test_result),
        "train_seconds": round(sum(train_times), 3),
        "seconds_per_epoch": round(sum(train_times) / max(epochs, 1), 3),
        "eval_seconds": round(eval_seconds, 3),
        "epochs": epochs,
        "best_epoch": (saved_epochs[-1] + 1) if saved_epochs else None,
        "fit_seconds": round(fit_seconds, 3),
        "valid_seconds_per_pass": round(sum(valid_times) / max(len(valid_times), 1), 3),
        "valid_ndcg@10_per_epoch": [round(s, 6) for s in valid_scores],
        "recbole_version": recbole.__version__,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "n_users": int(dataset.user_num - 1),
        "n_items": int(dataset.item_num - 1),
        "n_interactions": int(dataset.inter_num),
        "protocol": (
            "leave-one-out by time order (LS valid_and_test, TO, group_by user), full ranking over all "
            "items, seen train items masked; valid_metric NDCG@10 picks the checkpoint; seed 2020"
        ),
        "config": {
            k: config_dict[k] for k in sorted(config_dict) if k not in ("data_path", "checkpoint_dir")
        },
    }
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    print(
        json.dumps(
            {
                k: summary[k]
                for k in (
                    "model",
                    "valid",
                    "test",
                    "train_seconds",
                    "seconds_per_epoch",
                    "eval_seconds",
                    "epochs",
                    "best_epoch",
                )
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
