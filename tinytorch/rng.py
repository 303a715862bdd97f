"""The one random generator that initialization and dropout draw from, seeded by manual_seed."""

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the generator behind parameter initialization and dropout (as torch.manual_seed)."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def generator() -> np.random.Generator:
    return _generator
