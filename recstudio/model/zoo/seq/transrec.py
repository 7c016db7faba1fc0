"""TransRec: users are translation vectors between consecutive items in a shared item space."""
import torch
from torch import nn

from recstudio.model.family.sequential import SEQ_HELP
from recstudio.model.module.embedding import IdEmbedding
from recstudio.model.family.seq_layers import UserSequentialRecommender, item_table
from recstudio.model.registry import register_model
from recstudio.model.scorer.base import ScoreFunction
from recstudio.utils.errors import ConfigError

DISTANCES = ("l2", "squared_l2")


class TranslationScorer(ScoreFunction):
    """``score([q; 1], [g_i; b_i]) = b_i - d(q, g_i)``: the item bias minus the (squared) L2 distance of the
    translated point ``q`` to the item ``g_i`` (the last entry of a query is a placeholder 1).

    ``squared=True`` expands to ``2 q.g_i + (b_i - |g_i|^2) - |q|^2``: the same ranking as the inner product of
    ``[2 q; 1]`` with ``[g_i; b_i - |g_i|^2]``, so it is decomposable (ANN metric ``'ip'``). The L2 distance
    (``squared=False``, the paper and RecBole) is not decomposable.
    """

    metric = None

    def __init__(self, squared: bool = False, eps: float = 1e-12):
        super().__init__()
        self.squared, self.eps = bool(squared), eps
        self.decomposable = self.squared
        self.metric = "ip" if self.squared else None
        self.item_chunk_size = None if self.squared else self.default_item_chunk_size

    def _from_sq(self, d2: torch.Tensor) -> torch.Tensor:
        d2 = d2.clamp(min=0.0)
        return d2 if self.squared else d2.clamp(min=self.eps).sqrt()

    def pair_score(self, query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return items[..., -1] - self._from_sq(((query[..., :-1] - items[..., :-1]) ** 2).sum(-1))

    def _score_matrix(self, query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        q, g = query[:, :-1], items[:, :-1]
        d2 = (q ** 2).sum(-1, keepdim=True) - 2 * q @ g.t() + (g ** 2).sum(-1)
        return items[:, -1] - self._from_sq(d2)

    def query_vector(self, query: torch.Tensor) -> torch.Tensor:
        super().query_vector(query)  # raises unless decomposable
        return torch.cat([2 * query[..., :-1], torch.ones_like(query[..., -1:])], -1)

    def item_vector(self, items: torch.Tensor) -> torch.Tensor:
        super().item_vector(items)
        g = items[..., :-1]
        return torch.cat([g, items[..., -1:] - (g ** 2).sum(-1, keepdim=True)], -1)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", squared={self.squared}"


class TransRecEncoder(nn.Module):
    """At every position ``t``: ``[g_{s_t} + T + T_u ; 1]`` (``[B, L, d + 1]``, zeros at padding), ``g`` the first
    ``d`` columns of the item tower."""

    def __init__(self, item_embedding: nn.Module, num_users: int, dim: int):
        super().__init__()
        self.item_embedding, self.dim = item_embedding, dim
        self.user = IdEmbedding(num_users, dim, init="xavier")
        self.global_t = nn.Parameter(torch.zeros(dim))

    def forward(self, seq: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        g = self.item_embedding(seq)[..., :self.dim]
        q = g + self.global_t + self.user(user).unsqueeze(1)
        out = torch.cat([q, torch.ones_like(q[..., :1])], -1)
        return out.masked_fill((seq == 0).unsqueeze(-1), 0.0)


@register_model("TransRec", category="seq",
                paper="R. He, W.-C. Kang, J. McAuley. Translation-based Recommendation. RecSys 2017.")
class TransRec(UserSequentialRecommender):
    """TransRec (He, Kang & McAuley, RecSys 2017).

    Items are points ``g_i`` of a shared space and each user is a translation ``T + T_u`` (a global
    vector plus a personal offset): after item ``l`` the score of item ``i`` is
    ``b_i - d(g_l + T + T_u, g_i)``, ``b_i`` an item bias and ``d`` the L2 distance (``distance: l2``, the
    paper and RecBole) or its square (``distance: squared_l2``: decomposable, so ANN retrieval is exact;
    with ``l2`` the conformance ANN check is skipped by the suite itself, the scorer being
    non-decomposable). The item tower holds ``[g_i ; b_i]`` (``embed_dim + 1`` wide) and the query is
    ``[g_l + T + T_u ; 1]``; :class:`TranslationScorer` scores them. Every position ``t`` of the user's
    latest ``max_seq_len + 1`` items is a training example (``l = s_t``, target ``s_{t+1}``).

    Loss: ``bpr`` with one negative per position (the paper's S-BPR, RecBole's setting); other losses of
    the sequential base work too.

    Departures from the paper: the item points are not projected onto the unit ball after each step
    (neither are they in RecBole); L2 regularisation is ``train.weight_decay`` (RecBole adds explicit
    embedding norms); Adam over mini-batches of users instead of SGD; evaluation ranks all items. Defaults:
    RecBole's (``embed_dim`` 64, BPR, Adam 1e-3), ``max_seq_len`` 50 (how many of a user's latest
    transitions are trained per epoch; RecBole trains all of them).

    Args (config keys): ``embed_dim``, ``distance``, ``max_seq_len``, ``loss``, ``sampler``, ``num_neg``,
    ``score_func`` (must be ``translation``), ``gbce_t``, ``item_feature_fields``; defaults in ``transrec.yaml``.

    Example:
        >>> model, metrics = recstudio.run(model="TransRec", dataset="ml-100k")     # doctest: +SKIP
    """

    option_help = {
        **SEQ_HELP,
        "score_func": "translation: b_i - d(query, g_i) (TransRec's own score; the only accepted value)",
        "distance": "l2 (the paper, RecBole) or squared_l2 (same idea, decomposable: exact ANN retrieval)",
        "max_seq_len": "the user's latest transitions trained at once (one prediction reads only the last item)",
    }

    def _get_item_encoder(self) -> nn.Module:
        return item_table(self, self.cfg("embed_dim") + 1)  # [g_i ; b_i]

    def _get_score_func(self) -> nn.Module:
        if self.cfg("score_func") != "translation":
            raise ConfigError(f"TransRec scores by translation distance; set score_func: translation (got "
                              f"{self.cfg('score_func')!r}) and choose the distance with distance: l2 | squared_l2.")
        if self.cfg("distance") not in DISTANCES:
            raise ConfigError(f"TransRec distance must be one of {DISTANCES}, got {self.cfg('distance')!r}.")
        return TranslationScorer(squared=self.cfg("distance") == "squared_l2")

    def _get_sequence_encoder(self) -> nn.Module:
        return TransRecEncoder(self.item_encoder, self.meta.num_users, self.cfg("embed_dim"))
