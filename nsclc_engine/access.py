"""Who may do what on a served dashboard, and which server paths a page may read.

Roles, each including the ones before it: ``viewer`` (reads runs, thresholds and
calibration), ``reviewer`` (also the Patient page and review notes), ``operator`` (also
launches and cancels jobs and saves thresholds), ``admin`` (also registers data roots and
reads the audit log). An admin-owned TOML file (``$NSCLC_ROLES_FILE``, default
``.streamlit/roles.toml``) maps identities to roles; anyone not in it has no role (deny)::

    [users]
    "ana@hospital.org" = "admin"
    "*@hospital.org" = "viewer"     # everyone of a domain

Without sign-in configured the app is a single local user's tool: on a loopback address, to a
browser whose page came from a loopback address too, that user is an admin; served on any
other address or through a proxy (a forwarding header, or a page from another host), everyone
is a ``viewer``: no note, no exclusion, no operator action.

Data paths typed on a page must resolve inside a data root: ``$NSCLC_DATA_ROOTS`` (folders
separated by ``:``) and the roots an admin registered. With neither, a local user may read
any path and a served app none. Pretrained weights come only from ``<artifacts>/weights``.
This module is pure: the pages pass in what Streamlit knows (claims, server address).
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from nsclc_engine.paths import PROJECT_ROOT

ROLES = ("viewer", "reviewer", "operator", "admin")
PAGES = {
    "runs": "viewer",
    "dataset": "viewer",
    "threshold": "viewer",
    "calibration": "viewer",
    "survival": "viewer",
    "studies": "viewer",
    "patient": "reviewer",
    "train": "operator",
    "access": "admin",
}
ACTIONS = {
    "add_note": "reviewer",
    "withdraw_note": "reviewer",
    "launch_job": "operator",
    "cancel_job": "operator",
    "save_threshold": "operator",
    "start_study": "operator",
    "stop_study": "operator",
    "register_root": "admin",
    "read_audit": "admin",
}
FORWARDING_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


@dataclass(frozen=True)
class User:
    """The person at the page: ``identity`` (an e-mail when signed in), ``role`` (``None``:
    no access), ``how`` they were identified (``local``, ``served without sign-in``,
    ``signed in``)."""

    identity: str
    role: str | None
    how: str

    def may(self, role_needed: str) -> bool:
        return self.role is not None and ROLES.index(self.role) >= ROLES.index(role_needed)

    def may_open(self, page: str) -> bool:
        return self.may(PAGES[page])

    def may_do(self, action: str) -> bool:
        return self.may(ACTIONS[action])


LOCAL_USER = User("local", "admin", "local")


class AccessDenied(PermissionError):
    """An action or a path the current user may not have; the message says why."""


def refuse_unless(user: User, action: str) -> None:
    """Raise :class:`AccessDenied` unless ``user`` may do ``action`` (checked right before
    the action runs, whatever the page showed)."""
    if not user.may_do(action):
        needed = ACTIONS[action]
        have = f"your role is {user.role}" if user.role else "you have no role"
        raise AccessDenied(
            f"{action.replace('_', ' ')} needs the {needed} role; {have} ({user.identity}, "
            f"{user.how}). An admin grants roles in the roles file."
        )


def roles_file() -> Path:
    return Path(os.environ.get("NSCLC_ROLES_FILE") or PROJECT_ROOT / ".streamlit" / "roles.toml")


def load_roles(path: str | os.PathLike) -> dict[str, str]:
    """Identity (lower case) -> role from the roles file; an absent file grants nothing."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        table = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as error:
        raise ValueError(
            f"roles file {path}: not readable TOML ({type(error).__name__}); fix it so anyone "
            "can sign in"
        ) from None
    users = table.get("users", {})
    if not isinstance(users, dict):
        raise ValueError(f"roles file {path}: [users] must be a table of identity = role")
    roles = {}
    for identity, role in users.items():
        if role not in ROLES:
            raise ValueError(
                f"roles file {path}: {identity!r} has role {role!r}; use one of {', '.join(ROLES)}"
            )
        roles[identity.strip().lower()] = role
    return roles


def role_of(identity: str, roles: dict[str, str]) -> str | None:
    """The identity's own entry, else its domain's (``*@domain``), else ``None``."""
    identity = identity.strip().lower()
    if identity in roles:
        return roles[identity]
    domain = identity.rpartition("@")[2]
    return roles.get(f"*@{domain}") if "@" in identity else None


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine only: ``localhost`` or a loopback IP address (an
    empty server address listens on all interfaces; a name such as ``127.0.0.1.example.org``
    is not this machine)."""
    host = (host or "").strip().lower().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_request(server_address: str | None, headers: dict[str, str]) -> bool:
    """Whether a request reached the server from this machine directly: the server listens on
    loopback only, no proxy forwarded it, and the page that opened it (``Origin``, which a
    browser always sends) came from a loopback address."""
    if not is_loopback(server_address):
        return False
    names = {key.lower(): value for key, value in headers.items()}
    if any(header in names for header in FORWARDING_HEADERS):
        return False
    origin, host = names.get("origin"), names.get("host")
    if origin is None and host is None:
        return True  # not a browser (a test client)
    urls = [url for url in (origin, host and f"http://{host}") if url]
    return all(is_loopback(urlsplit(url).hostname) for url in urls)


def resolve_user(sign_in: bool, claims: dict, local: bool, roles: dict[str, str]) -> User:
    """The current user from what Streamlit knows. ``sign_in``: ``[auth]`` is configured;
    ``claims``: ``st.user``; ``local``: :func:`local_request`. A provider that says the
    e-mail is not verified signs nobody in."""
    if sign_in:
        identity = str(claims.get("email") or "")
        if not claims.get("is_logged_in") or not identity:
            return User("", None, "not signed in")
        if str(claims.get("email_verified", True)).lower() in {"false", "0"}:
            return User(identity, None, "signed in, e-mail not verified")
        return User(identity, role_of(identity, roles), "signed in")
    if local:
        return LOCAL_USER
    return User("anyone", "viewer", "served without sign-in")


def data_roots(registered: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """``$NSCLC_DATA_ROOTS`` and the registered roots, resolved."""
    listed = [p for p in os.environ.get("NSCLC_DATA_ROOTS", "").split(os.pathsep) if p.strip()]
    roots = []
    for entry in [*listed, *registered]:
        root = Path(entry.strip()).expanduser().resolve()
        if root not in roots:
            roots.append(root)
    return roots


def check_data_path(value: str, roots: list[Path], what: str, user: User) -> Path:
    """``value`` resolved (links followed) if it lies inside a data root; raises
    :class:`AccessDenied` otherwise. A local user with no root configured may read any path."""
    value = value.strip()
    if not value:
        raise ValueError(f"{what}: give a path")
    path = Path(value).expanduser().resolve()
    if not roots:
        if user.how == "local":
            return path
        raise AccessDenied(
            f"{what}: no data root is registered on this server; an admin registers one "
            "(NSCLC_DATA_ROOTS or the Access page)"
        )
    if not any(path == root or path.is_relative_to(root) for root in roots):
        raise AccessDenied(
            f"{what}: {value} is outside the data roots ({', '.join(map(str, roots))}); "
            "choose a path inside one, or ask an admin to register its folder"
        )
    return path


def weights_dir(artifacts: str | os.PathLike) -> Path:
    return Path(artifacts) / "weights"


def weight_files(artifacts: str | os.PathLike) -> list[str]:
    """The pretrained weight files a page may offer: names under ``<artifacts>/weights``."""
    folder = weights_dir(artifacts)
    if not folder.is_dir():
        return []
    inside = folder.resolve()
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix in {".pt", ".pth", ".tar", ".ckpt", ".torch"}
        and p.resolve().is_relative_to(inside)  # no link out of the folder
    )


def check_weights(name: str, artifacts: str | os.PathLike) -> Path:
    """The file ``name`` under ``<artifacts>/weights``, resolved; anything else is refused."""
    folder = weights_dir(artifacts).resolve()
    path = (folder / name).resolve()
    if not path.is_relative_to(folder) or not path.is_file():
        raise AccessDenied(
            f"pretrained weights {name!r}: not a file in {folder}; an admin puts weight files there"
        )
    return path
