"""What one request of the Copilot may allocate for a model, counted from its config before the
weights are fetched.

The parameter cap bounds the weights, not the work: attention holds n_head x context^2 weights per
sequence and layer, so a 4.7M-parameter config with 512 heads and a context of 3,000 asks 9.7 GB
for one prompt; a deep, narrow one (1,024 layers of width 8) keeps gigabytes of activations for a
fine-tune's backward pass. A student's model is refused at load when its largest request would
need more than MAX_REQUEST_MB (TINYTORCH_DEMO_MAX_REQUEST_MB).
"""

from __future__ import annotations


from tinytorch.checkpoint import CheckpointError
from tinytorch.completion import NUM_BEAMS

from . import settings

MAX_REQUEST_MB = settings.number("TINYTORCH_DEMO_MAX_REQUEST_MB", 1024, 1)
# The most a request works on at once, as demos/copilot.py bounds it (tests/test_classroom_memory.py
# checks that they agree): its largest fine-tune batch and window, and Compare's scoring batch
# (tinytorch.evaluate.text_metrics' windows).
TRAIN_BATCH, TRAIN_CONTEXT, SCORE_BATCH = 64, 64, 32
FLOAT = 4  # bytes: the demos run float32
# Arrays of width n_embd a block keeps per position for its backward pass, about: the two
# LayerNorms' inputs and outputs, q k v, the attention's output, the MLP's 4 x n_embd twice.
KEPT_PER_POSITION = 16


def request_bytes(config) -> int:
    """About the most bytes one request holds for a model of `config` (a GPTConfig), beyond its
    weights: the largest of a fine-tune's kept activations and attention weights (every layer),
    Compare's scoring of SCORE_BATCH full windows (one layer's attention at a time), Look inside's
    attention map (every layer's), and beam search's KV cache."""
    C, H, L, P = config.n_embd, config.n_head, config.n_layer, config.n_positions
    T = min(TRAIN_CONTEXT, P)
    fine_tune = TRAIN_BATCH * T * L * (KEPT_PER_POSITION * C + H * T)
    scoring = SCORE_BATCH * P * (KEPT_PER_POSITION * C + H * P)
    attention_map = L * H * P * P
    kv_cache = NUM_BEAMS * L * 2 * P * C
    return FLOAT * max(fine_tune, scoring, attention_map, kv_cache)


def check_request_size(config, label, limit_bytes: float | None = None) -> None:
    """CheckpointError naming the file when a request on this model would need more than the limit."""
    limit = MAX_REQUEST_MB * 2**20 if limit_bytes is None else limit_bytes
    if (need := request_bytes(config)) > limit:
        raise CheckpointError(f"{label}: n_layer {config.n_layer}, n_head {config.n_head}, n_embd {config.n_embd} "
                              f"and context {config.n_positions} would need about {need / 2**20:,.0f} MB for one "
                              f"request (attention and activations); this server allows {limit / 2**20:,.0f} MB")
