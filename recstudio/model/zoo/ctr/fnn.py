"""FNN: an MLP over the fields' (w_i, v_i) vectors, optionally initialised from a trained FM."""
import torch

from recstudio.model.family.feature import FEATURE_HELP, FeatureRecommender
from recstudio.model.module.mlp import MLP
from recstudio.model.registry import register_model
from recstudio.utils.errors import ConfigError


@register_model("FNN", category="ctr",
                paper="W. Zhang, T. Du, J. Wang. Deep Learning over Multi-field Categorical Data: A Case Study on "
                      "User Response Prediction. ECIR 2016.")
class FNN(FeatureRecommender):
    """FNN (Zhang et al., ECIR 2016): every field ``i`` gives ``z_i = (w_i, v_i)`` (a first-order weight and a
    ``K``-vector, FM's parameters, packed in one row of width ``embed_dim + 1``), and
    ``y = MLP([z_1; ...; z_F])``; no separate linear term. ``pretrained_fm: <path>`` initialises every
    ``z_i`` from a trained FM checkpoint (``recstudio`` ``FM`` with the same fields and ``embed_dim``): its
    first-order weights and vectors, concatenated, as the paper's FM-supported initialisation; the whole
    network is then fine-tuned end to end.

    The paper's global bias ``w_0`` in ``z`` is a constant input, absorbed by the first layer's bias (the
    model's ``bias`` is added to the logit).

    Departures from the paper: the hidden layers are not pre-trained layer-wise (contrastive divergence);
    ``pretrained_fm: null`` (the default, as in FuxiCTR / RecBole) trains from a random initialisation;
    ReLU hidden units, batch norm and dropout by default (BARS / FuxiCTR's tower; ``activation: tanh``,
    ``batch_norm: false``, ``dropout: 0`` give the paper's).

    Args (config keys): ``embed_dim``, ``pretrained_fm``, ``mlp_hidden``, ``activation``, ``dropout``,
    ``batch_norm``, ``embed_reg``, ``feature_fields``, ``label_field``, ``label_threshold``, ``loss``;
    see ``fnn.yaml``.

    Example:
        >>> fm, _ = recstudio.run(model="FM", dataset="frappe")                       # doctest: +SKIP
        >>> fm.save("fm.pt")                                                          # doctest: +SKIP
        >>> model, metrics = recstudio.run(model="FNN", dataset="frappe", pretrained_fm="fm.pt")  # doctest: +SKIP
    """

    use_first_order = False
    option_help = {**FEATURE_HELP,
                   "pretrained_fm": "path of a trained FM checkpoint (same data fields and embed_dim) whose "
                                    "first-order weights and vectors initialise the field rows (null: random)",
                   "mlp_hidden": "hidden layer sizes of the MLP",
                   "activation": "activation of the hidden layers (tanh as in the paper, relu, ...)",
                   "dropout": "dropout after each hidden layer",
                   "batch_norm": "batch norm before each hidden activation"}

    def embedding_width(self) -> int:
        return int(self.cfg("embed_dim")) + 1

    def build_interaction(self) -> None:
        dims = [self.num_fields * self.embed_dim, *self.cfg("mlp_hidden"), 1]
        self.mlp = MLP(dims, activation=self.cfg("activation"), dropout=float(self.cfg("dropout")),
                       batch_norm=bool(self.cfg("batch_norm")))
        if self.cfg("pretrained_fm"):
            self.load_fm(self.cfg("pretrained_fm"))

    def load_fm(self, path) -> None:
        """Copy ``[w_i, v_i]`` of every field from the FM checkpoint at ``path`` into the field rows."""
        try:
            ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
        except (OSError, RuntimeError) as err:
            raise ConfigError(f"pretrained_fm: cannot read {path!r} ({err}); give a checkpoint saved by an FM "
                              "(model.save(path) or a run's checkpoint).") from None
        state = ckpt.get("state_dict", ckpt)
        own = self.embedding.state_dict()
        new = {}
        for name, param in own.items():  # embed.<field>.<param>
            _, field, rest = name.split(".", 2)
            v, w = state.get(f"embedding.embed.{field}.{rest}"), state.get(f"embedding.weights.{field}.{rest}")
            if v is None or w is None:
                raise ConfigError(f"pretrained_fm {path!r} has no FM parameters for field {field!r} "
                                  f"(embedding.embed/weights.{field}); train the FM on the same fields.")
            axis = next((a for a in range(param.dim()) if v.shape[a] + w.shape[a] == param.shape[a]
                         and all(v.shape[b] == param.shape[b] == w.shape[b] for b in range(param.dim()) if b != a)),
                        None) if v.dim() == param.dim() == w.dim() else None
            if axis is None:
                raise ConfigError(f"pretrained_fm {path!r}: field {field!r} has shapes {tuple(w.shape)} (w) and "
                                  f"{tuple(v.shape)} (v), which do not make {tuple(param.shape)}; use an FM with "
                                  f"embed_dim {self.embed_dim - 1} on the same data.")
            new[name] = torch.cat([w, v], axis).to(param.dtype)
        self.embedding.load_state_dict(new)

    def interaction(self, emb: torch.Tensor) -> torch.Tensor:
        return self.mlp(emb.flatten(-2)).squeeze(-1)
