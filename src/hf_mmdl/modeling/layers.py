"""Building blocks shared by the package's models: multi-head attention through SDPA, post-norm blocks, position tables."""

import math

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention, softmax(QKᵀ/√d_k)V, computed by `F.scaled_dot_product_attention`.

    Keys and values can be projected once and passed back in (`key_value=`), which is how callers implement KV
    caches and how subclasses add extra keys (e.g. M²'s memory slots) before the heads are split.
    """

    def __init__(self, hidden_size: int, num_heads: int, bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=bias)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=bias)

    def split_heads(self, states: torch.Tensor) -> torch.Tensor:
        batch, length, _ = states.shape
        return states.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def project_keys_values(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of `states`, shaped (batch, heads, length, head_dim)."""
        return self.split_heads(self.k_proj(states)), self.split_heads(self.v_proj(states))

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        key_value: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """`attention_mask` is boolean, broadcastable to (batch, heads, queries, keys), True where attention is allowed."""
        if key_value is None:
            source = hidden_states if key_value_states is None else key_value_states
            key_value = self.project_keys_values(source)
        keys, values = key_value
        queries = self.split_heads(self.q_proj(hidden_states))
        if attention_mask is not None and attention_mask.dtype != torch.bool:
            raise TypeError("attention_mask must be boolean (True = attend).")
        out = F.scaled_dot_product_attention(queries, keys.to(queries.dtype), values.to(queries.dtype), attn_mask=attention_mask)
        batch, _, length, _ = out.shape
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim))


class PostNormResidual(nn.Module):
    """LayerNorm(x + Dropout(sublayer_output)): the post-norm residual of the original Transformer."""

    def __init__(self, hidden_size: int, dropout: float, eps: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(self, residual: torch.Tensor, sublayer_output: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(residual + self.dropout(sublayer_output))


class PostNormFeedForward(nn.Module):
    """Position-wise feed-forward F(x) = U·ReLU(Vx + b) + c inside a post-norm residual, with dropout on both
    the hidden activation and the output."""

    def __init__(self, hidden_size: int, inner_size: int, dropout: float, eps: float):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, inner_size)
        self.fc2 = nn.Linear(inner_size, hidden_size)
        self.inner_dropout = nn.Dropout(dropout)
        self.residual = PostNormResidual(hidden_size, dropout, eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        inner = self.inner_dropout(F.relu(self.fc1(hidden_states)))
        return self.residual(hidden_states, self.fc2(inner))


def sinusoid_position_table(num_positions: int, dim: int, padding_idx: int | None = None) -> torch.Tensor:
    """The fixed sin/cos position table of Vaswani et al. (2017), one row per position; row `padding_idx` is zero."""
    positions = torch.arange(num_positions, dtype=torch.float32).unsqueeze(1)
    frequencies = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(positions * frequencies)
    table[:, 1::2] = torch.cos(positions * frequencies[: dim // 2])
    if padding_idx is not None:
        table[padding_idx] = 0.0
    return table


def torch_default_init_(module: nn.Module) -> bool:
    """Re-draw a Conv2d or Linear as torch's constructors do (Kaiming-uniform weights with a = √5, bias uniform in
    ±1/√fan_in) and return True; False for any other module. `post_init` of models whose published training started
    from torch's defaults calls it, since transformers' `_init_weights` would otherwise use normal(0, 0.02)."""
    if not isinstance(module, (nn.Conv2d, nn.Linear)):
        return False
    nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5))
    if module.bias is not None:
        bound = 1 / math.sqrt(module.weight[0].numel())
        nn.init.uniform_(module.bias, -bound, bound)
    return True
