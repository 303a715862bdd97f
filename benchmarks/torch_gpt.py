"""The same GPT-2 in PyTorch eager (nanoGPT's layout), for side-by-side timings.

Weights load from a tinytorch state_dict, so both frameworks run the very same model.
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, c, n_head):
        super().__init__()
        self.n_head = n_head
        self.ln_1, self.ln_2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.c_attn, self.attn_proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.c_fc, self.mlp_proj = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.attn_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class TorchGPT(nn.Module):
    def __init__(self, vocab_size, n_positions, n_embd, n_layer, n_head):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab_size, n_embd), nn.Embedding(n_positions, n_embd)
        self.h = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T

    def load_tinytorch(self, state):
        """Copy a tinytorch GPT's weights in (Linear weights are stored transposed in GPT-2)."""
        t = lambda a: torch.tensor(np.asarray(a))  # noqa: E731
        with torch.no_grad():
            self.wte.weight.copy_(t(state["transformer.wte.weight"]))
            self.wpe.weight.copy_(t(state["transformer.wpe.weight"]))
            for i, b in enumerate(self.h):
                p = f"transformer.h.{i}."
                for ours, theirs in [("ln_1", b.ln_1), ("ln_2", b.ln_2)]:
                    theirs.weight.copy_(t(state[p + ours + ".weight"]))
                    theirs.bias.copy_(t(state[p + ours + ".bias"]))
                for ours, theirs in [("attn.c_attn", b.c_attn), ("attn.c_proj", b.attn_proj),
                                     ("mlp.c_fc", b.c_fc), ("mlp.c_proj", b.mlp_proj)]:
                    theirs.weight.copy_(t(state[p + ours + ".weight"]).T)
                    theirs.bias.copy_(t(state[p + ours + ".bias"]))
            self.ln_f.weight.copy_(t(state["transformer.ln_f.weight"]))
            self.ln_f.bias.copy_(t(state["transformer.ln_f.bias"]))
