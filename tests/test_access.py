"""Roles and data roots by hand (nsclc_engine.access)."""

import pytest

from nsclc_engine import access
from nsclc_engine.access import AccessDenied, User


def test_roles_include_the_ones_below_and_default_to_deny(tmp_path):
    path = tmp_path / "roles.toml"
    path.write_text('[users]\n"Ana@Hosp.org" = "admin"\n"*@hosp.org" = "viewer"\n')
    roles = access.load_roles(path)
    assert access.role_of("ana@hosp.org", roles) == "admin"
    assert access.role_of("ben@hosp.org", roles) == "viewer"  # the domain's entry
    assert access.role_of("eve@evil.org", roles) is None
    assert access.load_roles(tmp_path / "absent.toml") == {}
    reviewer = User("r", "reviewer", "signed in")
    assert reviewer.may_open("patient") and not reviewer.may_open("train")
    assert reviewer.may_do("add_note") and not reviewer.may_do("save_threshold")
    assert not User("x", None, "signed in").may_open("runs")
    with pytest.raises(AccessDenied, match=r"launch job needs the operator role; your role is"):
        access.refuse_unless(reviewer, "launch_job")


def test_a_bad_roles_file_says_which_entry(tmp_path):
    path = tmp_path / "roles.toml"
    path.write_text('[users]\n"ana@hosp.org" = "superuser"\n')
    with pytest.raises(ValueError, match=r"'ana@hosp\.org' has role 'superuser'; use one of"):
        access.load_roles(path)
    path.write_text("[users\n")
    with pytest.raises(ValueError, match="not readable TOML"):
        access.load_roles(path)


def test_who_is_at_the_page():
    roles = {"ana@hosp.org": "operator"}
    assert access.resolve_user(False, {}, True, roles) == access.LOCAL_USER  # the admin link
    anyone = access.resolve_user(False, {}, False, roles)
    assert anyone.role == "viewer" and not anyone.may_do("add_note")
    claims = {"is_logged_in": True, "email": "Ana@hosp.org"}
    assert access.resolve_user(True, claims, True, roles).role == "operator"
    for unverified in (False, "false", "False", 0):
        said = claims | {"email_verified": unverified}
        assert access.resolve_user(True, said, True, roles).role is None, unverified
    assert access.resolve_user(True, {"is_logged_in": False}, True, roles).role is None


def test_the_local_admin_token_is_private_random_and_kept(tmp_path, caplog):
    token = access.local_admin_token(tmp_path)
    path = tmp_path / access.ADMIN_TOKEN_FILE
    assert path.stat().st_mode & 0o777 == 0o600 and len(token) >= 43
    assert access.local_admin_token(tmp_path) == token  # the same link after a restart
    assert access.local_admin_token(tmp_path / "other") != token
    assert access.holds_token(token, token)
    for given in (None, "", token[:-1], token + "x", token.upper()):
        assert not access.holds_token(given, token), given
    # a token file others could read is no secret: a new token replaces it
    path.chmod(0o644)
    fresh = access.local_admin_token(tmp_path)
    assert fresh != token and path.stat().st_mode & 0o777 == 0o600
    assert "not a private token file" in caplog.text
    # nor is a link to a file the server's user does not control
    elsewhere = tmp_path / "planted"
    elsewhere.write_text("x" * 43 + "\n")
    elsewhere.chmod(0o600)
    path.unlink()
    path.symlink_to(elsewhere)
    assert access.local_admin_token(tmp_path) not in (fresh, "x" * 43)
    assert not path.is_symlink() and elsewhere.read_text() == "x" * 43 + "\n"
    assert access.admin_cookie_value(token) != token


def test_the_admin_link_names_the_address_the_server_listens_on():
    assert access.admin_link("T", "127.0.0.1", 8501) == "http://127.0.0.1:8501/?token=T"
    assert access.admin_link("T", "", 80) == "http://localhost:80/?token=T"
    assert access.admin_link("T", "::1", 9, "/review/") == "http://[::1]:9/review/?token=T"


def test_data_paths_must_resolve_inside_a_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    (root / "lung1").mkdir(parents=True)
    (root / "escape").symlink_to("/etc")
    monkeypatch.setenv("NSCLC_DATA_ROOTS", f"{root}:{tmp_path / 'other'}")
    roots = access.data_roots(["/srv/registered"])
    assert roots[0] == root.resolve() and str(roots[-1]) == "/srv/registered"
    user = User("ana", "operator", "signed in")
    inside = access.check_data_path(str(root / "lung1"), roots, "DICOM folder", user)
    assert inside == (root / "lung1").resolve()
    for outside in (root / "lung1" / ".." / ".." / "x", root / "escape" / "os-release", "/etc"):
        with pytest.raises(AccessDenied, match=r"DICOM folder: .* is outside the data roots"):
            access.check_data_path(str(outside), roots, "DICOM folder", user)
    with pytest.raises(AccessDenied, match="no data root is registered"):
        access.check_data_path("/etc", [], "clinical CSV", user)
    assert access.check_data_path("/etc", [], "clinical CSV", access.LOCAL_USER).is_dir()


def test_weights_come_only_from_the_artifacts_weights_folder(tmp_path):
    (tmp_path / "weights" / "medicalnet").mkdir(parents=True)
    (tmp_path / "weights" / "medicalnet" / "resnet_18.pth").write_bytes(b"x")
    (tmp_path / "weights" / "readme.txt").write_text("not weights")
    (tmp_path / "elsewhere.pth").write_bytes(b"x")
    (tmp_path / "weights" / "link.pth").symlink_to(tmp_path / "elsewhere.pth")
    assert access.weight_files(tmp_path) == ["medicalnet/resnet_18.pth"]  # no link out
    found = access.check_weights("medicalnet/resnet_18.pth", tmp_path)
    assert found == (tmp_path / "weights" / "medicalnet" / "resnet_18.pth").resolve()
    for name in ("../elsewhere.pth", str(tmp_path / "elsewhere.pth"), "link.pth", "absent.pth"):
        with pytest.raises(AccessDenied, match="not a file in"):
            access.check_weights(name, tmp_path)
