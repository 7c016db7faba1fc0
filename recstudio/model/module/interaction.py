"""Feature-interaction layers of CTR models, over field embeddings ``[N, F, d]`` (one vector per field).

Every layer takes a batch of rows ``[N, F, d]`` (or the flattened ``[N, F * d]`` for the cross networks);
:func:`flatten_rows` folds any leading shape ``[*, F, d]`` into ``N`` rows and back, as the CTR base calls
``interaction`` with ``[B, F, d]`` (training) or ``[B, K, F, d]`` (ranking every item).

=========================  ======================================================  ==================
layer                      computes                                                models
=========================  ======================================================  ==================
:class:`CrossNet`          ``x_{l+1} = x_0 (x_l^T w_l) + b_l + x_l``               DCN
:class:`CrossNetV2`        ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` (full or      DCNv2
                           low-rank mixture of experts)
:class:`GatedCrossNet`     ``x_{l+1} = x_0 * (W_l x_l + b_l) * sigmoid(G_l x_l) + x_l``  GDCN
:class:`CIN`               compressed interaction network (Hadamard + 1x1 conv)   xDeepFM
:class:`FieldSelfAttention`  multi-head self-attention over the fields             AutoInt
:func:`pair_indices`       the ``F (F - 1) / 2`` field pairs ``i < j``             PNN, AFM, FwFM
:class:`InnerProduct`      ``<v_i, v_j>`` of every pair                            IPNN
:class:`OuterProduct`      kernel product ``v_i^T K_ij v_j`` of every pair          OPNN (kernel PNN)
:class:`SENet`             squeeze-excitation re-weighting of the fields          FiBiNET, MaskNet
:class:`BilinearInteraction`  ``(v_i W) * v_j`` of every pair                       FiBiNET
=========================  ======================================================  ==================

Example:
    >>> x = torch.randn(4, 3, 5)
    >>> InnerProduct(3)(x).shape, CIN(3, 5, [6, 4])(x).shape
    (torch.Size([4, 3]), torch.Size([4, 10]))
"""
from typing import Sequence, Tuple

import torch
from torch import nn

from recstudio.utils.errors import ConfigError


def flatten_rows(emb: torch.Tensor) -> Tuple[torch.Tensor, torch.Size]:
    """``[*, F, d] -> ([N, F, d], lead)`` with ``N = prod(lead)``; undo with ``out.reshape(*lead, ...)``.

    Example:
        >>> x, lead = flatten_rows(torch.zeros(2, 3, 4, 5))
        >>> x.shape, lead
        (torch.Size([6, 4, 5]), torch.Size([2, 3]))
    """
    lead = emb.shape[:-2]
    return emb.reshape(-1, *emb.shape[-2:]), lead


def pair_indices(num_fields: int, device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices ``(i, j)`` of the field pairs ``i < j`` (upper triangle, row-major).

    Example:
        >>> pair_indices(3)
        (tensor([0, 0, 1]), tensor([1, 2, 2]))
    """
    i, j = torch.triu_indices(num_fields, num_fields, offset=1, device=device)
    return i, j


def _check_positive(name: str, value) -> int:
    value = int(value)
    if value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value}.")
    return value


class CrossNet(nn.Module):
    """DCN's cross network (Wang et al., ADKDD 2017): ``x_{l+1} = x_0 (x_l^T w_l) + b_l + x_l``, each layer a
    rank-one feature cross with ``2 D`` parameters.

    Args:
        dim: input width ``D`` (``F * d``).
        num_layers: number of cross layers (0: identity).

    Example:
        >>> CrossNet(6, 2)(torch.randn(3, 6)).shape
        torch.Size([3, 6])
    """

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        if int(num_layers) < 0:
            raise ConfigError(f"the number of cross layers must be >= 0, got {num_layers}.")
        self.w = nn.ModuleList(nn.Linear(dim, 1, bias=False) for _ in range(int(num_layers)))
        self.b = nn.ParameterList(nn.Parameter(torch.zeros(dim)) for _ in range(int(num_layers)))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """``[N, D] -> [N, D]``."""
        x = x0
        for w, b in zip(self.w, self.b):
            x = x0 * w(x) + b + x
        return x


class CrossNetV2(nn.Module):
    """DCN-V2's cross network (Wang et al., WWW 2021): ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` with a full
    ``D x D`` matrix per layer, or (``low_rank > 0``) the low-rank mixture of ``num_experts`` experts
    ``x_{l+1} = sum_e g_e(x_l) * x_0 * (U_e tanh(C_e tanh(V_e^T x_l)) + b) + x_l``, ``g = softmax`` of a
    linear gate per expert.

    Args:
        dim: input width ``D``.
        num_layers: number of cross layers.
        low_rank: rank ``r`` of the mixture (0: the full-rank layer).
        num_experts: experts of the low-rank mixture.

    Example:
        >>> CrossNetV2(6, 2)(torch.randn(3, 6)).shape, CrossNetV2(6, 2, low_rank=2, num_experts=3)(torch.randn(3, 6)).shape
        (torch.Size([3, 6]), torch.Size([3, 6]))
    """

    def __init__(self, dim: int, num_layers: int, low_rank: int = 0, num_experts: int = 1):
        super().__init__()
        if int(num_layers) < 0 or int(low_rank) < 0:
            raise ConfigError(f"cross layers ({num_layers}) and low_rank ({low_rank}) must be >= 0.")
        self.low_rank = int(low_rank)
        n = int(num_layers)
        if self.low_rank == 0:
            self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(n))
        else:
            e, r = _check_positive("num_experts", num_experts), self.low_rank
            self.U = nn.ParameterList(nn.Parameter(nn.init.xavier_normal_(torch.empty(e, dim, r))) for _ in range(n))
            self.V = nn.ParameterList(nn.Parameter(nn.init.xavier_normal_(torch.empty(e, dim, r))) for _ in range(n))
            self.C = nn.ParameterList(nn.Parameter(nn.init.xavier_normal_(torch.empty(e, r, r))) for _ in range(n))
            self.bias = nn.ParameterList(nn.Parameter(torch.zeros(dim)) for _ in range(n))
            self.gates = nn.ModuleList(nn.Linear(dim, e, bias=False) for _ in range(n))
        self.num_layers = n

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """``[N, D] -> [N, D]``."""
        x = x0
        if self.low_rank == 0:
            for layer in self.layers:
                x = x0 * layer(x) + x
            return x
        for l in range(self.num_layers):
            v = torch.tanh(torch.einsum("nd,edr->ner", x, self.V[l]))          # [N, E, r]
            v = torch.tanh(torch.einsum("ner,ers->nes", v, self.C[l]))
            u = torch.einsum("nes,eds->ned", v, self.U[l]) + self.bias[l]       # [N, E, D]
            gate = torch.softmax(self.gates[l](x), -1)                           # [N, E]
            x = (gate.unsqueeze(-1) * (x0.unsqueeze(1) * u)).sum(1) + x
        return x


class GatedCrossNet(nn.Module):
    """GDCN's gated cross network (Wang et al., CIKM 2023): ``x_{l+1} = x_0 * (W_l x_l + b_l) *
    sigmoid(W^g_l x_l) + x_l``, an information gate on every cross feature.

    Example:
        >>> GatedCrossNet(6, 2)(torch.randn(3, 6)).shape
        torch.Size([3, 6])
    """

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        if int(num_layers) < 1:
            raise ConfigError(f"the number of cross layers must be >= 1, got {num_layers}.")
        self.cross = nn.ModuleList(nn.Linear(dim, dim) for _ in range(int(num_layers)))
        self.gate = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(int(num_layers)))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """``[N, D] -> [N, D]``."""
        x = x0
        for cross, gate in zip(self.cross, self.gate):
            x = x0 * cross(x) * torch.sigmoid(gate(x)) + x
        return x

class CIN(nn.Module):
    """xDeepFM's compressed interaction network (Lian et al., KDD 2018): ``X^k_h = sum_{i,j} W^{k,h}_{ij}
    (X^{k-1}_i * X^0_j)`` (a Hadamard product of every pair of a hidden map and an input field, compressed by
    a 1x1 convolution to ``H_k`` maps), each layer sum-pooled over the embedding dimension; the pooled maps of
    all layers are concatenated. Identity activation and no split-half, as FuxiCTR's CIN.

    Args:
        num_fields: ``F``.
        dim: embedding size ``d`` (not needed by the layer, checked against the input).
        layer_units: ``[H_1, H_2, ...]`` feature maps per layer.

    Example:
        >>> CIN(4, 3, [5, 2])(torch.randn(2, 4, 3)).shape
        torch.Size([2, 7])
    """

    def __init__(self, num_fields: int, dim: int, layer_units: Sequence[int]):
        super().__init__()
        units = [_check_positive("cin_layer_units", u) for u in layer_units]
        if not units:
            raise ConfigError("cin_layer_units must list at least one layer size.")
        self.dim = int(dim)
        prev = int(num_fields)
        self.convs = nn.ModuleList()
        for u in units:
            self.convs.append(nn.Conv1d(prev * int(num_fields), u, kernel_size=1))
            prev = u
        self.out_dim = sum(units)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """``[N, F, d] -> [N, sum(layer_units)]``."""
        n, _, d = x0.shape
        h, pooled = x0, []
        for conv in self.convs:
            z = torch.einsum("nhd,nmd->nhmd", h, x0).reshape(n, -1, d)
            h = conv(z)                                                    # [N, H_k, d]
            pooled.append(h.sum(-1))
        return torch.cat(pooled, -1)


class FieldSelfAttention(nn.Module):
    """AutoInt's interacting layer (Song et al., CIKM 2019): multi-head self-attention over the fields,
    ``e'_m = ReLU(concat_h sum_k softmax_k(<W_Q^h e_m, W_K^h e_k>) W_V^h e_k + W_res e_m)``.

    Args:
        in_dim: input vector size.
        attention_dim: output size (split over the heads; must be divisible by ``num_heads``).
        num_heads: attention heads.
        residual: add the projected input ``W_res e_m`` (the paper's residual connection).
        use_scale: divide the logits by ``sqrt(attention_dim / num_heads)`` (not in the paper).
        layer_norm: layer-normalise the output (not in the paper).
        dropout: dropout on the attention weights.
        relu: apply the paper's output ReLU.

    Example:
        >>> FieldSelfAttention(5, 8, num_heads=2)(torch.randn(3, 4, 5)).shape
        torch.Size([3, 4, 8])
    """

    def __init__(self, in_dim: int, attention_dim: int, num_heads: int = 1, residual: bool = True,
                 use_scale: bool = False, layer_norm: bool = False, dropout: float = 0.0, relu: bool = True):
        super().__init__()
        heads = _check_positive("num_heads", num_heads)
        attention_dim = _check_positive("attention_dim", attention_dim)
        if attention_dim % heads:
            raise ConfigError(f"attention_dim {attention_dim} must be divisible by num_heads {heads}.")
        self.heads, self.head_dim = heads, attention_dim // heads
        self.q = nn.Linear(in_dim, attention_dim, bias=False)
        self.k = nn.Linear(in_dim, attention_dim, bias=False)
        self.v = nn.Linear(in_dim, attention_dim, bias=False)
        self.res = nn.Linear(in_dim, attention_dim, bias=False) if residual else None
        self.scale = self.head_dim ** -0.5 if use_scale else 1.0
        self.norm = nn.LayerNorm(attention_dim) if layer_norm else None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.relu = bool(relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, F, in_dim] -> [N, F, attention_dim]``."""
        n, f, _ = x.shape
        split = lambda t: t.reshape(n, f, self.heads, self.head_dim).transpose(1, 2)   # [N, H, F, dh]
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = torch.softmax(q @ k.transpose(-1, -2) * self.scale, -1)
        if self.dropout is not None:
            att = self.dropout(att)
        out = (att @ v).transpose(1, 2).reshape(n, f, -1)
        if self.res is not None:
            out = out + self.res(x)
        if self.relu:
            out = torch.relu(out)
        if self.norm is not None:
            out = self.norm(out)
        return out


class InnerProduct(nn.Module):
    """``<v_i, v_j>`` of every field pair ``i < j``: ``[N, F, d] -> [N, F (F - 1) / 2]`` (IPNN's product layer).

    Example:
        >>> InnerProduct(2)(torch.tensor([[[1.0, 2.0], [3.0, 4.0]]]))
        tensor([[11.]])
    """

    def __init__(self, num_fields: int):
        super().__init__()
        i, j = pair_indices(num_fields)
        self.register_buffer("i", i, persistent=False)
        self.register_buffer("j", j, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, self.i] * x[:, self.j]).sum(-1)


class OuterProduct(nn.Module):
    """Kernel product of every field pair (Qu et al., TOIS 2018, kernel product-based PNN):
    ``p_ij = v_i^T K_ij v_j`` with ``kernel='mat'`` (a ``d x d`` matrix per pair), ``'vec'`` (a diagonal
    ``d``-vector per pair) or ``'num'`` (a scalar per pair). ``[N, F, d] -> [N, F (F - 1) / 2]``.

    Example:
        >>> OuterProduct(3, 2, kernel="vec")(torch.randn(4, 3, 2)).shape
        torch.Size([4, 3])
    """

    KERNELS = ("mat", "vec", "num")

    def __init__(self, num_fields: int, dim: int, kernel: str = "mat"):
        super().__init__()
        if kernel not in self.KERNELS:
            raise ConfigError(f"outer-product kernel must be one of {self.KERNELS}, got {kernel!r}.")
        i, j = pair_indices(num_fields)
        self.register_buffer("i", i, persistent=False)
        self.register_buffer("j", j, persistent=False)
        p = len(i)
        shape = {"mat": (p, dim, dim), "vec": (p, dim), "num": (p, 1)}[kernel]
        self.kernel_type = kernel
        self.kernel = nn.Parameter(nn.init.xavier_uniform_(torch.empty(*shape)) if kernel == "mat"
                                   else torch.empty(*shape).uniform_(-(1 / dim) ** 0.5, (1 / dim) ** 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, q = x[:, self.i], x[:, self.j]                                   # [N, P, d]
        if self.kernel_type == "mat":
            return torch.einsum("npd,pde,npe->np", p, self.kernel, q)
        return (p * q * self.kernel).sum(-1)


class SENet(nn.Module):
    """Squeeze-excitation over the fields (FiBiNET, Huang et al., RecSys 2019): ``z_f = mean_k v_fk``,
    ``a = ReLU(W_2 ReLU(W_1 z))`` (``W_1: F -> max(1, F / reduction_ratio)``), output ``a_f v_f``.

    Example:
        >>> SENet(4, 2)(torch.randn(3, 4, 5)).shape
        torch.Size([3, 4, 5])
    """

    def __init__(self, num_fields: int, reduction_ratio: float = 3.0):
        super().__init__()
        if float(reduction_ratio) <= 0:
            raise ConfigError(f"reduction_ratio must be positive, got {reduction_ratio}.")
        hidden = max(1, int(num_fields / float(reduction_ratio)))
        self.excitation = nn.Sequential(nn.Linear(num_fields, hidden, bias=False), nn.ReLU(),
                                        nn.Linear(hidden, num_fields, bias=False), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.excitation(x.mean(-1)).unsqueeze(-1)


class BilinearInteraction(nn.Module):
    """FiBiNET's bilinear interaction ``p_ij = (v_i W) * v_j`` for every pair ``i < j``, with one shared
    ``W`` (``'field_all'``), one per field ``i`` (``'field_each'``) or one per pair (``'field_interaction'``).
    ``[N, F, d] -> [N, F (F - 1) / 2, d]``.

    Example:
        >>> BilinearInteraction(3, 4, "field_each")(torch.randn(2, 3, 4)).shape
        torch.Size([2, 3, 4])
    """

    TYPES = ("field_all", "field_each", "field_interaction")

    def __init__(self, num_fields: int, dim: int, bilinear_type: str = "field_interaction"):
        super().__init__()
        if bilinear_type not in self.TYPES:
            raise ConfigError(f"bilinear_type must be one of {self.TYPES}, got {bilinear_type!r}.")
        i, j = pair_indices(num_fields)
        self.register_buffer("i", i, persistent=False)
        self.register_buffer("j", j, persistent=False)
        self.bilinear_type = bilinear_type
        count = {"field_all": 1, "field_each": num_fields, "field_interaction": len(i)}[bilinear_type]
        self.W = nn.Parameter(nn.init.xavier_normal_(torch.empty(count, dim, dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vi, vj = x[:, self.i], x[:, self.j]                                 # [N, P, d]
        if self.bilinear_type == "field_all":
            left = vi @ self.W[0]
        elif self.bilinear_type == "field_each":
            left = torch.einsum("npd,pde->npe", vi, self.W[self.i])
        else:
            left = torch.einsum("npd,pde->npe", vi, self.W)
        return left * vj


#: option_help entries of the deep (MLP) component shared by the CTR models
MLP_HELP = {
    "mlp_hidden": "hidden layer sizes of the deep component (MLP over the concatenated field embeddings)",
    "dropout": "dropout after each hidden layer of the deep component",
    "batch_norm": "batch norm before each hidden activation of the deep component",
    "activation": "activation of the hidden layers (relu, tanh, ...)",
}


def mlp_tower(model, in_dim: int, out_dim=1, hidden_key: str = "mlp_hidden", dropout_key: str = "dropout",
              batch_norm_key: str = "batch_norm", activation_key: str = "activation"):
    """The MLP ``in_dim -> cfg(hidden_key)... -> out_dim`` of a model's config (``out_dim=None``: the tower
    ends with its last hidden layer, activated; it then needs at least one hidden layer).

    Example:
        >>> class M:
        ...     def cfg(self, k): return {"mlp_hidden": [4], "dropout": 0.0, "batch_norm": False, "activation": "relu"}[k]
        >>> mlp_tower(M(), 6).dims
        [6, 4, 1]
    """
    from recstudio.model.module.mlp import MLP
    hidden = [int(h) for h in (model.cfg(hidden_key) or [])]
    if out_dim is None and not hidden:
        raise ConfigError(f"{hidden_key} must list at least one hidden layer size, got {hidden}.")
    dims = [int(in_dim), *hidden] + ([] if out_dim is None else [int(out_dim)])
    return MLP(dims, activation=model.cfg(activation_key), dropout=float(model.cfg(dropout_key)),
               batch_norm=bool(model.cfg(batch_norm_key)), last_activation=out_dim is None)


class DisentangledSelfAttention(nn.Module):
    """DESTINE's disentangled self-attention (Xu et al., CIKM 2021) over the fields: the weights are the sum of
    a whitened pairwise term ``softmax_j((q_i - mean q)(k_j - mean k)^T [/ sqrt(d_h)])`` and a unary term
    ``softmax_j(w_u^T e_j)`` (per head); ``out = ReLU(att V [+ W_res e])``. ``[N, F, in] -> [N, F, attention_dim]``.

    Example:
        >>> DisentangledSelfAttention(5, 8, num_heads=2)(torch.randn(3, 4, 5)).shape
        torch.Size([3, 4, 8])
    """

    def __init__(self, in_dim: int, attention_dim: int, num_heads: int = 1, residual: bool = True,
                 use_scale: bool = False, relu_before_att: bool = False, dropout: float = 0.0):
        super().__init__()
        heads = _check_positive("num_heads", num_heads)
        attention_dim = _check_positive("attention_dim", attention_dim)
        if attention_dim % heads:
            raise ConfigError(f"attention_dim {attention_dim} must be divisible by num_heads {heads}.")
        self.heads, self.head_dim = heads, attention_dim // heads
        self.q, self.k, self.v = (nn.Linear(in_dim, attention_dim) for _ in range(3))
        self.unary = nn.Linear(in_dim, heads)
        self.res = nn.Linear(in_dim, attention_dim) if residual else None
        self.scale = self.head_dim ** -0.5 if use_scale else 1.0
        self.relu_before_att = bool(relu_before_att)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, f, _ = x.shape
        unary = torch.softmax(self.unary(x), 1).transpose(1, 2).unsqueeze(-2)        # [N, H, 1, F]
        q, k, v = self.q(x), self.k(x), self.v(x)
        if self.relu_before_att:
            q, k, v = q.relu(), k.relu(), v.relu()
        split = lambda t: t.reshape(n, f, self.heads, self.head_dim).transpose(1, 2)   # [N, H, F, dh]
        q, k, v = split(q), split(k), split(v)
        q, k = q - q.mean(2, keepdim=True), k - k.mean(2, keepdim=True)
        att = torch.softmax(q @ k.transpose(-1, -2) * self.scale, -1) + unary
        if self.dropout is not None:
            att = self.dropout(att)
        out = (att @ v).transpose(1, 2).reshape(n, f, -1)
        if self.res is not None:
            out = out + self.res(x)
        return out.relu()
