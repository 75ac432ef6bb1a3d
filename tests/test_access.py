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
    assert access.resolve_user(False, {}, True, roles) == access.LOCAL_USER
    served = access.resolve_user(False, {}, False, roles)
    assert served.role == "viewer" and not served.may_do("add_note")
    claims = {"is_logged_in": True, "email": "Ana@hosp.org"}
    assert access.resolve_user(True, claims, True, roles).role == "operator"
    for unverified in (False, "false", "False", 0):
        said = claims | {"email_verified": unverified}
        assert access.resolve_user(True, said, True, roles).role is None, unverified
    assert access.resolve_user(True, {"is_logged_in": False}, True, roles).role is None


def test_only_a_direct_request_from_this_machine_is_local():
    browser = {"Origin": "http://localhost:8501", "Host": "localhost:8501"}
    assert access.local_request("127.0.0.1", browser)
    assert access.local_request("127.0.0.1", {})  # no browser: a test client
    assert not access.local_request("0.0.0.0", browser)
    assert not access.local_request(None, browser)  # all interfaces
    assert not access.local_request("127.0.0.1", browser | {"X-Forwarded-For": "10.0.0.7"})
    # a proxy that adds no forwarding header: the page came from the public name
    assert not access.local_request("127.0.0.1", {"Origin": "https://review.example.org"})
    assert access.local_request("::1", {"Origin": "http://[::1]:8501", "Host": "[::1]:8501"})
    assert access.local_request("127.0.0.1", {"Origin": "http://127.0.0.1:8501"})
    # a name that merely starts like a loopback address is not this machine
    for name in ("127.0.0.1.attacker.example", "127.1.2.3.sslip.io"):
        headers = {"Origin": f"http://{name}:8501", "Host": f"{name}:8501"}
        assert not access.local_request("127.0.0.1", headers), name
    assert not access.local_request("127.0.0.1", {"Host": "review.example.org"})


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
