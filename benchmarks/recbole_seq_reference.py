"""RecBole 1.2.1's sequential models on the file and protocol of ``benchmarks/seq_reference.py``.

The ml-100k interactions are read with RecStudio (all ratings implicit), sorted as RecStudio sorts them (by
user, then time, ties in file order) and written as RecBole atomic files whose ``timestamp`` is the row's
position in that order, so RecBole's leave-one-out (``LS: valid_and_test``, order ``TO``) holds out exactly
the same valid / test items. ``ml-100k.item`` carries the genres as ``class`` (token_seq) for S3Rec, FDSA,
GRU4RecF and SASRecF.
RecBole's full-sort evaluation of sequential models masks nothing; here, as in RecStudio, every item of the
user before the target is masked from the ranking (``full_sort_predict`` is wrapped). Early stop on valid
MRR@10 (patience 10), test metrics of the best checkpoint, seed 2022, CE loss, ``MAX_ITEM_LIST_LENGTH`` 50.

S3Rec runs RecBole's two stages: ``train_stage: pretrain`` for ``--pretrain_epochs`` epochs, then
``train_stage: finetune`` from the saved pre-trained weights.

Usage (RecBole's own virtual environment)::

    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 OMP_NUM_THREADS=1 /work/venv-recbole/bin/python \\
        benchmarks/recbole_seq_reference.py FEARec --epochs 1
    ... benchmarks/recbole_seq_reference.py S3Rec --pretrain_epochs 10 --epochs 20

The data files are written by RecStudio's interpreter first (``--write_only``)::

    python benchmarks/recbole_seq_reference.py --write_only --data_path /tmp/recbole-seq
"""
import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "ml100kseq"

#: RecBole settings per model beyond the shared protocol (the model's RecBole defaults otherwise)
MODEL_CONFIG = {
    "FEARec": {"contrast": "us_x", "tau": 1.0, "sim": "dot", "use_filter": False, "fredom": False,
               "fredom_type": None, "train_batch_size": 256},
    "S3Rec": {"item_attribute": "class", "train_batch_size": 256},
    "FDSA": {"selected_features": ["class"]},
    "GRU4RecF": {"selected_features": ["class"]},
    "SASRecF": {"selected_features": ["class"]},
}
#: the models that read the genres (``class``) of ``<name>.item``
ITEM_FEATURE_MODELS = ("S3Rec", "FDSA", "GRU4RecF", "SASRecF")


def write_files(data_path: Path, ds=None, name: str = NAME) -> Path:
    """A dataset (default ml-100k, all ratings implicit) as RecBole atomic files in RecStudio's order
    (RecStudio's interpreter): ``timestamp`` is the row's position in that order, so RecBole's ``TO`` order
    is RecStudio's. ml-100k also gets its genres as ``class`` (token_seq) in ``<name>.item`` (the models of
    :data:`ITEM_FEATURE_MODELS`)."""
    sys.path.insert(0, str(ROOT))
    import numpy as np
    from recstudio.data import load_dataset
    ds = load_dataset("ml-100k") if ds is None else ds
    bundled = getattr(ds, "name", None) == "ml-100k"  # the genres of the bundled u.item go to <name>.item
    folder = data_path / name
    folder.mkdir(parents=True, exist_ok=True)
    users, items = ds.decode_users(ds.users), ds.decode_items(ds.items)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    lines += [f"{u}\t{i}\t{t}" for t, (u, i) in enumerate(zip(users, items))]
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")
    if not bundled:
        return folder
    genres = [g.split("|")[0] for g in (ROOT / "datasets" / "ml-100k" / "u.genre").read_text().splitlines() if g]
    rows = ["item_id:token\tclass:token_seq"]
    for line in (ROOT / "datasets" / "ml-100k" / "u.item").read_text(encoding="latin-1").splitlines():
        parts = line.split("|")
        if len(parts) < 24:
            continue
        flags = np.array(parts[-19:], dtype=int)
        rows.append(f"{parts[0]}\t{' '.join(genres[k] for k in np.flatnonzero(flags))}")
    (folder / f"{name}.item").write_text("\n".join(rows) + "\n")
    return folder


def mask_history(model_cls, dataset) -> None:
    """Wrap ``full_sort_predict`` so that every item of the user before the target scores ``-inf``."""
    import numpy as np
    import torch
    uid, iid = dataset.uid_field, dataset.iid_field
    order = np.lexsort((dataset.inter_feat[dataset.time_field].numpy(), dataset.inter_feat[uid].numpy()))
    u_all, i_all = dataset.inter_feat[uid].numpy()[order], dataset.inter_feat[iid].numpy()[order]
    seqs = {}
    for u, i in zip(u_all, i_all):
        seqs.setdefault(int(u), []).append(int(i))
    position = {(u, i): k for u, s in seqs.items() for k, i in enumerate(s)}
    original = model_cls.full_sort_predict

    def full_sort_predict(self, interaction):
        scores = original(self, interaction)
        for row, (u, t) in enumerate(zip(interaction[uid].tolist(), interaction[iid].tolist())):
            before = seqs[u][:position[(u, t)]]
            if before:
                scores[row, torch.tensor(before, device=scores.device)] = float("-inf")
        return scores
    model_cls.full_sort_predict = full_sort_predict


def patch_token_seq_remap() -> None:
    """RecBole 1.2.1's ``Dataset._remap`` splits token_seq fields at ``cumsum(feat[field].agg(len))``, which
    pandas >= 2 evaluates as the column's length (one scalar), so a token_seq field (S3Rec's ``class``) cannot
    be loaded; the same method with the per-row lengths."""
    import numpy as np
    import pandas as pd
    from recbole.data.dataset import Dataset
    from recbole.utils import FeatureType

    def _remap(self, remap_list):
        if len(remap_list) == 0:
            return
        tokens, split_point = self._concat_remaped_tokens(remap_list)
        new_ids_list, mp = pd.factorize(tokens)
        new_ids_list = np.split(new_ids_list + 1, split_point)
        mp = np.array(["[PAD]"] + list(mp))
        token_id = {t: i for i, t in enumerate(mp)}
        for (feat, field, ftype), new_ids in zip(remap_list, new_ids_list):
            if field not in self.field2id_token:
                self.field2id_token[field] = mp
                self.field2token_id[field] = token_id
            if ftype == FeatureType.TOKEN:
                feat[field] = new_ids
            elif ftype == FeatureType.TOKEN_SEQ:
                lengths = np.array([len(x) for x in feat[field].values])
                feat[field] = pd.Series(np.split(new_ids, np.cumsum(lengths)[:-1]), index=feat.index)
    Dataset._remap = _remap


def run(model_name: str, data_path: Path, epochs: int, pretrain_epochs: int, seed: int, extra: dict,
        name: str = NAME) -> dict:
    """Train and test RecBole's ``model_name`` on ``<data_path>/<name>/<name>.inter``; ``extra`` keys win over
    the shared protocol (e.g. ``MAX_ITEM_LIST_LENGTH``). Threads: ``OMP_NUM_THREADS`` (default 1)."""
    import os
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import PretrainTrainer
    from recbole.utils import get_model, get_trainer, init_seed
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    patch_token_seq_remap()
    load_col = {"inter": ["user_id", "item_id", "timestamp"]}
    if model_name in ITEM_FEATURE_MODELS:
        load_col["item"] = ["item_id", "class"]
    base = {"data_path": str(data_path), "dataset": name, "seed": seed, "reproducibility": True,
            "load_col": load_col,
            "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
            "train_neg_sample_args": None, "loss_type": "CE", "MAX_ITEM_LIST_LENGTH": 50, "epochs": epochs,
            "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"], "topk": [10], "valid_metric": "MRR@10",
            "stopping_step": 10, "eval_batch_size": 1024, "learning_rate": 0.001, "show_progress": False,
            "checkpoint_dir": str(data_path / "saved"), "worker": 0,
            **MODEL_CONFIG.get(model_name, {}), **extra}
    out = {"model": model_name, "seed": seed, "epochs_cap": epochs}
    stages = [("pretrain", pretrain_epochs), ("finetune", epochs)] if model_name == "S3Rec" else [(None, epochs)]
    pre_path = None
    for stage, n in stages:
        cfg = dict(base)
        if stage == "pretrain":
            cfg.update(train_stage="pretrain", pretrain_epochs=n, save_step=n)
        elif stage == "finetune":
            cfg.update(train_stage="finetune", pre_model_path=pre_path)
        config = Config(model=model_name, config_dict=cfg)
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, dataset)
        model_cls = get_model(config["model"])
        mask_history(model_cls, dataset)
        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
        model = model_cls(config, train_data._dataset).to(config["device"])
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
        t0 = time.perf_counter()
        if stage == "pretrain":
            assert isinstance(trainer, PretrainTrainer)
            trainer.pretrain(train_data, show_progress=False)
            pre_path = str(Path(config["checkpoint_dir"]) / f"{model_name}-{name}-{n}.pth")
            out["pretrain_seconds"] = round(time.perf_counter() - t0, 1)
            continue
        trainer.fit(train_data, valid_data, saved=True, show_progress=False)
        wall = time.perf_counter() - t0
        test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
        out.update(epochs=trainer.cur_epoch if hasattr(trainer, "cur_epoch") else None,
                   best_valid=float(trainer.best_valid_score), wall_s=round(wall, 1),
                   test={k: float(v) for k, v in test.items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?")
    parser.add_argument("--data_path", default="/tmp/recbole-seq")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--pretrain_epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2022)
    parser.add_argument("--write_only", action="store_true")
    parser.add_argument("--set", nargs="*", default=[], help="more RecBole keys, key=value (YAML values)")
    args = parser.parse_args()
    data_path = Path(args.data_path)
    if args.write_only:
        print(write_files(data_path))
        return
    if not (data_path / NAME / f"{NAME}.inter").exists():
        raise SystemExit(f"write the data first: python {Path(__file__).name} --write_only --data_path {data_path}")
    import yaml
    extra = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    print(json.dumps(run(args.model, data_path, args.epochs, args.pretrain_epochs, args.seed, extra)))


if __name__ == "__main__":
    main()
