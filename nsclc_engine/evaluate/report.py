"""The HTML reports of a run: one self-contained page each (figures embedded, opens offline)."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from nsclc_engine.cohort.build import load_cleaning_report
from nsclc_engine.evaluate import figures
from nsclc_engine.evaluate.baselines import in_sample
from nsclc_engine.evaluate.multiplicity import comparisons_note, holm_adjust
from nsclc_engine.evaluate.report_tables import (
    PART_ORDER,
    SURVIVAL_READING,
    baseline_rows,
    calibration_rows,
    fmt_ci,
    report_decision_curves,
    sample_size_answer,
    sample_size_table,
    split_reading,
    tripod_table,
)
from nsclc_engine.runs import read_history, resolved_cohort
from nsclc_engine.stats.calibration import probability_histograms
from nsclc_engine.stats.metrics import metrics_at_threshold, threshold_sweep


def _embedder(height: str):
    """``figure(fig) -> html`` for one report: plotly.js inline once, in the first figure."""
    first = [True]

    def figure(fig) -> str:
        out = fig.to_html(
            full_html=False, include_plotlyjs="inline" if first[0] else False, default_height=height
        )
        first[0] = False
        return out

    return figure


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(
        index=False, border=0, classes="table", na_rep="-", float_format=lambda v: f"{v:.3f}"
    )


def _yardstick_section(yardstick: dict, metric: str) -> str:
    rows = [
        {
            "split": part,
            "n": block["n"],
            f"true risk {metric}": block["eta"],
            f"image part {metric}": block["eta_image"],
        }
        for part, block in yardstick["splits"].items()
    ]
    return (
        f"<h2>Best achievable on these patients</h2><p>Synthetic cohort: the {metric} of the "
        "true risk score and of its image part (all an image-only model can reach) on exactly "
        "the patients of each split.</p>" + _table(pd.DataFrame(rows).round(3))
    )


def _survival_models_section(models: dict) -> str:
    """HTML: the C-index of image / clinical / volume / fusion per split, their paired test
    differences, time-dependent AUC per fold and the fusion weights."""

    rows = [
        {
            "model": name,
            "what": models["description"][name],
            **{
                f"{part} C (95% CI)": fmt_ci(v, "c_index") + ("*" if in_sample(name, part) else "")
                for part, v in per_split.items()
            },
        }
        for name, per_split in models["c_index"].items()
    ]
    parts = ["<h2>Image vs clinical vs volume vs fusion (same patients, same split)</h2>"]
    parts.append(_table(pd.DataFrame(rows)))
    parts.append(
        "<p>* optimistic: fitted on these patients (every model on train; the fusion weights "
        "and the image model's best epoch on validation). Compare models on test.</p>"
    )
    comparisons = models.get("comparisons", [])
    adjusted = holm_adjust([c["p_value"] for c in comparisons])
    differences = [
        {
            "comparison": f"{c['a']} - {c['b']}",
            "C difference (95% CI)": f"{c['difference']:+.3f} ({c['ci_low']:+.3f} to "
            f"{c['ci_high']:+.3f})",
            "bootstrap p": f"{c['p_value']:.3f}",
            f"p (Holm, {len(comparisons)} tests)": f"{p:.3f}",
        }
        for c, p in zip(comparisons, adjusted, strict=True)
    ]
    if differences:
        parts.append(
            "<h3>Paired differences on test</h3>"
            + _table(pd.DataFrame(differences))
            + f"<p>{html.escape(comparisons_note(len(differences), 'paired comparisons'))}</p>"
        )
    timed = []
    for entry in models["folds"]:
        for name in models["c_index"]:
            values = entry.get(name, {})
            if "time_dependent_auc" in values:
                timed.append(
                    {
                        "fold": entry["fold"],
                        "model": name,
                        "Uno C": round(values["uno_c_index"], 3),
                        **{
                            f"AUC({k})": round(v, 3)
                            for k, v in values["time_dependent_auc"].items()
                        },
                        "IBS": round(values["integrated_brier_score"], 3),
                    }
                )
    if timed:
        parts.append("<h3>Time-dependent metrics on test</h3>" + _table(pd.DataFrame(timed)))
    weights = models.get("fusion_coefficients", [])
    if weights:
        parts.append(
            "<p>Fusion weights per standardised risk score, fitted on validation: "
            + "; ".join(
                f"fold {w['fold']}: "
                + ", ".join(f"{k} {v:+.2f}" for k, v in w.items() if k != "fold")
                for w in weights
            )
            + "</p>"
        )
    return "\n".join(parts)


def _baselines_section(metrics: dict, held_out: str) -> str:
    rows = baseline_rows(metrics, held_out)
    tested = sum("delong_image_vs_baseline" in e for e in metrics["baselines"].values())
    where = (
        "fitted out of fold on exactly the imported patients"
        if metrics.get("kind") == "imported"
        else "on the same splits"
    )
    return (
        f"<h2>Baselines {where}</h2>"
        + _table(pd.DataFrame(rows))
        + f"<p>{html.escape(comparisons_note(tested, 'DeLong tests'))}</p>"
    )


def _imported_section(metrics: dict) -> str:
    """Where an imported run's predictions came from and which rows were left out."""
    rows = [
        {
            "reason": entry["meaning"],
            "rows": entry["count"],
            "examples": ", ".join(entry["examples"]),
        }
        for entry in metrics.get("excluded", {}).values()
    ]
    text = (
        f"<h2>Imported predictions</h2><p>Score: <b>{html.escape(metrics['score'])}</b>, read as "
        f"the probability of {html.escape(metrics['positive_class'])}. {metrics['n_used']} of "
        f"{metrics['n_rows']} rows used; the imported patients are an external test set.</p>"
    )
    return text + (_table(pd.DataFrame(rows)) if rows else "<p>No row was left out.</p>")


def render_report(
    run_dir: Path,
    run_config: dict,
    metrics: dict,
    results: dict,
    predictions: pd.DataFrame,
    baselines: dict,
) -> str:
    """One HTML page with every figure embedded and plotly.js inline (opens offline)."""
    figure = _embedder("420px")
    held_out = metrics.get("held_out", "test")
    sizes = sample_size_table(predictions)
    outcome = f"{metrics['label']}: {metrics['positive_class']}"
    sections = _setup_sections(run_dir, run_config, metrics, sizes, outcome, figure)
    sections += _metrics_sections(metrics, held_out)
    test = predictions[predictions.split == held_out]
    if len(test) and test.y_true.nunique() == 2:
        sections += _held_out_sections(metrics, results, test, baselines, held_out, figure)
    if "baselines" in metrics:
        sections.append(_baselines_section(metrics, held_out))
    sections.append(
        "<h2>TRIPOD+AI items covered</h2>"
        + _table(tripod_table(sample_size_answer(sizes, outcome)))
    )
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        ".table{border-collapse:collapse;font-size:0.9em}.table td,.table th{padding:4px 8px;"
        "border-bottom:1px solid #ddd;text-align:left}"
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Evaluation report "
        f"{html.escape(run_dir.name)}</title><style>{style}</style></head><body>"
        f"<h1>Evaluation report: {html.escape(run_dir.name)}</h1>"
        + "\n".join(sections)
        + "</body></html>"
    )


def _thresholds_text(metrics: dict) -> str:
    return ", ".join(f"{t['threshold']:.3f}" for t in metrics["thresholds"])


def _setup_sections(
    run_dir: Path, run_config: dict, metrics: dict, sizes: pd.DataFrame, outcome: str, figure
) -> list[str]:
    """What was run and on whom: the run, its label and rules; an import's source; the
    cohort and its exclusions; the sample size; the training curves."""
    sections = []
    setup, source = metrics["evaluate_config"], metrics.get("threshold_source")
    if source:
        how = f"{html.escape(source['text'])}."
    else:
        how = (
            f"preset {html.escape(str(run_config.get('preset')))}; threshold rule "
            f"{html.escape(setup['threshold_rule'])} fitted on validation; recalibration "
            f"{html.escape(setup['recalibration'])} fitted on validation."
        )
    sections.append(
        f"<p>Run <b>{html.escape(run_dir.name)}</b>; label "
        f"<b>{html.escape(str(metrics['label']))}</b> ({html.escape(metrics['positive_class'])}); "
        f"{'<b>labels shuffled (negative control)</b>; ' if metrics['shuffled_labels'] else ''}"
        f"{how}</p>"
    )
    if metrics.get("kind") == "imported":
        sections.append(_imported_section(metrics))
    cohort_dir = resolved_cohort(run_config)
    if cohort_dir and (cohort_dir / "cleaning_report.json").exists():
        report = load_cleaning_report(cohort_dir)
        summary = {k: v for k, v in report.get("summary", {}).items() if not isinstance(v, dict)}
        sections.append("<h2>Cohort</h2>" + _table(pd.DataFrame([summary])))
        exclusions = pd.DataFrame(report.get("exclusions", []))
        if len(exclusions):
            sections.append("<h3>Excluded patients</h3>" + _table(exclusions))
    sections.append(
        f"<h2>Sample size</h2><p>Patients and events (patients with the outcome, "
        f"{html.escape(outcome)}) per split, each patient counted once.</p>" + _table(sizes)
    )
    history = read_history(run_dir)
    if history:
        sections.append("<h2>Training</h2>" + figure(figures.training_curves_figure(history)))
    return sections


def _metrics_sections(metrics: dict, held_out: str) -> list[str]:
    """The metrics of every split at 0.5 and at the threshold in force, how to read them,
    the warnings, the yardstick and the folds."""
    setup, source = metrics["evaluate_config"], metrics.get("threshold_source")
    rows = []
    for part, v in sorted(
        metrics["splits"].items(),
        key=lambda item: PART_ORDER.index(item[0]) if item[0] in PART_ORDER else 9,
    ):
        row = {
            "split": part,
            "how to read": split_reading(part),
            "AUC (95% CI)": fmt_ci(v["auc"], "auc"),
            "AP (95% CI)": fmt_ci(v["average_precision"]),
            "Brier (95% CI)": fmt_ci(v["brier"]),
        }
        for where in ("at_0.5", "at_threshold"):
            for key in ("sensitivity", "specificity", "f1", "accuracy"):
                low, high = v[where]["ci"][key]
                row[f"{key} {where.replace('at_', '@')}"] = (
                    f"{v[where][key]:.3f} ({low:.3f}-{high:.3f})"
                )
        rows.append(row)
    chosen = (
        html.escape(source["text"])
        if source
        else f"the {html.escape(setup['threshold_rule'])} threshold fitted on validation"
    )
    sections = [
        f"<h2>Discrimination and metrics at thresholds</h2><p>@0.5: the conventional cut-off; "
        f"@threshold ({_thresholds_text(metrics)}): {chosen}, applied unchanged. Patient-level "
        f"bootstrap, {setup['bootstrap_resamples']} resamples.</p>" + _table(pd.DataFrame(rows))
    ]
    if set(metrics["splits"]) & {"train", "validation"}:
        sections.append(
            "<p>Train figures are in-sample (the model was fitted on those patients). "
            "Validation figures are optimistic: the best epoch was chosen on them, and the "
            "threshold and recalibration were fitted on them. Judge the model on "
            f"{html.escape(held_out)} only.</p>"
        )
    if metrics.get("augmentation_warning"):
        sections.append(f"<p><b>Warning:</b> {html.escape(metrics['augmentation_warning'])}</p>")
    for warning in metrics.get("warnings", []):
        sections.append(f"<p><b>Warning:</b> {html.escape(warning)}</p>")
    if "best_achievable" in metrics:
        sections.append(_yardstick_section(metrics["best_achievable"], "AUC"))
    if "folds" in metrics:
        summary = metrics["folds"]["summary"]
        sections.append(
            "<h3>Cross-validation folds (test part of each fold)</h3>"
            + _table(pd.DataFrame(metrics["folds"]["per_fold"]))
            + "<p>"
            + ", ".join(f"{k} {v['mean']:.3f} ± {v['sd']:.3f}" for k, v in summary.items())
            + "</p>"
        )
    return sections


def _curves(test: pd.DataFrame, baselines: dict, held_out: str, model: str) -> tuple[list, list]:
    """The ROC and precision-recall curves of the model and of each baseline on the held-out
    part."""
    sweep = threshold_sweep(test.y_true, test.y_prob)
    fpr, tpr = sweep.roc_curve()
    recall, precision = sweep.pr_curve()
    roc_curves = [{"name": model, "fpr": fpr, "tpr": tpr, "auc": sweep.roc_auc()}]
    pr_curves = [
        {"name": model, "recall": recall, "precision": precision, "ap": sweep.average_precision()}
    ]
    for name, frame in baselines.items():
        rows = frame[frame.split == held_out]
        if rows.y_true.nunique() == 2:
            b = threshold_sweep(rows.y_true, rows.y_prob)
            bf, bt = b.roc_curve()
            br, bp = b.pr_curve()
            roc_curves.append(
                {"name": f"{name} baseline", "fpr": bf, "tpr": bt, "auc": b.roc_auc()}
            )
            pr_curves.append(
                {
                    "name": f"{name} baseline",
                    "recall": br,
                    "precision": bp,
                    "ap": b.average_precision(),
                }
            )
    return roc_curves, pr_curves


def _held_out_sections(
    metrics: dict, results: dict, test: pd.DataFrame, baselines: dict, held_out: str, figure
) -> list[str]:
    """The held-out part: confusion matrices at 0.5 and at the threshold in force, ROC and
    PR with the baselines, the probabilities, calibration and clinical utility."""
    setup, thresholds = metrics["evaluate_config"], _thresholds_text(metrics)
    calls = results["calls"][test.index]
    at_half = metrics["splits"][held_out]["at_0.5"]
    at_t = metrics["splits"][held_out]["at_threshold"]
    points = [
        {"name": f"{held_out} @0.5", "fpr": 1 - at_half["specificity"]}
        | {"tpr": at_half["sensitivity"], "recall": at_half["sensitivity"]}
        | {"precision": at_half["precision"]},
        {"name": f"{held_out} @threshold in force", "fpr": 1 - at_t["specificity"]}
        | {"tpr": at_t["sensitivity"], "recall": at_t["sensitivity"]}
        | {"precision": at_t["precision"]},
    ]
    model = {"imported": "imported model", "external": "frozen model"}.get(
        metrics.get("kind", ""), "image model"
    )
    roc_curves, pr_curves = _curves(test, baselines, held_out, model)
    title = held_out.capitalize()
    at_t_plot = metrics_at_threshold(test.y_true, calls.astype(float), 0.5)
    single = metrics["thresholds"][0]["threshold"] if len(metrics["thresholds"]) == 1 else None
    sections = [
        f"<h2>{title} set</h2>",
        figure(figures.confusion_matrix_figure(at_half, title=f"{title}, threshold 0.5")),
        figure(
            figures.confusion_matrix_figure(
                at_t_plot, title=f"{title}, threshold in force ({thresholds})"
            )
        ),
        figure(figures.roc_figure(roc_curves, points)),
        figure(figures.pr_figure(pr_curves, points, prevalence=float(test.y_true.mean()))),
        figure(
            figures.probability_histogram_figure(
                probability_histograms(test.y_true, test.y_prob), single
            )
        ),
    ]
    calibration = results["calibration"]["splits"][held_out]
    sections.append(f"<h2>Calibration ({held_out})</h2>")
    sections.append(
        _table(pd.DataFrame(calibration_rows(calibration)))
        + "<p>Intercept: calibration-in-the-large (0 ideal); slope: 1 ideal, below 1 "
        "predictions too extreme. 95% CIs as computed at evaluation.</p>"
    )
    warnings = [
        r.get("warning") for r in results["calibration"]["recalibrators"] if r.get("warning")
    ]
    if warnings:
        sections.append("<p><b>Note:</b> " + html.escape(warnings[0]) + "</p>")
    recalibrated = f"recalibrated ({setup['recalibration']})"
    sections.append(
        figure(
            figures.reliability_figure(
                {
                    "raw": calibration["raw"]["curve"],
                    recalibrated: calibration["recalibrated"]["curve"],
                }
            )
        )
    )
    curves = report_decision_curves(
        test,
        results["recalibrated"],
        results["calibration"]["recalibrators"],
        baselines,
        held_out,
        model,
    )
    sections.append(
        f"<h2>Clinical utility ({held_out})</h2><p>Net benefit of the recalibrated "
        "probabilities (each fold's recalibrator fitted on its validation patients, applied "
        "unchanged; the same probabilities as the Calibration page), not the raw ones.</p>"
        + figure(figures.decision_curve_figure(curves))
    )
    return sections


def _ci(block: dict, key: str) -> str:
    interval = block.get(f"{key}_ci")
    value = f"{block[key]:.3f}"
    return value + (f" ({interval[0]:.3f}-{interval[1]:.3f})" if interval else "")


def _horizons_section(horizons: dict, figure) -> str:
    """Survival at the horizons: per baseline and horizon, time-dependent AUC, the smoothed
    calibration (ICI, E50, E90), calibration-in-the-large and D-calibration; the threshold on
    P(death) fitted on validation and the held-out calls at it; the calibration figures."""
    part = horizons.get("held_out", "test")
    if "note" in horizons:
        return (
            "<h2>Survival at the horizons</h2><p>Not computed: "
            f"{html.escape(str(horizons['note']))}</p>"
        )
    rows = []
    for kind in horizons.get("baselines", {}):
        for horizon in horizons["horizons_days"]:
            at = horizons.get(kind, {}).get(f"{horizon:g}d")
            if at is None:
                continue
            large = at.get("in_the_large")
            rows.append(
                {
                    "baseline": kind,
                    "horizon (days)": f"{horizon:g}",
                    "deaths / censored before": (
                        f"{at['n_deaths_by_horizon']} / {at['n_censored_before_horizon']}"
                    ),
                    "time-dependent AUC": at.get("td_auc"),
                    "ICI (95% CI)": _ci(at["smoothed"], "ici") if "smoothed" in at else "-",
                    "E50": at["smoothed"]["e50"] if "smoothed" in at else None,
                    "E90": at["smoothed"]["e90"] if "smoothed" in at else None,
                    "observed - predicted (95% CI)": _ci(large, "difference") if large else "-",
                    "D-calibration p": horizons[kind].get("d_calibration", {}).get("p_value"),
                }
            )
    text = [
        f"<h2>Survival at the horizons ({html.escape(part)})</h2>",
        "<p>Each patient's survival curve is the model's risk on a baseline hazard fitted on "
        "patients the model did not learn from, never on the part scored here: "
        + "; ".join(f"<b>{k}</b>: {html.escape(v)}" for k, v in horizons["baselines"].items())
        + ". ICI is the mean distance between predicted and observed probability of death by "
        "the horizon (0 = perfect), E50 and E90 its median and 90th percentile; observed - "
        "predicted compares the Kaplan-Meier share who died with the mean prediction; a "
        "D-calibration p below 0.05 says the survival curves do not match the follow-up.</p>",
        _table(pd.DataFrame(rows)) if rows else "",
    ]
    threshold = horizons.get("threshold", {})
    held = threshold.get("held_out")
    if held:
        counts = held["counts"]
        fitted = ", ".join(f"{e['threshold']:.3f}" for e in threshold["thresholds"])
        text.append(
            f"<p>Threshold on the {html.escape(threshold['scale'])} "
            f"({html.escape(threshold['rule'])}, from {html.escape(threshold['fitted_on'])}): "
            f"{fitted}. On {html.escape(part)}: {counts['tp']} of the patients who "
            f"died by then called high risk, {counts['fn']} not; {counts['tn']} of those alive "
            f"after it called low risk, {counts['fp']} not; {counts['censored_pos']} + "
            f"{counts['censored_neg']} censored before it (neither). Sensitivity "
            f"{_ci(held, 'sensitivity')}, specificity {_ci(held, 'specificity')} "
            "(cumulative/dynamic, inverse-probability-of-censoring weights).</p>"
        )
    last = horizons["horizons_days"][-1]
    raw = horizons.get("raw", {})
    if f"{last:g}d" in raw:
        text.append(figure(figures.survival_calibration_figure(raw[f"{last:g}d"], last)))
    if "d_calibration" in raw:
        text.append(figure(figures.d_calibration_figure(raw["d_calibration"])))
    return "\n".join(text)


def render_survival_report(run_id: str, metrics: dict) -> str:
    """The survival run's page: concordance per split, the yardstick, the image / clinical /
    volume / fusion comparison, per-fold time-dependent metrics and Kaplan-Meier curves."""
    rows = [
        {
            "split": part,
            "how to read": SURVIVAL_READING.get(part, split_reading(part)),
            "patients": v["n"],
            "events": v["n_events"],
            "Harrell C (95% CI)": fmt_ci(v["c_index"], "c_index"),
        }
        for part, v in metrics["splits"].items()
    ]
    sections = []
    if metrics.get("shuffled_labels"):
        sections.append(
            "<p><b>Labels shuffled (negative control):</b> the outcomes were shuffled across "
            "patients before training; a C-index near 0.5 is the expected result.</p>"
        )
    for warning in metrics.get("warnings", []):
        sections.append(f"<p><b>Warning:</b> {html.escape(str(warning))}</p>")
    if metrics.get("augmentation_warning"):
        sections.append(f"<p><b>Warning:</b> {html.escape(metrics['augmentation_warning'])}</p>")
    total = sum(v["n"] for v in metrics["splits"].values())
    events = sum(v["n_events"] for v in metrics["splits"].values())
    sections.append(
        "<h2>Sample size and concordance</h2><p>Sample size (TRIPOD): "
        + "; ".join(f"{r['split']} {r['patients']} patients, {r['events']} events" for r in rows)
        + (f"; {total} patients, {events} events (deaths) in all." if len(rows) > 1 else ".")
        + "</p>"
        + _table(pd.DataFrame(rows))
    )
    if "best_achievable" in metrics:
        sections.append(_yardstick_section(metrics["best_achievable"], "C-index"))
    figure = _embedder("480px")
    if metrics.get("horizons"):
        sections.append(_horizons_section(metrics["horizons"], figure))
    if "models" in metrics:
        sections.append(_survival_models_section(metrics["models"]))
    for entry in metrics["folds"]:
        if "uno_c_index" in entry:
            aucs = ", ".join(f"{k}: {v:.3f}" for k, v in entry["time_dependent_auc"].items())
            sections.append(
                f"<h3>Fold {entry['fold']} (test)</h3><p>Uno's C {entry['uno_c_index']:.3f}; "
                f"time-dependent AUC {aucs}; integrated Brier score "
                f"{entry['integrated_brier_score']:.3f}</p>"
            )
        if entry.get("risk_groups"):
            groups = entry["risk_groups"]
            sections.append(
                f"<p>Fold {entry['fold']}, test: risk groups cut at the median of that fold's "
                "validation risks, frozen before test was read.</p>"
                + figure(figures.kaplan_meier_figure(groups["groups"], groups["logrank"]))
            )
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Survival report "
        f"{html.escape(run_id)}</title></head><body><h1>Survival report: "
        f"{html.escape(run_id)}</h1>{body}</body></html>"
    )
