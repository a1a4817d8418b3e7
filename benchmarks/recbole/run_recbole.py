#!/usr/bin/env python3
"""Run one RecBole 1.2.1 model (Pop, BPR or SASRec) on Amazon Beauty (leave-one-out, full ranking) -> JSON.

Usage: .venv/bin/python run_recbole.py {Pop,BPR,SASRec} --out results/recbole_pop.json
       [--epochs N] [--stopping-step N] [--dataset beauty_small] [--keep-seen] [--threads N]
Needs data/<dataset>/<dataset>.inter (see convert_beauty.py) and the venv from setup.sh.
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
    # Sequential: SequentialDataset sorts each user's interactions by TIME_FIELD (= position) and turns a
    # user with n items into n-1 samples (prefix of at most MAX_ITEM_LIST_LENGTH items -> next item) BEFORE
    # the split; LS valid_and_test then gives each user's last sample (target n) to test, the one before
    # (target n-1) to valid, and the prefixes with targets 2..n-2 to train. CE loss = softmax over all
    # items, which RecBole only allows without negative sampling.
    "SASRec": {
        "hidden_size": 64,
        "inner_size": 256,
        "n_layers": 2,
        "n_heads": 2,
        "MAX_ITEM_LIST_LENGTH": 50,
        "hidden_dropout_prob": 0.5,
        "attn_dropout_prob": 0.5,
        "hidden_act": "gelu",
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "learning_rate": 0.001,
        "train_batch_size": 256,
        # For sequential models eval_batch_size counts sequences (users), not user x item rows:
        # 256 users per full-ranking block, as for Pop/BPR above.
        "eval_batch_size": 256,
    },
}

# Models whose full-sort evaluation RecBole does not mask seen items for (see mask_seen_sequential).
SEQUENTIAL = {"SASRec"}


def norm_metrics(result):
    """RecBole's {'hit@10': ...} -> {'hr@10': ...}, all lower-case, plain floats."""
    out = {}
    for k, v in (result or {}).items():
        name, _, k_ = k.lower().partition("@")
        if name == "hit":
            name = "hr"
        out[f"{name}@{k_}"] = float(v)
    return out


def user_sequences(dataset):
    """Each user's full item sequence (internal ids) from a SequentialDataset's augmented samples.

    Returns a LongTensor [user_num, max_len] (0 = padding): row u holds u's items by position. A sample
    (u, target position t) has target item `item_id` and `timestamp` t; the item at position 0 is only in
    the item list of the sample with t = 1. Every sample's (possibly truncated) item list is checked
    against the table.
    """
    import torch

    feat = dataset.inter_feat
    uid = feat[dataset.uid_field].long()
    iid = feat[dataset.iid_field].long()
    ts = feat[dataset.time_field].double()
    pos = ts.long()
    if not bool((pos.double() == ts).all()) or int(pos.min()) < 1:
        raise SystemExit("timestamps must be integer positions (convert_beauty.py) for seen-item masking")
    seq_list = feat[dataset.item_id_list_field].long()
    seq_len = feat[dataset.item_list_length_field].long()
    table = torch.zeros(dataset.user_num, int(pos.max()) + 1, dtype=torch.long)
    table[uid, pos] = iid
    first = pos == 1
    table[uid[first], 0] = seq_list[first, 0]
    if int((table[uid] > 0).sum(1).min()) < 2 or int(first.sum()) != len(torch.unique(uid)):
        raise SystemExit("user sequences incomplete: a user lacks the sample with target position 1")
    # item_id_list of sample (u, t) must be table[u, t-len : t], left-aligned and zero-padded.
    width = seq_list.shape[1]
    cols = torch.arange(width)
    src = (pos - seq_len)[:, None] + cols[None, :]
    inside = cols[None, :] < seq_len[:, None]
    expect = torch.where(inside, table[uid[:, None], src.clamp(min=0)], torch.zeros_like(seq_list))
    if not torch.equal(expect, seq_list):
        raise SystemExit("item_id_list does not match the reconstructed user sequences")
    return table


def mask_seen_sequential(trainer, table, uid_field, iid_field, time_field):
    """Wrap trainer._full_sort_batch_eval so that sequential models mask seen items, as Pop/BPR do.

    RecBole 1.2.1's FullSortEvalDataLoader returns history_index=None for sequential models, so only the
    padding item is masked. Pop/BPR mask used_items - positive_items: for valid, the user's train items;
    for test, train + valid items. For a sample with target position t that is the user's items at
    positions 0..t-1 (the full history, not just the last MAX_ITEM_LIST_LENGTH items), minus the target.
    """
    import torch

    orig = trainer._full_sort_batch_eval
    cols = torch.arange(table.shape[1])

    def masked(batched_data):
        interaction, scores, positive_u, positive_i = orig(batched_data)
        uid = interaction[uid_field].long().cpu()
        t = interaction[time_field].long().cpu()
        target = interaction[iid_field].long().cpu()
        hist = table[uid]
        keep = (cols[None, :] < t[:, None]) & (hist != 0) & (hist != target[:, None])
        rows, c = keep.nonzero(as_tuple=True)
        scores[rows.to(scores.device), hist[rows, c].to(scores.device)] = -float("inf")
        return interaction, scores, positive_u, positive_i

    trainer._full_sort_batch_eval = masked


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", choices=sorted(MODEL_CONFIG))
    ap.add_argument("--out", required=True, help="output JSON path")
    ap.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"max training epochs (default {BASE_CONFIG['epochs']}; Pop always runs one counting pass)",
    )
    ap.add_argument(
        "--stopping-step",
        type=int,
        default=None,
        help=f"RecBole stopping_step (default {BASE_CONFIG['stopping_step']}): training stops once "
        "stopping_step+1 validations in a row do not reach the best NDCG@10",
    )
    ap.add_argument(
        "--dataset",
        default="beauty",
        help="RecBole dataset name under data/ "
        "(default beauty; beauty_small comes from convert_beauty.py --max-users)",
    )
    ap.add_argument(
        "--keep-seen",
        action="store_true",
        help="sequential models: RecBole's native full ranking, which does not mask seen items "
        "(default: mask them, as for Pop/BPR)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: torch's own, = cores). On a busy machine use fewer threads "
        "than free cores: oversubscribed OpenMP threads make SASRec several times slower",
    )
    args = ap.parse_args()
    if args.threads is not None and args.threads < 1:
        ap.error("--threads must be >= 1")
    if args.epochs is not None and args.epochs < 1:
        ap.error("--epochs must be >= 1")
    if args.stopping_step is not None and args.stopping_step < 0:
        ap.error("--stopping-step must be >= 0")
    out_path = os.path.abspath(args.out)
    inter_file = os.path.join(HERE, "data", args.dataset, f"{args.dataset}.inter")
    if not os.path.exists(inter_file):
        ap.error(f"{inter_file} not found: run convert_beauty.py first")
    os.chdir(HERE)
    sequential = args.model in SEQUENTIAL
    mask_seen = not (sequential and args.keep_seen)

    import recbole
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    if args.threads is not None:
        torch.set_num_threads(args.threads)

    config_dict = dict(BASE_CONFIG)
    config_dict.update(MODEL_CONFIG[args.model])
    if args.epochs is not None:
        config_dict["epochs"] = args.epochs
    if args.stopping_step is not None:
        config_dict["stopping_step"] = args.stopping_step
    config = Config(model=args.model, dataset=args.dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)

    t_data = time.perf_counter()
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    seq_table = user_sequences(dataset) if sequential and mask_seen else None
    data_seconds = time.perf_counter() - t_data
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    if seq_table is not None:
        mask_seen_sequential(trainer, seq_table, dataset.uid_field, dataset.iid_field, dataset.time_field)

    # Time training epochs and validation passes separately; remember which epoch was saved last (= best).
    # valid_elapsed: seconds from the start of fit() until that epoch's validation result was available.
    train_times, valid_times, valid_scores, valid_elapsed, saved_epochs = [], [], [], [], []
    orig_train, orig_valid, orig_save = trainer._train_epoch, trainer._valid_epoch, trainer._save_checkpoint
    t0 = None

    def timed_train(*a, **kw):
        t = time.perf_counter()
        r = orig_train(*a, **kw)
        train_times.append(time.perf_counter() - t)
        return r

    def timed_valid(*a, **kw):
        t = time.perf_counter()
        score, result = orig_valid(*a, **kw)
        end = time.perf_counter()
        valid_times.append(end - t)
        valid_elapsed.append(end - t0)
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
    best_epoch = (saved_epochs[-1] + 1) if saved_epochs else None
    # eval_step 1: validation i belongs to epoch i+1.
    best_i = best_epoch - 1 if best_epoch is not None and best_epoch <= len(valid_scores) else None
    losses = [trainer.train_loss_dict.get(e) for e in range(epochs)]
    per_epoch = [
        {
            "epoch": i + 1,
            "train_seconds": round(train_times[i], 3),
            "train_loss": None if losses[i] is None else round(float(losses[i]), 6),
            "valid_seconds": round(valid_times[i], 3) if i < len(valid_times) else None,
            "valid_ndcg@10": round(valid_scores[i], 6) if i < len(valid_scores) else None,
            "valid_available_at_seconds": round(valid_elapsed[i], 3) if i < len(valid_elapsed) else None,
        }
        for i in range(epochs)
    ]
    summary = {
        "model": args.model,
        "dataset": "amazon-beauty" if args.dataset == "beauty" else f"amazon-beauty ({args.dataset})",
        "valid": norm_metrics(best_valid_result),
        "test": norm_metrics(test_result),
        "train_seconds": round(sum(train_times), 3),
        "seconds_per_epoch": round(sum(train_times) / max(epochs, 1), 3),
        "train_seconds_per_epoch": [round(t, 3) for t in train_times],
        "eval_seconds": round(eval_seconds, 3),
        "epochs": epochs,
        "max_epochs": int(trainer.epochs),
        "stopping_step": int(config["stopping_step"]),
        "best_epoch": best_epoch,
        "best_valid_ndcg@10": round(valid_scores[best_i], 6) if best_i is not None else None,
        "best_valid_available_at_seconds": round(valid_elapsed[best_i], 3) if best_i is not None else None,
        "fit_seconds": round(fit_seconds, 3),
        "data_seconds": round(data_seconds, 3),
        "valid_seconds_per_pass": round(sum(valid_times) / max(len(valid_times), 1), 3),
        "valid_ndcg@10_per_epoch": [round(s, 6) for s in valid_scores],
        "valid_available_at_seconds": [round(t, 3) for t in valid_elapsed],
        "per_epoch": per_epoch,
        "seen_items_masked": mask_seen,
        "n_train_samples": int(len(train_data._dataset)),
        "recbole_version": recbole.__version__,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "n_users": int(dataset.user_num - 1),
        "n_items": int(dataset.item_num - 1),
        # A SequentialDataset's inter_num counts samples (one per item after a user's first item).
        "n_interactions": int(dataset.inter_num)
        + (len(set(dataset.inter_feat[dataset.uid_field].tolist())) if sequential else 0),
        "protocol": (
            "leave-one-out by time order (LS valid_and_test, TO, group_by user), full ranking over all "
            "items, "
            + ("seen items masked (train; train+valid for test)" if mask_seen else "seen items NOT masked")
            + "; valid_metric NDCG@10 picks the checkpoint; seed 2020"
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
                    "best_valid_ndcg@10",
                    "best_valid_available_at_seconds",
                    "valid_available_at_seconds",
                    "train_seconds_per_epoch",
                    "data_seconds",
                    "seen_items_masked",
                )
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
