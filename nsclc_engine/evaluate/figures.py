"""Plotly figure builders over the engine's results (no Streamlit): the dashboard and the HTML
report draw the same figures from the same numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from nsclc_engine.task_spec import TASKS

CLASS_NAMES = ("negative (0)", "positive (1)")
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 50, "b": 50}}


def confusion_matrix_figure(
    metrics: Mapping, class_names: Sequence[str] = CLASS_NAMES, title: str = ""
) -> go.Figure:
    """2x2 heatmap (rows = true class, columns = predicted), counts and row percentages."""
    counts = np.array([[metrics["tn"], metrics["fp"]], [metrics["fn"], metrics["tp"]]])
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts, dtype=float), where=rows > 0)
    text = [
        [f"{c}<br>{s:.0%} of row" for c, s in zip(r, q, strict=True)]
        for r, q in zip(counts, share, strict=True)
    ]
    predicted = [f"predicted {name}" for name in class_names]
    actual = [f"true {name}" for name in class_names]
    figure = go.Figure(
        go.Heatmap(
            z=share,
            x=predicted,
            y=actual,
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            zmax=1,
            showscale=False,
        )
    )
    threshold = metrics.get("threshold")
    heading = title or (f"Confusion matrix at {threshold:.3f}" if threshold is not None else "")
    figure.update_layout(title=heading, yaxis={"autorange": "reversed"}, **LAYOUT)
    return figure


def _curves_figure(
    curves: Sequence[Mapping],
    points: Sequence[Mapping],
    keys: tuple[str, str, str],
    reference: tuple[list, list, str],
    title: str,
    axis_titles: tuple[str, str],
    shape: str = "linear",
) -> go.Figure:
    """Curves named with their summary (``keys`` = x key, y key, summary key), a grey dotted
    reference line, and black crosses at the operating ``points``."""
    x, y, summary = keys
    figure = go.Figure()
    if reference[0]:
        figure.add_trace(
            go.Scatter(
                x=reference[0],
                y=reference[1],
                mode="lines",
                name=reference[2],
                line={"dash": "dot", "color": "grey"},
            )
        )
    for i, curve in enumerate(curves):
        figure.add_trace(
            go.Scatter(
                x=curve[x],
                y=curve[y],
                mode="lines",
                name=f"{curve['name']} ({summary.upper()} {curve[summary]:.3f})",
                line={"color": COLOURS[i % len(COLOURS)], "shape": shape},
            )
        )
    for point in points:
        figure.add_trace(
            go.Scatter(
                x=[point[x]],
                y=[point[y]],
                mode="markers",
                name=point["name"],
                marker={"size": 11, "symbol": "x", "color": "black"},
            )
        )
    figure.update_layout(
        title=title,
        xaxis={"title": axis_titles[0], "range": [0, 1]},
        yaxis={"title": axis_titles[1], "range": [0, 1.02]},
        **LAYOUT,
    )
    return figure


def roc_figure(curves: Sequence[Mapping], points: Sequence[Mapping] = ()) -> go.Figure:
    """``curves``: dicts with name, fpr, tpr, auc; ``points``: name, fpr, tpr (operating points).
    Straight segments: tied scores make diagonal steps."""
    return _curves_figure(
        curves,
        points,
        ("fpr", "tpr", "auc"),
        ([0, 1], [0, 1], "chance"),
        "ROC curve",
        ("1 - specificity", "sensitivity"),
    )


def pr_figure(
    curves: Sequence[Mapping], points: Sequence[Mapping] = (), prevalence: float | None = None
) -> go.Figure:
    """``curves``: name, recall, precision, ap; ``points``: name, recall, precision."""
    reference = ([], [], "")
    if prevalence is not None:
        reference = ([0, 1], [prevalence] * 2, f"prevalence {prevalence:.2f}")
    return _curves_figure(
        curves,
        points,
        ("recall", "precision", "ap"),
        reference,
        "Precision-recall curve",
        ("recall (sensitivity)", "precision (PPV)"),
        shape="vh",
    )


def probability_histogram_figure(
    histograms: Mapping, threshold: float | None = None, class_names: Sequence[str] = CLASS_NAMES
) -> go.Figure:
    """Class-conditional histograms of the predicted probability with the threshold line."""
    edges = np.asarray(histograms["edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    figure = go.Figure()
    for label in (0, 1):
        figure.add_trace(
            go.Bar(
                x=centres,
                y=histograms[f"count_{label}"],
                width=np.diff(edges),
                name=f"true {class_names[label]}",
                marker_color=COLOURS[label],
                opacity=0.6,
            )
        )
    if threshold is not None:
        figure.add_vline(
            x=threshold,
            line={"color": "black", "dash": "dash"},
            annotation_text=f"threshold {threshold:.3f}",
        )
    figure.update_layout(
        barmode="overlay",
        title="Predicted probability by true class",
        xaxis={"title": "predicted probability of the positive class", "range": [0, 1]},
        yaxis={"title": "patients"},
        **LAYOUT,
    )
    return figure


def outcome_histogram_figure(
    edges: Sequence[float],
    counts: Mapping[str, Sequence[int]],
    threshold: float,
    horizon_days: float,
) -> go.Figure:
    """Histograms of predicted P(death by the horizon), one per outcome group (``counts``,
    at most three, over the bins ``edges``), with the threshold line."""
    edges = np.asarray(edges, dtype=float)
    figure = go.Figure()
    colours = (COLOURS[1], COLOURS[0], COLOURS[2])
    for colour, (name, values) in zip(colours, counts.items(), strict=False):
        figure.add_trace(
            go.Bar(
                x=(edges[:-1] + edges[1:]) / 2,
                y=values,
                width=edges[1] - edges[0],
                name=name,
                marker_color=colour,
                opacity=0.6,
            )
        )
    figure.add_vline(x=threshold, line={"color": "black", "dash": "dash"})
    figure.update_layout(
        barmode="overlay",
        title=f"Predicted P(death by day {horizon_days:g}) by outcome",
        xaxis={"title": "predicted probability of death", "range": [0, 1]},
        yaxis={"title": "patients"},
        **LAYOUT,
    )
    return figure


def reliability_figure(curves: Mapping[str, Mapping]) -> go.Figure:
    """Observed fraction (with Wilson 95 % CI) against mean predicted probability per bin."""
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            name="perfect calibration",
            line={"dash": "dot", "color": "grey"},
        )
    )
    for i, (name, curve) in enumerate(curves.items()):
        observed = np.asarray(curve["observed"])
        figure.add_trace(
            go.Scatter(
                x=curve["mean_predicted"],
                y=observed,
                mode="lines+markers",
                name=name,
                line={"color": COLOURS[i % len(COLOURS)]},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": np.asarray(curve["observed_ci_high"]) - observed,
                    "arrayminus": observed - np.asarray(curve["observed_ci_low"]),
                },
                customdata=curve["count"],
                hovertemplate="predicted %{x:.2f}<br>observed %{y:.2f}<br>n = %{customdata}",
            )
        )
    figure.update_layout(
        title="Reliability diagram",
        xaxis={"title": "mean predicted probability", "range": [0, 1]},
        yaxis={"title": "observed fraction positive", "range": [0, 1]},
        **LAYOUT,
    )
    return figure


def decision_curve_figure(curves: Mapping[str, Mapping]) -> go.Figure:
    """Net benefit of each model (``{name: decision_curve(...)}``), treat-all and treat-none."""
    figure = go.Figure()
    first = next(iter(curves.values()))
    figure.add_trace(
        go.Scatter(
            x=first["threshold"],
            y=first["treat_all"],
            mode="lines",
            name="treat all",
            line={"color": "grey"},
        )
    )
    figure.add_trace(
        go.Scatter(
            x=first["threshold"],
            y=first["treat_none"],
            mode="lines",
            name="treat none",
            line={"color": "black", "dash": "dot"},
        )
    )
    for i, (name, curve) in enumerate(curves.items()):
        figure.add_trace(
            go.Scatter(
                x=curve["threshold"],
                y=curve["model"],
                mode="lines",
                name=name,
                line={"color": COLOURS[i % len(COLOURS)]},
            )
        )
    low = min(-0.05, float(np.min(first["model"])) if len(first["model"]) else -0.05)
    figure.update_layout(
        title="Decision curve",
        xaxis={"title": "threshold probability", "range": [0, 1]},
        yaxis={
            "title": "net benefit",
            "range": [max(low, -0.25), max(0.05, float(np.max(first["treat_all"])) + 0.05)],
        },
        **LAYOUT,
    )
    return figure


def training_curves_figure(history: Sequence[Mapping]) -> go.Figure:
    """Train and validation loss and validation AUC (C-index for a survival run) per epoch,
    one line per fold."""
    from plotly.subplots import make_subplots

    spec = next(
        (s for s in TASKS.values() if any(s.validation_metric in line for line in history)),
        TASKS["classification"],
    )
    key, name = spec.validation_metric, spec.metric_name
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Loss", f"Validation {name}"))
    folds = sorted({line.get("fold", 0) for line in history})
    for i, fold in enumerate(folds):
        lines = [line for line in history if line.get("fold", 0) == fold]
        epochs = [line["epoch"] for line in lines]
        suffix = f" (fold {fold})" if len(folds) > 1 else ""
        colour = COLOURS[i % len(COLOURS)]
        figure.add_trace(
            go.Scatter(
                x=epochs,
                y=[line["train_loss"] for line in lines],
                name=f"train loss{suffix}",
                line={"color": colour},
            ),
            row=1,
            col=1,
        )
        figure.add_trace(
            go.Scatter(
                x=epochs,
                y=[line["val_loss"] for line in lines],
                name=f"validation loss{suffix}",
                line={"color": colour, "dash": "dash"},
            ),
            row=1,
            col=1,
        )
        figure.add_trace(
            go.Scatter(
                x=epochs,
                y=[line.get(key) for line in lines],
                name=f"validation {name}{suffix}",
                line={"color": colour, "dash": "dot"},
            ),
            row=1,
            col=2,
        )
    figure.update_xaxes(title_text="epoch")
    figure.update_layout(title="Training curves", **LAYOUT)
    return figure


def covariate_by_class_figure(
    values, labels, name: str, class_names: Sequence[str] = CLASS_NAMES
) -> go.Figure:
    """Box plots of one numeric covariate per class (missing values left out)."""
    values, labels = np.asarray(values, dtype=float), np.asarray(labels)
    figure = go.Figure()
    for label in (0, 1):
        chosen = values[(labels == label) & np.isfinite(values)]
        figure.add_trace(
            go.Box(
                y=chosen,
                name=f"{class_names[label]} (n={len(chosen)})",
                marker_color=COLOURS[label],
                boxpoints="all",
                jitter=0.3,
            )
        )
    figure.update_layout(title=name, showlegend=False, **LAYOUT)
    return figure


def kaplan_meier_figure(
    groups: Mapping[str, Mapping], logrank: Mapping | None = None, tick_days: Sequence[float] = ()
) -> go.Figure:
    """Kaplan-Meier step curves per group (``{name: kaplan_meier(...)}``) with the numbers at
    risk under the plot and the log-rank p-value in the title."""
    from plotly.subplots import make_subplots

    from nsclc_engine.stats.survival import at_risk_at

    end = max(float(np.max(km["time"])) for km in groups.values())
    ticks = np.asarray(tick_days if len(tick_days) else np.arange(0, end + 1, 365.0))
    figure = make_subplots(
        rows=2, cols=1, row_heights=[0.8, 0.2], shared_xaxes=True, vertical_spacing=0.05
    )
    for i, (name, km) in enumerate(groups.items()):
        colour = COLOURS[i % len(COLOURS)]
        figure.add_trace(
            go.Scatter(
                x=np.r_[0.0, km["time"]],
                y=np.r_[1.0, km["survival"]],
                mode="lines",
                line={"shape": "hv", "color": colour},
                name=name,
            ),
            row=1,
            col=1,
        )
        figure.add_trace(
            go.Scatter(
                x=ticks,
                y=[name] * len(ticks),
                mode="text",
                text=[str(v) for v in at_risk_at(km, ticks)],
                textfont={"color": colour},
                showlegend=False,
            ),
            row=2,
            col=1,
        )
    title = "Kaplan-Meier by risk group"
    if logrank:
        title += f" (log-rank p = {logrank['p_value']:.3g})"
    figure.update_yaxes(title_text="survival probability", range=[0, 1.02], row=1, col=1)
    figure.update_yaxes(title_text="at risk", row=2, col=1)
    figure.update_xaxes(title_text="days", row=2, col=1)
    figure.update_layout(title=title, **LAYOUT)
    return figure


def survival_calibration_figure(at: Mapping, horizon_days: float) -> go.Figure:
    """Predicted against observed probability of death by the horizon: the smoothed
    calibration curve (lifelines' CRC smoother) and the Kaplan-Meier observed share of each
    risk group (Greenwood 95 % CI) at its mean predicted probability; ``at`` one horizon's
    calibration block (``horizon_calibration``)."""
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            name="perfect calibration",
            line={"dash": "dot", "color": "grey"},
        )
    )
    if "smoothed" in at:
        smoothed = at["smoothed"]
        figure.add_trace(
            go.Scatter(
                x=smoothed["curve"]["predicted"],
                y=smoothed["curve"]["observed"],
                mode="lines",
                name=f"smoothed (ICI {smoothed['ici']:.3f})",
                line={"color": COLOURS[1]},
            )
        )
    groups = [g for g in at.get("groups", []) if g["observed"] is not None]
    if groups:
        observed = np.array([g["observed"] for g in groups])
        figure.add_trace(
            go.Scatter(
                x=[g["predicted"] for g in groups],
                y=observed,
                mode="markers",
                name="risk groups (Kaplan-Meier)",
                marker={"size": 10, "color": COLOURS[0]},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": np.array([g["observed_ci"][1] for g in groups]) - observed,
                    "arrayminus": observed - np.array([g["observed_ci"][0] for g in groups]),
                },
                customdata=[g["n"] for g in groups],
                hovertemplate="predicted %{x:.2f}<br>observed %{y:.2f}<br>n = %{customdata}",
            )
        )
    figure.update_layout(
        title=f"Probability of death by day {horizon_days:g}: predicted and observed",
        xaxis={"title": "predicted", "range": [0, 1]},
        yaxis={"title": "observed (Kaplan-Meier)", "range": [0, 1]},
        **LAYOUT,
    )
    return figure


def d_calibration_figure(d_calibration: Mapping) -> go.Figure:
    """D-calibration: patients per tenth of predicted survival at their own time (censored
    patients spread over the tenths below their survival at censoring) against the flat
    line a calibrated model gives."""
    edges = np.asarray(d_calibration["bins"])
    centres = (edges[:-1] + edges[1:]) / 2
    figure = go.Figure(
        go.Bar(
            x=centres,
            y=d_calibration["counts"],
            width=0.09,
            name="patients",
            marker={"color": COLOURS[0]},
        )
    )
    figure.add_hline(
        y=d_calibration["expected"],
        line={"dash": "dot", "color": "grey"},
        annotation_text="expected if calibrated",
    )
    figure.update_layout(
        title=f"D-calibration: chi-square p = {d_calibration['p_value']:.3f}",
        xaxis={"title": "predicted survival at the patient's own time", "range": [0, 1]},
        yaxis={"title": "patients"},
        **LAYOUT,
    )
    return figure
