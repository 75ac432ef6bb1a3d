"""The report's tables and curves as data, no HTML: how to read each split, patients and
events per split (TRIPOD's sample size), calibration with CIs, baselines with Holm-adjusted
p-values, and the decision curves of the recalibrated probabilities."""

from __future__ import annotations

import pandas as pd

from nsclc_engine.evaluate.multiplicity import holm_adjust
from nsclc_engine.stats.calibration import decision_curve

TRIPOD_SAMPLE_SIZE = "Sample size and missing data"
TRIPOD_ITEMS = (
    ("Data: source, dates, eligibility", "cohort summary and exclusions with reasons"),
    ("Outcome definition", "label and positive class stated"),
    (TRIPOD_SAMPLE_SIZE, "patients and events per split (Sample size), excluded patients"),
    ("Data splitting (development / evaluation)", "patient-level splits, sizes and balance"),
    ("Model performance: discrimination", "AUC and AP with bootstrap 95 % CIs, held out"),
    ("Model performance: calibration", "reliability diagram, Brier, ECE, intercept and slope"),
    ("Clinical utility", "decision curve of the recalibrated probabilities"),
    ("Comparison with simpler models", "clinical-only and volume-only baselines, DeLong, Holm"),
    ("Threshold choice", "rule fitted on validation, applied frozen to test"),
)


def fmt_ci(block: dict, key: str = "value") -> str:
    return f"{block[key]:.3f} ({block['ci_low']:.3f}-{block['ci_high']:.3f})"


SPLIT_READING = {
    "train": "in-sample: the model was fitted on these patients",
    "validation": "optimistic: the best epoch (or penalty), the threshold and the "
    "recalibration were chosen on these patients",
    "test": "held out: no choice was made on these patients",
    "external": "held out: patients the model never saw",
}
SURVIVAL_READING = SPLIT_READING | {
    "validation": "optimistic: the best epoch, the fusion weights and the risk cut were chosen "
    "on these patients"
}
PART_ORDER = ("train", "validation", "test", "external")


def split_reading(part: str) -> str:
    """How to read a metric on ``part``: in-sample, optimistic, or held out."""
    return SPLIT_READING.get(part, "")


def with_ci(value: float, ci: list | None) -> str:
    if value is None or value != value:
        return "not estimable"
    if not ci or any(v is None or v != v for v in ci):
        return f"{value:.3f} (CI not computed)"
    return f"{value:.3f} ({ci[0]:.3f} to {ci[1]:.3f})"


def sample_size_table(predictions: pd.DataFrame, outcome: str = "y_true") -> pd.DataFrame:
    """Patients and events (patients with the outcome: ``outcome`` = 1) per split, each patient
    once; a k-fold run gets a row per fold and split and a pooled out-of-fold test row. The last
    row is every patient the run used."""
    rows = []
    k_fold = predictions.fold.min() != predictions.fold.max()

    def count(frame: pd.DataFrame, fold, part: str) -> dict:
        once = frame.drop_duplicates("patient_id")
        events = int(once[outcome].sum())
        return {
            "fold": fold,
            "split": part,
            "patients": len(once),
            "events": events,
            "events %": 100 * events / len(once) if len(once) else float("nan"),
        }

    order = {part: i for i, part in enumerate(PART_ORDER)}
    groups = sorted(
        predictions.groupby(["fold", "split"]), key=lambda g: (g[0][0], order.get(g[0][1], 9))
    )
    for (fold, part), frame in groups:
        rows.append(count(frame, int(fold) if k_fold else "", part))
    if k_fold:
        held = predictions[predictions.split.isin(["test", "external"])]
        rows.append(count(held, "all (out of fold)", "test"))
    rows.append(count(predictions, "", "all patients"))
    return pd.DataFrame(rows, columns=["fold", "split", "patients", "events", "events %"])


def sample_size_answer(sizes: pd.DataFrame, outcome: str) -> str:
    """TRIPOD's sample size in one line: patients and events in all and per split."""
    whole = sizes[sizes.split == "all patients"].iloc[0]
    parts = sizes[(sizes.split != "all patients") & (sizes.fold.isin(["", "all (out of fold)"]))]
    per_split = "; ".join(f"{r.split} {r.patients} ({r.events} events)" for r in parts.itertuples())
    folds = " per fold in the Sample size table;" if (sizes.fold == 0).any() else ""
    return (
        f"{whole.patients} patients, {whole.events} events ({outcome});{folds} {per_split}".rstrip(
            "; "
        )
        + "; excluded patients in Cohort"
    )


def tripod_table(sample_size: str) -> pd.DataFrame:
    """The TRIPOD+AI items with where this report answers each; sample size answered."""
    rows = [
        (item, sample_size if item == TRIPOD_SAMPLE_SIZE else where) for item, where in TRIPOD_ITEMS
    ]
    return pd.DataFrame(rows, columns=["item", "answer, or where in this report"])


def report_decision_curves(
    test: pd.DataFrame,
    recalibrated: pd.Series,
    recalibrators: list[dict],
    baselines: dict[str, pd.DataFrame],
    held_out: str,
    model: str,
) -> dict[str, dict]:
    """The decision curves of the report: the model's *recalibrated* held-out probabilities
    (each fold's recalibrator fitted on its validation rows, as the Calibration page shows
    them; ``recalibrated`` indexed like ``test``) and each baseline's probabilities as fitted.
    Keys name the probabilities drawn."""
    methods = sorted({r.get("method", "none") for r in recalibrators}) or ["none"]
    if methods == ["none"]:
        name = f"{model} (raw probabilities: no recalibration in force)"
    else:
        name = f"{model}, recalibrated ({'/'.join(methods)}, fitted on validation)"
    curves = {name: decision_curve(test.y_true, recalibrated.loc[test.index])}
    for baseline, frame in baselines.items():
        rows = frame[frame.split == held_out]
        if len(rows):
            curves[f"{baseline} baseline (as fitted)"] = decision_curve(rows.y_true, rows.y_prob)
    return curves


def calibration_rows(calibration: dict) -> list[dict]:
    """Brier, ECE, and intercept and slope with their 95 % CIs (``intercept_ci``,
    ``slope_ci`` in ``calibration.json``; "CI not computed" where absent), raw and
    recalibrated."""
    rows = []
    for name in ("raw", "recalibrated"):
        block = calibration[name]
        rows.append(
            {
                "probabilities": name,
                "brier": block["brier"],
                "ece": block["ece"],
                "intercept (95% CI)": with_ci(block["intercept"], block.get("intercept_ci")),
                "slope (95% CI)": with_ci(block["slope"], block.get("slope_ci")),
            }
        )
    return rows


def baseline_rows(metrics: dict, held_out: str) -> list[dict]:
    """Each baseline's AUC per split and the paired DeLong test against the run on
    ``held_out``, its p-value raw and Holm-adjusted over the baselines tested."""
    entries = metrics["baselines"]
    tested = [name for name, e in entries.items() if "delong_image_vs_baseline" in e]
    adjusted = dict(
        zip(
            tested,
            holm_adjust([entries[n]["delong_image_vs_baseline"]["p_value"] for n in tested]),
            strict=True,
        )
    )
    rows = []
    for name, entry in entries.items():
        row = {"model": f"{name} baseline"}
        for part in ("validation", held_out):
            if part in entry:
                row[f"{part} AUC (95% CI)"] = fmt_ci(entry[part]["auc"])
        if name in adjusted:
            d = entry["delong_image_vs_baseline"]
            row["run - baseline (95% CI)"] = (
                f"{d['difference']:+.3f} ({d['ci_low']:+.3f} to {d['ci_high']:+.3f})"
            )
            row["p (DeLong)"] = f"{d['p_value']:.3f}"
            row[f"p (Holm, {len(tested)} tests)"] = f"{adjusted[name]:.3f}"
        rows.append(row)
    return rows
