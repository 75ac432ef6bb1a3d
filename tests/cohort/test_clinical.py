import pandas as pd
import pytest

from nsclc_engine.cohort.clinical import V3_COLUMNS, add_labels, label_counts, read_clinical_csv


def test_real_lung1_table_counts(lung1_clinical):
    table, unlabelled = add_labels(read_clinical_csv(lung1_clinical))
    assert len(table) == 422 and table.patient_id.is_unique
    assert label_counts(table, "deadstatus_event") == {
        "positive": 373,
        "negative": 49,
        "unlabelled": 0,
    }
    assert label_counts(table, "os_2y") == {"positive": 251, "negative": 169, "unlabelled": 2}
    assert sorted(unlabelled.patient_id) == ["LUNG1-128", "LUNG1-406"]
    assert unlabelled.detail.str.contains("censored at 3").all()
    # NA is read as missing, not as a category
    assert table.age_years.isna().sum() == 22
    assert table.histology.isna().sum() == 42
    assert table.loc[table.patient_id == "LUNG1-001", "survival_time_days"].item() == 2165


def write(tmp_path, rows, columns=V3_COLUMNS):
    path = tmp_path / "clinical.csv"
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path


def row(patient_id, time, event):
    return [patient_id, "70.1", 2, 0, 0, "I", "nos", "male", time, event]


def test_os_2y_boundaries(tmp_path):
    """Oracle: the definition read off each hand-built row (1 = death on or before day 730;
    0 = known alive on day 730, i.e. a death after it or follow-up reaching it)."""
    rows = [
        row("A", 730, 1),  # died on day 730: within two years
        row("B", 731, 1),  # died later: alive at two years
        row("C", 730, 0),  # alive at the last follow-up on day 730: survived two years
        row("D", 731, 0),  # censored after two years: alive
        row("E", 10, "NA"),  # no event status: no label at all
        row("F", 729, 0),  # censored the day before: 2-year status unknown
    ]
    table, unlabelled = add_labels(read_clinical_csv(write(tmp_path, rows)))
    assert table.os_2y.tolist() == [1, 0, 0, 0, pd.NA, pd.NA]
    assert table.deadstatus_event.tolist() == [1, 1, 0, 0, pd.NA, 0]
    os_2y = unlabelled[unlabelled.label == "os_2y"].set_index("patient_id").detail
    assert set(os_2y.index) == {"E", "F"}
    assert os_2y["F"].startswith("censored at 729 d, before the 730-day horizon")


def test_missing_columns_are_named(tmp_path):
    path = write(tmp_path, [row("A", 1, 1)[:9]], V3_COLUMNS[:9])
    with pytest.raises(ValueError, match=r"clinical.csv.*missing columns \['deadstatus.event'\]"):
        read_clinical_csv(path)


def test_bad_event_values_name_the_patient(tmp_path):
    with pytest.raises(ValueError, match=r"\['B'\]"):
        read_clinical_csv(write(tmp_path, [row("A", 5, 1), row("B", 5, 2)]))


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        (1, "70,5", r"column age must hold numbers or NA; patients \['B'\] have other values"),
        (8, "10.5", r"column Survival.time must hold whole numbers"),
        (2, "T2", r"column clinical.T.Stage must hold whole numbers"),
    ],
)
def test_malformed_values_name_the_column_and_patient(tmp_path, column, value, message):
    bad = row("B", 5, 1)
    bad[column] = value
    with pytest.raises(ValueError, match=message):
        read_clinical_csv(write(tmp_path, [row("A", 5, 1), bad]))


def test_messages_never_quote_the_files_contents(tmp_path, caplog):
    """A page shows these messages: another file's first line (here an os-release) or a
    cell's value stays out of them and goes to the server log."""
    other = tmp_path / "os-release"
    other.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n')
    with pytest.raises(ValueError, match="missing columns") as raised:
        read_clinical_csv(other)
    assert "Debian" not in str(raised.value) and "PRETTY_NAME" not in str(raised.value)
    assert "PRETTY_NAME" in caplog.text
    bad = row("B", 5, 1)
    bad[1] = "secret-70,5"
    with pytest.raises(ValueError, match="other values") as raised:
        read_clinical_csv(write(tmp_path, [row("A", 5, 1), bad]))
    assert "secret" not in str(raised.value) and "secret-70,5" in caplog.text
    # and never through the engine's logger, which a run also writes to its train.log
    quoting = [
        r for r in caplog.records if "PRETTY_NAME" in r.getMessage() or "secret" in r.getMessage()
    ]
    assert quoting and not any(r.name.startswith("nsclc_engine") for r in quoting)
