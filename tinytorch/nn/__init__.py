"""Neural-network building blocks, named as in torch.nn, and GPT."""

from . import functional
from .attention import CausalSelfAttention, KVCache
from .gpt import GPT, MLP, Block, GPTConfig
from .layers import GELU, Dropout, Embedding, LayerNorm, Linear
from .module import Module, ModuleDict, ModuleList, Parameter

__all__ = [
    "functional", "Module", "ModuleList", "ModuleDict", "Parameter", "Linear", "Embedding",
    "LayerNorm", "Dropout", "GELU", "CausalSelfAttention", "KVCache", "MLP", "Block", "GPT", "GPTConfig",
]
