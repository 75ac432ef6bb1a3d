"""Evaluation-engine speed against the straightforward scikit-learn loops, in the same run.

    python benchmarks/bench_metrics.py

Prints times and ratios for: metrics at one threshold on 100 000 predictions (vs scikit-learn's
confusion_matrix + f1/recall/precision), the full threshold sweep (vs a loop of
the same scikit-learn calls at every distinct threshold, on 10 000 predictions with 101 distinct
scores and on all distinct scores of 2 000), and 2 000 bootstrap AUC resamples on 1 000
predictions (vs a roc_auc_score loop). Targets: one threshold < 5 ms, sweep < 50 ms,
bootstrap < 2 s, each >= 10x faster than the loop it replaces.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from sklearn import metrics as sk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nsclc_engine.stats.metrics import bootstrap_metrics, metrics_at_threshold, threshold_sweep


def best_of(function, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def report(name: str, ours: float, baseline: float, target_s: float) -> None:
    verdict = "ok" if ours < target_s and baseline / ours >= 10 else "MISSED"
    print(
        f"{name}: ours {ours * 1e3:.2f} ms, scikit-learn loop {baseline * 1e3:.1f} ms, "
        f"ratio {baseline / ours:.0f}x (target < {target_s * 1e3:.0f} ms and >= 10x: {verdict})"
    )


def main() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100_000)
    p = np.clip(0.5 + 0.2 * (y - 0.5) + rng.normal(0, 0.2, 100_000), 0, 1)

    def sklearn_one(y=y, p=p, threshold=0.5):
        predicted = p >= threshold
        sk.confusion_matrix(y, predicted)
        sk.f1_score(y, predicted, zero_division=0)
        sk.recall_score(y, predicted, zero_division=0)
        sk.recall_score(y, predicted, pos_label=0, zero_division=0)
        sk.precision_score(y, predicted, zero_division=0)

    report(
        "one threshold, n=100000",
        best_of(lambda: metrics_at_threshold(y, p, 0.5)),
        best_of(sklearn_one, 3),
        0.005,
    )

    y2, p2 = y[:10_000], np.round(p[:10_000], 2)  # a slider over probabilities to 0.01
    ours = best_of(lambda: threshold_sweep(y2, p2))
    loop = best_of(lambda: [sklearn_one(y2, p2, t) for t in np.unique(p2)], 1)
    report(f"full sweep, n=10000, {len(np.unique(p2))} thresholds", ours, loop, 0.05)
    y3, p3 = y[:2000], p[:2000]
    ours = best_of(lambda: threshold_sweep(y3, p3))
    loop = best_of(lambda: [sklearn_one(y3, p3, t) for t in np.unique(p3)], 1)
    report(f"full sweep, n=2000, {len(np.unique(p3))} thresholds", ours, loop, 0.05)

    y4, p4 = y[:1000], p[:1000]

    def sklearn_bootstrap():
        indices = np.random.default_rng(1).integers(0, 1000, size=(2000, 1000))
        return [sk.roc_auc_score(y4[i], p4[i]) for i in indices]

    ours = best_of(lambda: bootstrap_metrics(y4, p4, n_resamples=2000, seed=1), 3)
    report(
        "bootstrap 2000 x n=1000 (AUC + 9 more metrics)", ours, best_of(sklearn_bootstrap, 1), 2.0
    )


if __name__ == "__main__":
    main()
