"""The Studies page: a study's trials, its best, Optuna's own figures, start and stop."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from nsclc_engine.atomic import write_json
from nsclc_engine.dashboard.runs import blank_missing
from nsclc_engine.paths import shown_url
from nsclc_engine.tune.study import FIXED, TuneConfig, load_study, storage_url, study_table


def storage(artifacts: Path) -> str:
    """The studies the page shows: ``$NSCLC_TUNE_STORAGE`` (a shared PostgreSQL), else the
    embedded SQLite file under ``artifacts/studies/``."""
    return storage_url(TuneConfig(storage=shared_storage()), artifacts)


def shared_storage() -> str:
    """The shared storage workers started from the page use (empty: the embedded file)."""
    return os.environ.get("NSCLC_TUNE_STORAGE", "")


def study_names(url: str) -> list[str]:
    """The studies in ``url``; an unreachable database, or one without its driver, is a
    one-line ``ConnectionError`` naming the server (password hidden)."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return sorted(optuna.study.get_all_study_names(url))
    except (SQLAlchemyError, ImportError) as error:
        raise ConnectionError(
            f"study database {shown_url(url)} cannot be read ({type(error).__name__}): check "
            "$NSCLC_TUNE_STORAGE and that its server is up"
        ) from None


def load(url: str, name: str):
    """Study ``name``, its stale trials told from running ones (``tune.study.load_study``)."""
    return load_study(url, name)


def trials(study) -> pd.DataFrame:
    """The trials table (:func:`nsclc_engine.tune.study.study_table`)."""
    return study_table(study)


def trials_shown(table: pd.DataFrame) -> pd.DataFrame:
    """The trials table as the page shows it: numbers in their precision, empty cells blank
    (a trial not yet scored, a trial no one retried)."""
    formats = {"validation": "{:.4f}", "seconds": "{:.1f}", "epochs": "{:.0f}"}
    formats |= {"pruned at step": "{:.0f}", "retry of": "{:.0f}", "retried as": "{:.0f}"}
    formats |= {column: "{:.3g}" for column in table.columns if column.startswith("param ")}
    return blank_missing(table, formats)


def local_runs(table: pd.DataFrame, artifacts: Path) -> list[str]:
    """The trials' runs that are in this artifacts folder (a shared study's other machines
    keep theirs)."""
    from nsclc_engine.runs import run_dir

    if table.empty:
        return []
    return [r for r in table.run_id.dropna() if run_dir(r, artifacts).is_dir()]


def summary(study, url: str) -> dict:
    """Counts by state, the best trial, its test score if scored, the settings, the storage."""
    table = study_table(study)
    counts = table.state.value_counts().to_dict() if not table.empty else {}
    complete = table[table.state == "complete"]
    best = None
    if not complete.empty:
        row = complete.loc[complete.validation.idxmax()]
        best = {"trial": int(row.trial), "validation": float(row.validation), "run_id": row.run_id}
    return {
        "storage": shown_url(url),
        "counts": counts,
        "best": best,
        "test": study.user_attrs.get("best_test"),
        "settings": study.user_attrs.get("settings") or {},
        "stop_requested": bool(study.user_attrs.get("stop_requested")),
        "completed": len(complete),
        "lost": lost_worker_lines(table, study.user_attrs.get("heartbeat")),
    }


def lost_worker_lines(table: pd.DataFrame, heartbeat: int | None) -> list[str]:
    """What the page says of lost workers: trials still shown running whose worker is
    silent, and trials failed with their worker and the retry that runs their settings."""
    if table.empty:
        return []
    lines = []
    stale = table[table.state == "stale"]
    if not stale.empty:
        numbers = ", ".join(str(n) for n in stale.trial)
        lines.append(
            f"Trial {numbers}: its worker has been silent for over {2 * (heartbeat or 60)} s "
            "(twice the study's heartbeat), so it is taken as lost; the next worker to start "
            "or to finish a trial fails it and runs its settings again."
        )
    for row in table[table["retried as"].notna()].to_dict("records"):
        retry = table[table.trial == int(row["retried as"])].iloc[0]
        lines.append(
            f"Trial {row['trial']} failed when its worker ({row['worker'] or 'unknown'}) fell "
            f"silent; retried once as trial {int(retry.trial)} ({retry.state})."
        )
    return lines


def figures(study) -> dict:
    """Optuna's plotly figures: optimisation history, parallel coordinates and (with two
    completed trials or more, and a parameter that varied) parameter importances."""
    from optuna import visualization

    result = {
        "optimisation history": visualization.plot_optimization_history(study),
        "parallel coordinates": visualization.plot_parallel_coordinate(study),
    }
    try:
        result["parameter importances"] = visualization.plot_param_importances(study)
    except (ValueError, RuntimeError):  # too few completed trials to rank parameters
        pass
    return result


def confirmation_config(
    name: str, url: str, settings: dict, artifacts: str | os.PathLike, n_seeds: int
) -> TuneConfig:
    """A worker that runs no trial and confirms study ``name``'s best over ``n_seeds`` new
    seeds, with the study's own settings (its space kept beside its log, where a worker can
    read it)."""
    space = Path(artifacts) / "studies" / f"{name}.space.json"
    write_json(space, settings.get("space") or {})
    fixed = {key: settings[key] for key in FIXED if key in settings and key != "space"}
    return TuneConfig(
        trials=0,
        study=name,
        storage=url,
        space=str(space),
        confirm_seeds=n_seeds,
        evaluate_best=int(fixed.get("folds", 0)) < 2,
        **fixed,
    )


def confirmation_report(artifacts: str | os.PathLike, name: str) -> dict | None:
    """The confirmation of study ``name``'s best, where one has finished."""
    from nsclc_engine.runs import read_json
    from nsclc_engine.tune.confirm import confirmation_name

    return read_json(Path(artifacts) / "studies" / f"{confirmation_name(name)}.json")
