"""``ItemTowerRecommender`` and ``TwoTowerRecommender``: a separate item encoder, a query encoder,
and a score function between them.

Because items are encoded on their own, their vectors can be computed once (``item_vectors``)
for full ranking, ANN top-k and model-based negative sampling.
"""
from typing import Dict

import torch
from torch import nn

from recstudio.model.base.recommender import COMMON_HELP, Recommender
from recstudio.model.module.embedding import IdEmbedding
from recstudio.utils.errors import ConfigError

#: help text of the keys tower models declare in their YAML
TOWER_HELP = {
    **COMMON_HELP,
    "embed_dim": "size of the user / item vectors",
    "score_func": "score function (a name from recstudio.model.scorer.SCORERS)",
}


class _UserIdQuery(nn.Module):
    """Query encoder of two-tower models: the user id's embedding."""

    def __init__(self, uid_field: str, embedding: nn.Module):
        super().__init__()
        self.uid_field = uid_field
        self.embedding = embedding

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.embedding(batch[self.uid_field])


class ItemTowerRecommender(Recommender):
    """Item encoder + query encoder over the batch + score function.

    Hooks: ``_get_item_encoder`` (default: an id embedding), ``_get_query_encoder`` (required),
    ``_get_score_func`` (default: the ``score_func`` key), ``_get_loss_func`` (the ``loss`` key),
    ``_get_sampler`` (the ``sampler`` key).
    """

    base_name = "ItemTower"
    supports_ann = True
    option_help = dict(TOWER_HELP)

    # ---- hooks ---------------------------------------------------------------------------
    def _get_item_encoder(self) -> nn.Module:
        return IdEmbedding(self.meta.num_items, self.cfg("embed_dim"), init="xavier", sparse=self.sparse_embeddings)

    def _get_query_encoder(self) -> nn.Module:
        raise ConfigError(f"{type(self).__name__} must define _get_query_encoder().")

    def _get_score_func(self) -> nn.Module:
        from recstudio.model.scorer import get_score_func
        return get_score_func(self.cfg("score_func", "inner_product"), dim=self.cfg("embed_dim"))

    def build_blocks(self) -> None:
        self.item_encoder = self._get_item_encoder()
        self.query_encoder = self._get_query_encoder()
        self.score_func = self._get_score_func()
        if self.config["ann"] is not None:
            from recstudio.model.scorer import require_decomposable
            require_decomposable(self.score_func, f"ann={self.config['ann']!r}")
        self._ann_index = None

    # ---- ANN top-k -----------------------------------------------------------------------------
    def ann_index(self):
        """The ANN index over the current item vectors (built on first use after they change)."""
        if self._ann_index is None:
            from recstudio.ann import build_index
            with torch.no_grad():
                vectors = self.score_func.item_vector(self.item_vectors())[1:]
            ids = torch.arange(1, self.meta.num_items, device=vectors.device)
            self._ann_index = build_index(self.config["ann"], vectors.detach(), metric=self.score_func.metric,
                                          ids=ids)
        return self._ann_index

    def topk_items(self, batch, k: int, exclude_history: bool = True):
        if self.config["ann"] is None:
            return super().topk_items(batch, k, exclude_history)
        query = self.score_func.query_vector(self.encode_query(batch))
        exclude = (batch["history_indptr"], batch["history_indices"]) if exclude_history else None
        return self.ann_index().search(query, k, exclude=exclude)

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self._ann_index = None  # item vectors are about to change
        if not self.cfg("sampler_refresh_steps", 0):
            self.refresh_sampler()

    def fused_epoch_blockers(self):
        steps = self.cfg("sampler_refresh_steps", 0)
        return super().fused_epoch_blockers() + (["sampler_refresh_steps is set"] if steps else [])

    def on_train_batch_start(self, batch, batch_idx):
        steps = self.cfg("sampler_refresh_steps", 0)
        if steps and self.sampler is not None and getattr(self.sampler, "needs_item_vectors", False):
            step = self.global_step if self._trainer is not None else batch_idx
            if step % steps == 0 or getattr(self.sampler, "refreshes", 1) == 0:
                self.refresh_sampler()

    def refresh_sampler(self) -> None:
        """Give a model-based sampler (``needs_item_vectors``) the current item vectors in the score
        function's space and the training counts; it rebuilds its proposal (k-means cells, ...). Called at
        the start of every epoch, or every ``sampler_refresh_steps`` steps."""
        sampler = getattr(self, "sampler", None)
        if sampler is None or not getattr(sampler, "needs_item_vectors", False):
            return
        from recstudio.model.scorer import require_decomposable
        require_decomposable(self.score_func, f"sampler {self.cfg('sampler')!r}")
        with torch.no_grad():
            vectors = self.score_func.item_vector(self.item_vectors()).detach()
        sampler.bind(self.score_func)
        sampler.update(item_vectors=vectors, item_counts=self.meta.item_counts)

    def on_validation_epoch_start(self):
        super().on_validation_epoch_start()
        self._ann_index = None

    def on_test_epoch_start(self):
        super().on_test_epoch_start()
        self._ann_index = None

    def load_state_dict(self, *args, **kwargs):
        self._ann_index = None
        return super().load_state_dict(*args, **kwargs)

    # ---- encoding and scoring ----------------------------------------------------------------
    def encode_query(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Query vectors ``[B, d]`` of a batch."""
        return self.query_encoder(batch)

    def encode_items(self, ids: torch.Tensor) -> torch.Tensor:
        """Item vectors ``[*, d]`` of item ids ``[*]``."""
        return self.item_encoder(ids)

    def item_vectors(self) -> torch.Tensor:
        """Vectors of every item id ``[num_items, d]`` (row 0 is padding)."""
        return self.encode_items(torch.arange(self.meta.num_items, device=self.device))

    def prepare_scoring(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.encode_query(batch)

    def score_candidates(self, batch, state, items: torch.Tensor) -> torch.Tensor:
        return self.score_func(state, self.encode_items(items))

    def score_all_candidates(self, batch, state) -> torch.Tensor:
        return self.score_func.score_all(state, self.item_vectors())


class TwoTowerRecommender(ItemTowerRecommender):
    """An item tower and a user tower: the query is the user's id embedding (override
    ``_get_query_encoder`` for user features)."""

    base_name = "TwoTower"

    def _get_query_encoder(self) -> nn.Module:
        return _UserIdQuery(self.meta.uid_field, IdEmbedding(self.meta.num_users, self.cfg("embed_dim"),
                                                             init="xavier", sparse=self.sparse_embeddings))
