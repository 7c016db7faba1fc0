"""RecBole 1.2.1's session models on RecStudio's session-wise split of a session dataset (ml-100k-sessions).

RecStudio's interpreter writes the split as RecBole *benchmark files* (``<name>.train.inter``,
``.valid.inter``, ``.test.inter``: ``session_id:token item_id_list:token_seq item_id:token``), one row per
example: every prefix of a training session -> its next item (RecBole's augmentation), and every row of
RecStudio's ``eval_targets: each`` evaluation (a held-out session's items before the target -> the target),
so both libraries train on the same prefixes and rank the same targets. The input lists keep the last
``--max_len`` items. RecBole's full-sort evaluation masks nothing; here, as in RecStudio, the items of the
input are masked from the ranking (``full_sort_predict`` is wrapped). Early stop on valid MRR@10 (patience
``--patience``), test metrics of the best checkpoint, CE loss, seed 2022, one thread.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/recbole_session_reference.py --write_only --data_path /tmp/recbole-sess
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 OMP_NUM_THREADS=1 /work/venv-recbole/bin/python \\
        benchmarks/recbole_session_reference.py NARM --data_path /tmp/recbole-sess --epochs 30
"""
import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "sessref"


def write_files(data_path: Path, dataset: str, max_len: int, split_ratio=None) -> Path:
    """The session split of ``dataset`` as RecBole benchmark files (RecStudio's interpreter)."""
    sys.path.insert(0, str(ROOT))
    import torch
    from recstudio.data import load_dataset
    from recstudio.data.types.position_eval import PositionEvalDataset
    ds = load_dataset(dataset)
    split = ds.split(split_mode="session", **({"split_ratio": split_ratio} if split_ratio else {}))
    folder = data_path / NAME
    folder.mkdir(parents=True, exist_ok=True)
    header = "session_id:token\titem_id_list:token_seq\titem_id:token"
    tok = ds.id_maps["item"].tokens
    sessions, items = ds.users[split.train], ds.items[split.train]
    lines, start = [header], 0
    for r in range(len(sessions)):
        if r == 0 or sessions[r] != sessions[r - 1]:
            start = r
        elif r > start:
            hist = items[max(start, r - max_len):r]
            lines.append(f"{sessions[r]}\t{' '.join(str(tok[i - 1]) for i in hist)}\t{tok[items[r] - 1]}")
    (folder / f"{NAME}.train.inter").write_text("\n".join(lines) + "\n")
    counts = {"train": len(lines) - 1}
    for phase in ("valid", "test"):
        ev = PositionEvalDataset(split, phase, max_seq_len=max_len)
        batch = ev[torch.arange(len(ev))]
        lines = [header]
        for s, seq, n, t in zip(batch[ds.uid_field].tolist(), batch["item_seq"], batch["seq_len"].tolist(),
                                batch["target_indices"].tolist()):
            hist = seq[seq > 0].tolist()
            assert len(hist) == n
            lines.append(f"{s}\t{' '.join(str(tok[i - 1]) for i in hist)}\t{tok[t - 1]}")
        (folder / f"{NAME}.{phase}.inter").write_text("\n".join(lines) + "\n")
        counts[phase] = len(lines) - 1
    print(json.dumps({"folder": str(folder), "rows": counts}))
    return folder


def mask_inputs(model_cls) -> None:
    """Wrap ``full_sort_predict`` so that the items of each row's input list score ``-inf``."""
    original = model_cls.full_sort_predict

    def full_sort_predict(self, interaction):
        scores = original(self, interaction)
        seq = interaction[self.ITEM_SEQ]
        masked = scores.scatter(1, seq, float("-inf"))
        masked[:, 0] = scores[:, 0]  # padding id 0 is not an item
        return masked
    model_cls.full_sort_predict = full_sort_predict


def patch_benchmark_lengths() -> None:
    """RecBole 1.2.1's benchmark-file presets set ``item_length = item_id_list.agg(len)``, which pandas >= 2
    evaluates as the column's length (one scalar for every row); the same presets with per-row lengths."""
    from recbole.data.dataset import SequentialDataset
    original = SequentialDataset._benchmark_presets

    def _benchmark_presets(self):
        original(self)
        self.inter_feat[self.item_list_length_field] = self.inter_feat[self.item_id_list_field].map(len)
    SequentialDataset._benchmark_presets = _benchmark_presets


def run(model_name: str, data_path: Path, epochs: int, patience: int, max_len: int, seed: int, extra: dict) -> dict:
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed
    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from recbole_seq_reference import patch_token_seq_remap  # RecBole 1.2.1's token_seq loading under pandas 2
    patch_token_seq_remap()
    patch_benchmark_lengths()
    cfg = {"data_path": str(data_path), "dataset": NAME, "seed": seed, "reproducibility": True,
           "USER_ID_FIELD": "session_id", "benchmark_filename": ["train", "valid", "test"],
           "load_col": {"inter": ["session_id", "item_id_list", "item_id"]}, "ITEM_LIST_LENGTH_FIELD": "item_length",
           "eval_args": {"order": "TO", "mode": "full", "group_by": "user", "split": {"LS": "valid_and_test"}},
           "train_neg_sample_args": None, "loss_type": "CE", "MAX_ITEM_LIST_LENGTH": max_len, "epochs": epochs,
           "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"], "topk": [10], "valid_metric": "MRR@10",
           "stopping_step": patience, "eval_batch_size": 1024, "learning_rate": 0.001, "show_progress": False,
           "checkpoint_dir": str(data_path / "saved"), "worker": 0, **extra}
    config = Config(model=model_name, config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model_cls = get_model(config["model"])
    mask_inputs(model_cls)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = model_cls(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    t0 = time.perf_counter()
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    wall = time.perf_counter() - t0
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    return {"model": model_name, "seed": seed, "epochs_cap": epochs, "epochs": getattr(trainer, "cur_epoch", None),
            "best_valid_mrr@10": float(trainer.best_valid_score), "wall_s": round(wall, 1),
            "rows": {"train": len(train_data.dataset), "valid": len(valid_data.dataset), "test": len(test_data.dataset)},
            "test": {k: round(float(v), 4) for k, v in test.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?")
    parser.add_argument("--dataset", default="ml-100k-sessions")
    parser.add_argument("--data_path", default="/tmp/recbole-sess")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--max_len", type=int, default=50)
    parser.add_argument("--seed", type=int, default=2022)
    parser.add_argument("--write_only", action="store_true")
    parser.add_argument("--split_ratio", type=float, nargs="*", default=None, help="(write_only) train/valid/test")
    parser.add_argument("--set", nargs="*", default=[], help="more RecBole keys, key=value (YAML values)")
    args = parser.parse_args()
    data_path = Path(args.data_path)
    if args.write_only:
        write_files(data_path, args.dataset, args.max_len, args.split_ratio)
        return
    if not (data_path / NAME / f"{NAME}.train.inter").exists():
        raise SystemExit(f"write the data first: python {Path(__file__).name} --write_only --data_path {data_path}")
    import yaml
    extra = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    print(json.dumps(run(args.model, data_path, args.epochs, args.patience, args.max_len, args.seed, extra)))


if __name__ == "__main__":
    main()
