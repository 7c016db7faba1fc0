"""A multi-layer perceptron tower and an activation lookup."""
from typing import Callable, Sequence, Union

import torch
from torch import nn

from recstudio.utils.errors import ConfigError
from recstudio.utils.suggest import did_you_mean

ACTIVATIONS = {
    "relu": nn.ReLU, "leakyrelu": nn.LeakyReLU, "prelu": nn.PReLU, "elu": nn.ELU, "gelu": nn.GELU,
    "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "silu": nn.SiLU, "swish": nn.SiLU,
    "identity": nn.Identity, "none": nn.Identity, "linear": nn.Identity,
}

ActivationSpec = Union[str, nn.Module, Callable[[], nn.Module], None]


def get_activation(spec: ActivationSpec) -> nn.Module:
    """A fresh activation module from a name (``'relu'``, ``'tanh'``, ...), a class, or an instance.

    Raises:
        ConfigError: an unknown name (the message suggests close names).

    Example:
        >>> get_activation("ReLU")
        ReLU()
    """
    if spec is None:
        return nn.Identity()
    if isinstance(spec, nn.Module):
        return spec
    if isinstance(spec, str):
        key = spec.lower().replace("_", "")
        if key not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {spec!r}." + did_you_mean(spec, ACTIVATIONS)
                              + f" Available: {', '.join(sorted(ACTIVATIONS))}.")
        return ACTIVATIONS[key]()
    if callable(spec):
        return spec()
    raise ConfigError(f"activation must be a name, an nn.Module or a module class, got {spec!r}.")


class MLP(nn.Module):
    """A stack of ``Linear -> [BatchNorm] -> activation -> [Dropout]`` layers.

    ``dims=[d0, d1, ..., dk]`` gives ``k`` linear layers ``d0->d1 ... d(k-1)->dk``. The last layer
    is followed by batch norm / activation / dropout only when ``last_activation=True`` (so by
    default the tower ends with a plain linear layer: logits, scores or embeddings). Inputs may
    have any leading shape ``[*, d0] -> [*, dk]`` (batch norm normalises over all leading dims).

    Args:
        dims: layer sizes, at least two.
        activation: name (``'relu'``, ``'tanh'``, ``'sigmoid'``, ``'gelu'``, ``'leakyrelu'``,
            ``'prelu'``, ``'identity'``, ...), a module class or an instance (an instance is
            shared by all layers).
        dropout: dropout probability after each activated layer.
        batch_norm: add ``BatchNorm1d`` before each activation.
        last_activation: treat the last layer like the hidden ones.

    Example:
        >>> mlp = MLP([16, 32, 8], activation="tanh", dropout=0.1)
        >>> mlp(torch.randn(4, 5, 16)).shape
        torch.Size([4, 5, 8])
    """

    def __init__(self, dims: Sequence[int], activation: ActivationSpec = "relu", dropout: float = 0.0,
                 batch_norm: bool = False, last_activation: bool = False):
        super().__init__()
        dims = [int(d) for d in dims]
        if len(dims) < 2 or min(dims) < 1:
            raise ConfigError(f"MLP dims must list at least two positive sizes (input, output), got {dims}.")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"MLP dropout must be in [0, 1), got {dropout}.")
        get_activation(activation)  # validate the name even when no layer is activated
        self.dims = dims
        layers = []
        n = len(dims) - 1
        for i in range(n):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < n - 1 or last_activation:
                if batch_norm:
                    layers.append(_BatchNormAnyShape(dims[i + 1]))
                layers.append(get_activation(activation))
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
        self.layers = nn.Sequential(*layers)

    @property
    def in_dim(self) -> int:
        return self.dims[0]

    @property
    def out_dim(self) -> int:
        return self.dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[*, dims[0]] -> [*, dims[-1]]``."""
        return self.layers(x)


class _BatchNormAnyShape(nn.BatchNorm1d):
    """BatchNorm1d over the last dim of a ``[*, C]`` input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        return super().forward(x.reshape(-1, shape[-1])).reshape(shape)
