"""AFN: adaptive-order feature interactions through a logarithmic transformation layer."""
import torch
from torch import nn

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.interaction import flatten_rows, mlp_tower
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


@register_model("AFN", category="ctr",
                paper="W. Cheng, Y. Shen, L. Huang. Adaptive Factorization Network: Learning Adaptive-Order Feature "
                      "Interactions. AAAI 2020.")
class AFN(FeatureRecommender):
    """Adaptive Factorization Network (Cheng et al., AAAI 2020): each of ``logarithmic_neurons`` neurons
    computes ``y_j = exp(sum_f w_jf log|v_f|)`` = ``prod_f v_f^{w_jf}`` element-wise (an interaction of learned,
    arbitrary order), with batch norm on the logs and on the outputs; ``logit = MLP([y_1; ...; y_L])``.
    ``ensemble_dnn: true`` (AFN+) adds an MLP over the concatenated embeddings and combines the two logits
    with a learned linear layer. No first-order term.

    Departures from the paper: ``|v|`` is clamped at 1e-5 before the log (as FuxiCTR); AFN+'s MLP reads the
    same embeddings (the paper and FuxiCTR give it its own); an L2 penalty on the embeddings
    (``embed_reg``), Adam with early stopping on valid AUC. Defaults follow BARS / FuxiCTR AFN_frappe_x1_008
    (embedding 10, 1000 logarithmic neurons, MLP [400], dropout 0.4, no batch norm, no ensemble, embedding
    regularizer 0.001, Adam 1e-3, batch 4096).

    Args (config keys): ``embed_dim``, ``logarithmic_neurons``, ``afn_hidden``, ``afn_dropout``,
    ``ensemble_dnn``, ``mlp_hidden``, ``dropout``, ``batch_norm``, ``activation``, ``embed_reg``,
    ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``; see ``afn.yaml``.

    Example:
        >>> import recstudio
        >>> model, metrics = recstudio.run(model="AFN", dataset="frappe")   # doctest: +SKIP
    """

    use_first_order = False
    option_help = {**FEATURE_HELP,
                   "logarithmic_neurons": "number of logarithmic neurons (learned interactions)",
                   "afn_hidden": "hidden sizes of the MLP over the logarithmic neurons",
                   "afn_dropout": "dropout in the MLP over the logarithmic neurons",
                   "ensemble_dnn": "AFN+: add an MLP over the embeddings and mix both logits linearly",
                   "mlp_hidden": "hidden sizes of AFN+'s MLP over the embeddings (ensemble_dnn)",
                   "dropout": "dropout in AFN+'s MLP",
                   "batch_norm": "batch norm in both MLPs",
                   "activation": "activation of both MLPs"}

    def build_interaction(self) -> None:
        neurons = int(self.cfg("logarithmic_neurons"))
        if neurons < 1:
            raise ConfigError(f"logarithmic_neurons must be positive, got {neurons}.")
        self.coefficients = nn.Linear(self.num_fields, neurons, bias=False)
        self.log_norm, self.exp_norm = nn.BatchNorm1d(self.num_fields), nn.BatchNorm1d(neurons)
        self.afn_mlp = mlp_tower(self, neurons * self.embed_dim, hidden_key="afn_hidden", dropout_key="afn_dropout")
        self.dnn = mlp_tower(self, self.num_fields * self.embed_dim) if self.cfg("ensemble_dnn") else None
        self.mix = nn.Linear(2, 1) if self.dnn is not None else None

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        x, lead = flatten_rows(emb)
        logs = self.log_norm(torch.log(x.abs().clamp(min=1e-5)))                       # [N, F, d]
        cross = self.exp_norm(torch.exp(self.coefficients(logs.transpose(1, 2)).transpose(1, 2)))   # [N, L, d]
        out = self.afn_mlp(cross.flatten(1))
        if self.dnn is not None:
            out = self.mix(torch.cat([out, self.dnn(x.flatten(1))], -1))
        return out.reshape(lead)
