"""GPTConfig: the sizes of a GPT, as config.json stores them (GPT-2's names).

Its own module, below both the model (tinytorch.nn.gpt) and the checkpoint format
(tinytorch.checkpoint), so that each can use it without importing the other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np


@dataclass
class GPTConfig:
    vocab_size: int = 98
    n_positions: int = 64  # the context window: the most positions the model ever sees
    n_embd: int = 32
    n_layer: int = 2
    n_head: int = 2
    dropout: float = 0.0
    layer_norm_epsilon: float = 1e-5

    def __post_init__(self):
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "GPTConfig":
        """Build from a dict, ignoring keys that are not fields (config.json holds more)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})
