"""Seeds shared by every family's samplers and synthetic generators.

`stable_seed(*parts)` hashes integers (base seed, epoch, split id, sample index, stream, ...) into one
well-mixed seed, so that a random draw is a pure function of where it is used and not of the order in which
workers or processes happen to run.
"""

from __future__ import annotations

import operator

import numpy as np


def stable_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy SeedSequence hashing), stable across runs.

    Args:
        parts: one or more non-negative integers (e.g. seed, epoch); the same parts give the same seed.
    Returns:
        an int in [0, 2**63), suitable for `torch.Generator().manual_seed`.
    """
    if not parts:
        raise ValueError("parts: expected at least one integer")
    try:
        ints = [operator.index(p) for p in parts]
    except TypeError:
        ints = None
    if ints is None or min(ints) < 0:
        raise ValueError(f"parts: expected non-negative integers, got {parts}")
    return int(np.random.SeedSequence(ints).generate_state(2, np.uint64)[0] >> np.uint64(1))
