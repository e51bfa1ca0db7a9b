"""What the reductions mean: the "mean" denominator and the reduced loss, in one place.

``reduction="mean"`` divides by D = sum of w cw_y over the non-ignored rows (integer
labels), or sum of w (soft targets, or y=None), where w is sample_weight (1 when absent).
Every output is then that of the reduced loss: each row's weight becomes w / D before
anything is computed, so derivatives carry the 1/D too, and a tiny w cannot underflow in
a product before the division. A "mean" over no counted rows (D = 0) is NaN, as torch.

The NumPy reference and the Dask functions use these functions; the C kernels compute the
same D in one pass over the rows (``sk_mean_denominator`` in include/softmax_kernels/).
"""

from __future__ import annotations

import numpy as np

REDUCTIONS = ("none", "sum", "mean")


def mean_denominator_terms(n_rows, sample_weight=None, class_weight=None, labels=None, ignore_index=None):
    """Each row's share of the "mean" denominator, as float64: w cw_y, or 0 for an ignored row.

    ``labels`` is given for integer labels only (None for soft targets or y=None). Labels that
    are out of range are not checked here (validation rejects them) and never index cw.
    """
    terms = np.ones(n_rows) if sample_weight is None else np.asarray(sample_weight).astype(np.float64)
    if labels is None:
        return terms
    labels = np.asarray(labels)
    kept = np.ones(labels.shape, dtype=bool) if ignore_index is None else labels != ignore_index
    if class_weight is not None:
        safe = np.where(kept, labels, 0).astype(np.intp, copy=False)
        terms = terms * np.take(np.asarray(class_weight).astype(np.float64), safe, mode="clip")
    return np.where(kept, terms, 0.0)


def reduced_loss(total: float, denominator: float, reduction: str) -> float:
    """The "sum" or "mean" loss from the sum of the rows' losses (which carry their 1/D)."""
    return float("nan") if reduction == "mean" and denominator == 0 else total
