"""Sign-in and roles, enforced on the server: what each role sees and can do (AppTest with a
signed-in user), the data roots of each path box, and a local or served app without sign-in."""

import json
import shutil
from pathlib import Path

import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from nsclc_engine import access, runs
from nsclc_engine.review import store
from tests.helpers import open_app

AUTH = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "test-only",
    "client_id": "id",
    "client_secret": "secret",
    "server_metadata_url": "https://id.example.org/.well-known/openid-configuration",
}
PEOPLE = {
    "vera@example.org": "viewer",
    "rui@example.org": "reviewer",
    "olga@example.org": "operator",
    "ada@example.org": "admin",
}
PAGE_FILES = {
    "runs": "ui/runs.py",
    "dataset": "ui/dataset.py",
    "threshold": "ui/threshold.py",
    "calibration": "ui/calibration.py",
    "patient": "ui/patient.py",
    "survival": "ui/survival.py",
    "studies": "ui/studies.py",
    "train": "ui/train.py",
    "access": "ui/access.py",
}
# the lowest role that may open each page
NEEDS = {"runs": 0, "dataset": 0, "threshold": 0, "calibration": 0, "survival": 0}
NEEDS |= {"studies": 0, "patient": 1}
NEEDS |= {"train": 2, "access": 3}
ROLES = ("viewer", "reviewer", "operator", "admin")


@pytest.fixture()
def roles_file(tmp_path, monkeypatch):
    path = tmp_path / "roles.toml"
    lines = ["[users]", *(f'"{who}" = "{role}"' for who, role in PEOPLE.items())]
    path.write_text("\n".join(lines) + '\n"*@partner.org" = "viewer"\n')
    monkeypatch.setenv("NSCLC_ROLES_FILE", str(path))
    return path


def signed_in(own_artifacts, monkeypatch, email: str | None, script="app.py") -> AppTest:
    at = open_app(monkeypatch, own_artifacts, script)
    at.secrets["auth"] = AUTH
    at.user = {"is_logged_in": email is not None, "email": email or ""}
    at.session_state["run_id"] = "fixture"
    return at


def errors(at) -> str:
    return " ".join(e.value for e in at.error)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_opens_its_pages_and_no_other(own_artifacts, monkeypatch, roles_file, role):
    who = {r: e for e, r in PEOPLE.items()}[role]
    at = signed_in(own_artifacts, monkeypatch, who)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    for page, needed in NEEDS.items():
        if ROLES.index(role) >= needed:
            at.switch_page(PAGE_FILES[page]).run()
            assert not at.exception, (role, page, [e.value for e in at.exception])
            assert "This page needs the" not in errors(at), (role, page)
            continue
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(PAGE_FILES[page])  # not in the navigation
        # and the page itself refuses, however it is reached
        direct = signed_in(own_artifacts, monkeypatch, who, PAGE_FILES[page])
        direct.run()
        assert f"This page needs the {ROLES[needed]} role. Your role is {role}" in errors(direct)
        assert not direct.dataframe and not direct.button and not direct.get("iframe")
    if role in ("viewer", "reviewer"):  # the threshold is read, not saved
        at.switch_page("ui/threshold.py").run()
        save = at.button(key="save_threshold")  # enabled: a click is refused and audited
        assert not save.disabled and "by an operator" in save.help


def test_without_a_session_or_a_role_nothing_is_shown(own_artifacts, monkeypatch, roles_file):
    at = signed_in(own_artifacts, monkeypatch, None)
    at.run()
    assert [b.label for b in at.button] == ["Sign in"] and not at.dataframe
    at = signed_in(own_artifacts, monkeypatch, "mallory@elsewhere.org")
    at.run()
    assert "you have no role here" in errors(at) and not at.dataframe
    at = signed_in(own_artifacts, monkeypatch, "pat@partner.org")  # a domain's entry
    at.run()
    assert not at.error and at.dataframe


def test_a_role_taken_away_is_refused_at_the_click(own_artifacts, monkeypatch, roles_file):
    """The page rendered for an operator; the admin demotes them before they click Save:
    nothing is saved. The check that runs right before every action refuses it whatever the
    page showed, and the refusal is audited."""
    at = signed_in(own_artifacts, monkeypatch, "olga@example.org")
    at.run()
    at.switch_page("ui/threshold.py").run()
    at.number_input(key="threshold").set_value(0.42).run()
    assert not at.button(key="save_threshold").disabled
    roles_file.write_text('[users]\n"olga@example.org" = "viewer"\n')
    at.button(key="save_threshold").click().run()
    saved = json.loads((own_artifacts / "runs" / "fixture" / "threshold.json").read_text())
    assert "operating_point" not in saved
    action = AppTest.from_string(
        "import streamlit as st\n"
        "from ui.common import authorize\n"
        "authorize('save_threshold')\n"
        "st.write('saved')\n"
    )
    action.secrets["auth"] = AUTH
    action.user = {"is_logged_in": True, "email": "olga@example.org"}
    action.run()
    assert "save threshold needs the operator role; your role is viewer" in errors(action)
    assert not action.markdown  # the action did not run
    log = store.audit_log(store.review_url(own_artifacts))
    assert log[["actor", "action", "target"]].iloc[0].tolist() == [
        "olga@example.org",
        "denied",
        "save_threshold",
    ]


def test_an_operators_save_records_who_saved_it(own_artifacts, monkeypatch, roles_file):
    at = signed_in(own_artifacts, monkeypatch, "olga@example.org")
    at.run()
    at.switch_page("ui/threshold.py").run()
    at.number_input(key="threshold").set_value(0.42).run()
    at.button(key="save_threshold").click().run()
    saved = json.loads((own_artifacts / "runs" / "fixture" / "threshold.json").read_text())
    assert saved["operating_point"]["saved_by"] == "olga@example.org"
    entry = store.audit_log(store.review_url(own_artifacts)).iloc[0]
    assert (entry.actor, entry.action, entry.target) == (
        "olga@example.org",
        "save_threshold",
        "fixture",
    )


def test_without_sign_in_a_browser_without_the_admin_link_only_reads(own_artifacts, monkeypatch):
    """No sign-in, no token: a viewer, wherever the request comes from (AppTest sends no
    Origin and no Host, which made it the local admin before). A click on a button the role
    may not use reaches the server's check and is refused and audited."""
    at = open_app(monkeypatch, own_artifacts, admin=False)
    at.session_state["run_id"] = "fixture"
    at.run()
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("ui/train.py")
    for page, needed in (("train", "operator"), ("patient", "reviewer")):
        direct = open_app(monkeypatch, own_artifacts, f"ui/{page}.py", admin=False)
        direct.run()
        assert f"needs the {needed} role. Your role is viewer" in errors(direct)
    at.switch_page("ui/dataset.py").run()
    assert not at.exception and not at.error
    at.switch_page("ui/threshold.py").run()
    at.button(key="save_threshold").click().run()
    assert "save threshold needs the operator role; your role is viewer" in errors(at)
    saved = json.loads((own_artifacts / "runs" / "fixture" / "threshold.json").read_text())
    assert "operating_point" not in saved
    entry = store.audit_log(store.review_url(own_artifacts)).iloc[0]
    assert (entry.actor, entry.action, entry.target) == ("anyone", "denied", "save_threshold")


def test_the_admin_link_makes_the_local_admin_and_leaves_the_address_bar(
    own_artifacts, monkeypatch
):
    at = open_app(monkeypatch, own_artifacts)
    at.session_state["run_id"] = "fixture"
    at.run()
    assert "token" not in at.query_params  # a link copied from the address bar has no token
    at.switch_page("ui/access.py").run()  # the session stays the admin's
    assert not at.exception and not at.error
    assert any("You: local (admin, local)" in c.value for c in at.caption)
    token = (own_artifacts / access.ADMIN_TOKEN_FILE).read_text().strip()
    wrong = open_app(monkeypatch, own_artifacts, "ui/access.py", admin=False)
    wrong.query_params["token"] = token[:-1] + ("A" if token[-1] != "A" else "B")
    wrong.run()
    assert "needs the admin role. Your role is viewer" in errors(wrong)
    assert "token" not in wrong.query_params


def test_only_reviewers_read_the_note_behind_a_review_exclusion(
    own_artifacts, monkeypatch, tmp_path
):
    """The Dataset page's exclusions table: a viewer sees that a patient was excluded on
    review; the reviewer's e-mail and note reach reviewers and above only."""
    config_path = own_artifacts / "runs" / "fixture" / "config.json"
    config = json.loads(config_path.read_text())
    cohort = Path(shutil.copytree(config["resolved"]["cohort_dir"], tmp_path / "cohort"))
    report = json.loads((cohort / "cleaning_report.json").read_text())
    note = "excluded on review by rui@example.org on 2026-12-01 (note 3): contour misses the apex"
    report["exclusions"].append(
        {"patient_id": "X-1", "scope": "cohort", "reason": "review_excluded", "detail": note}
    )
    (cohort / "cleaning_report.json").write_text(json.dumps(report))
    config["resolved"]["cohort_dir"] = str(cohort)
    config_path.write_text(json.dumps(config))

    def shown(admin: bool) -> str:
        at = open_app(monkeypatch, own_artifacts, "ui/dataset.py", admin=admin)
        at.session_state["run_id"] = "fixture"
        at.run()
        assert not at.exception
        return " ".join(frame.value.to_csv() for frame in at.dataframe)

    assert "contour misses the apex" in shown(admin=True)
    as_viewer = shown(admin=False)
    assert "X-1" in as_viewer and "excluded on review" in as_viewer
    assert "rui@example.org" not in as_viewer and "apex" not in as_viewer


@pytest.mark.parametrize("box", ["dicom", "clinical"])
def test_each_path_box_refuses_a_path_outside_the_data_roots(
    own_artifacts, monkeypatch, roles_file, tiny_source, tmp_path, box
):
    """With a root set by the server's admin, the Train page reads paths inside it only:
    ``..`` and absolute paths out are refused, nothing is launched, and the message quotes
    no file (links pointing out: tests/test_access.py)."""
    monkeypatch.setenv("NSCLC_DATA_ROOTS", str(tiny_source))
    at = signed_in(own_artifacts, monkeypatch, "olga@example.org")
    at.run()
    at.switch_page("ui/train.py").run()
    assert at.selectbox[1].label.startswith("Data root")  # a root to choose, then a path in it
    before = {run["run_id"] for run in runs.list_runs(own_artifacts)}
    boxes = {"dicom": 0, "clinical": 1}
    good = {"dicom": "dicom", "clinical": "clinical.csv"}
    for outside in ("../../../../../etc/os-release", "/etc/os-release", "/etc"):
        at.radio[0].set_value("dicom")
        for name, index in boxes.items():
            at.text_input[index].set_value(outside if name == box else good[name])
        at.button[0].click().run()
        assert "is outside the data roots" in errors(at), (outside, errors(at))
        assert "PRETTY_NAME" not in errors(at) and "Debian" not in errors(at)
    assert {run["run_id"] for run in runs.list_runs(own_artifacts)} == before
    # lawful paths launch
    at.radio[0].set_value("dicom")
    for name, index in boxes.items():
        at.text_input[index].set_value(good[name])
    at.number_input[0].set_value(1)
    at.button[0].click().run()
    assert not at.error, errors(at)
    new = [r for r in runs.list_runs(own_artifacts) if r["run_id"] not in before]
    assert len(new) == 1
    from nsclc_engine.train import jobs

    jobs.cancel(new[0]["run_id"], own_artifacts)
    assert store.audit_log(store.review_url(own_artifacts)).action.iloc[0] == "launch_job"


def test_the_weights_box_offers_only_files_in_artifacts_weights(
    own_artifacts, monkeypatch, roles_file, tmp_path
):
    (own_artifacts / "weights").mkdir()
    (own_artifacts / "weights" / "resnet_18_23dataset.pth").write_bytes(b"x")
    (tmp_path / "elsewhere.pth").write_bytes(b"x")
    (own_artifacts / "weights" / "link.pth").symlink_to(tmp_path / "elsewhere.pth")
    at = signed_in(own_artifacts, monkeypatch, "olga@example.org")
    at.run()
    at.switch_page("ui/train.py").run()
    weights = next(box for box in at.selectbox if box.label.startswith("Pretrained weights"))
    assert weights.options == ["none: train from scratch", "resnet_18_23dataset.pth"]


def test_the_register_root_box_takes_folders_only_from_an_admin(
    own_artifacts, monkeypatch, roles_file, tmp_path
):
    at = signed_in(own_artifacts, monkeypatch, "ada@example.org")
    at.run()
    at.switch_page("ui/access.py").run()
    at.text_input[0].set_value(str(tmp_path / "absent"))
    at.button[0].click().run()
    assert "is not a folder on this server" in errors(at)
    at.text_input[0].set_value("/")
    at.button[0].click().run()
    assert "The whole file system cannot be a data root" in errors(at)
    folder = tmp_path / "lung1"
    folder.mkdir()
    at.text_input[0].set_value(str(folder))
    at.button[0].click().run()
    url = store.review_url(own_artifacts)
    assert store.registered_roots(url) == [str(folder.resolve())]
    assert store.audit_log(url).action.iloc[0] == "register_root"


def test_an_unreadable_secrets_file_lets_nobody_in(own_artifacts, monkeypatch, tmp_path):
    """A typo in secrets.toml must not turn sign-in off and make everyone the local admin."""
    broken = tmp_path / "secrets.toml"
    broken.write_text("[auth\nclient_id = 'x'\n")
    before = config.get_option("secrets.files")
    config.set_option("secrets.files", [str(broken)])
    try:
        at = open_app(monkeypatch, own_artifacts)
        at.run()
        assert "secrets file cannot be read" in errors(at) and not at.dataframe
    finally:
        config.set_option("secrets.files", before)
