"""The benchmark's rules, stated once; the tool schema, the workspace, training and agents read them."""

from __future__ import annotations

#: Hard cap on the training samples of one experiment (the paper's rule).
MAX_TRAIN_SAMPLES = 2000
