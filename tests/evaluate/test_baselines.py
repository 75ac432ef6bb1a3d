import numpy as np
import pandas as pd
import pytest

from nsclc_engine.cohort.clinical import add_labels, read_clinical_csv
from nsclc_engine.cohort.splits import SplitConfig, stratified_split
from nsclc_engine.evaluate.baselines import fit_baseline
from nsclc_engine.stats.metrics import auc_score, bootstrap_metrics


def toy_table(n=120, seed=0):
    rng = np.random.default_rng(seed)
    volume = np.exp(rng.normal(3, 1, n))
    y = (rng.random(n) < 1 / (1 + np.exp(-(np.log(volume) - 3)))).astype(int)
    return pd.DataFrame(
        {
            "patient_id": [f"P{i:03d}" for i in range(n)],
            "age_years": np.where(rng.random(n) < 0.1, np.nan, rng.normal(68, 10, n)),
            "t_stage": pd.array(rng.integers(1, 5, n), dtype="Int64"),
            "n_stage": pd.array(rng.integers(0, 4, n), dtype="Int64"),
            "m_stage": pd.array(np.zeros(n, int), dtype="Int64"),
            "overall_stage": rng.choice(["I", "II", "IIIa", "IIIb"], n),
            "histology": np.where(rng.random(n) < 0.1, None, rng.choice(["adeno", "squamous"], n)),
            "gender": rng.choice(["male", "female"], n),
            "gtv_volume_cm3": volume,
            "label": y,
        }
    )


def test_baselines_fit_on_training_patients_only():
    table = toy_table()
    split = stratified_split(table.patient_id, table.label, SplitConfig(seed=1))
    for kind in ("clinical", "volume"):
        predictions = fit_baseline(kind, table, split, "label")
        assert sorted(predictions.patient_id) == sorted(table.patient_id)
        # changing validation/test labels and features changes nothing about the fitted model
        changed = table.copy()
        held_out = changed.patient_id.isin(split["validation"] + split["test"])
        changed.loc[held_out, "label"] = 1 - changed.loc[held_out, "label"]
        changed.loc[held_out, "age_years"] = 200.0
        again = fit_baseline(kind, changed, split, "label")
        train = predictions.split == "train"
        np.testing.assert_allclose(again.y_prob[train], predictions.y_prob[train])
    volume = fit_baseline("volume", table, split, "label")
    assert auc_score(volume.y_true, volume.y_prob) > 0.7  # the toy label depends on volume


def test_volume_baseline_needs_a_cohort_table():
    with pytest.raises(ValueError, match="gtv_volume_cm3"):
        fit_baseline("volume", toy_table().drop(columns="gtv_volume_cm3"), {"train": []}, "label")


def test_clinical_baseline_on_the_real_lung1_table(lung1_clinical, capsys):
    """Real v3 CSV, os_2y, seeded 60/20/20 split: literature ~0.59-0.65 for clinical models."""
    table, _ = add_labels(read_clinical_csv(lung1_clinical))
    table = table[table.os_2y.notna()]
    split = stratified_split(table.patient_id, table.os_2y.astype(int), SplitConfig(seed=0))
    predictions = fit_baseline("clinical", table, split, "os_2y")
    results = {}
    for part in ("validation", "test"):
        frame = predictions[predictions.split == part]
        results[part] = bootstrap_metrics(frame.y_true, frame.y_prob, seed=0)["auc"]
        with capsys.disabled():
            auc = results[part]
            print(
                f"\nLung1 v3 clinical baseline os_2y {part}: n={len(frame)} AUC "
                f"{auc['value']:.3f} (95% CI {auc['ci_low']:.3f}-{auc['ci_high']:.3f})"
            )
    for auc in results.values():  # far from the literature would be a bug to explain
        assert 0.45 < auc["value"] < 0.80


def test_clinical_cox_baseline_on_the_real_lung1_table(lung1_clinical, capsys):
    """Real v3 CSV, overall survival, seeded 60/20/20 split (stratified on the event):
    literature C-index for clinical/TNM models on Lung1 ~0.55-0.60."""
    from nsclc_engine.evaluate.baselines import fit_cox_baseline
    from nsclc_engine.stats.survival import bootstrap_c_index

    table, _ = add_labels(read_clinical_csv(lung1_clinical))
    split = stratified_split(
        table.patient_id, table.deadstatus_event.astype(int), SplitConfig(seed=0)
    )
    predictions = fit_cox_baseline("clinical", table, split)
    results = {}
    for part in ("validation", "test"):
        frame = predictions[predictions.split == part]
        results[part] = bootstrap_c_index(frame.time_days, frame.event, frame.risk, seed=0)
        with capsys.disabled():
            c = results[part]
            print(
                f"\nLung1 v3 clinical Cox baseline {part}: n={len(frame)} C-index "
                f"{c['c_index']:.3f} (95% CI {c['ci_low']:.3f}-{c['ci_high']:.3f})"
            )
    for c in results.values():  # far from the literature would be a bug to explain
        assert 0.45 < c["c_index"] < 0.75


def survival_toy(n=300, seed=0):
    """Hazard from an image signal (seen only by the 'image model') and the GTV volume."""
    rng = np.random.default_rng(seed + 100)  # not toy_table's stream: independent signal
    table = toy_table(n, seed).drop(columns="label")
    signal = rng.normal(0, 1, n)
    eta = 0.8 * signal + 0.6 * (np.log(table.gtv_volume_cm3) - 3)
    event_time = 500 * rng.exponential(1, n) * np.exp(-eta)
    censor = rng.uniform(200, 3000, n)
    table["survival_time_days"] = np.minimum(event_time, censor).round() + 1
    table["deadstatus_event"] = (event_time <= censor).astype(int)
    image_risk = dict(zip(table.patient_id, signal + rng.normal(0, 0.5, n), strict=True))
    split = stratified_split(table.patient_id, table.deadstatus_event, SplitConfig(seed=2))
    return table, split, image_risk


def test_fusion_learns_from_validation_and_beats_each_part():
    from nsclc_engine.evaluate.baselines import fit_survival_models
    from nsclc_engine.stats.survival import harrell_c_index

    table, split, image_risk = survival_toy()
    models = fit_survival_models(table, split, image_risk)
    assert list(models.columns) == [
        "patient_id",
        "split",
        "time_days",
        "event",
        "image",
        "clinical",
        "volume",
        "fusion",
    ]
    weights = models.attrs["fusion_coefficients"]
    assert weights["image"] > 0.3 and weights["volume"] > 0.2  # both carry hazard
    test = models[models.split == "test"]
    c = {m: harrell_c_index(test.time_days, test.event, test[m]) for m in ("image", "volume")}
    fusion = harrell_c_index(test.time_days, test.event, test.fusion)
    assert fusion > max(c.values())
    # test patients are only scored: changing them changes neither the weights nor other scores
    changed = dict(image_risk)
    for patient in split["test"]:
        changed[patient] = 100.0
    again = fit_survival_models(table, split, changed)
    assert again.attrs["fusion_coefficients"] == weights
    kept = again.split != "test"
    np.testing.assert_allclose(again.fusion[kept], models.fusion[kept])
    with pytest.raises(ValueError, match="no image risk"):
        fit_survival_models(table, split, {p: 0.0 for p in split["train"]})
