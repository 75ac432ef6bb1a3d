"""Who may do what on a served dashboard, and which server paths a page may read.

Roles, each including the ones before it: ``viewer`` (reads runs, thresholds and
calibration), ``reviewer`` (also the Patient page and review notes), ``operator`` (also
launches and cancels jobs and saves thresholds), ``admin`` (also registers data roots and
reads the audit log). An admin-owned TOML file (``$NSCLC_ROLES_FILE``, default
``.streamlit/roles.toml``) maps identities to roles; anyone not in it has no role (deny)::

    [users]
    "ana@hospital.org" = "admin"
    "*@hospital.org" = "viewer"     # everyone of a domain

Without sign-in configured, nobody is admin by where a request comes from (addresses and
``Host``/``Origin``/forwarding headers are the client's to choose, and a proxy may rewrite or
drop them). As single-user notebook servers do, the server keeps a random token in
``<artifacts>/.local-admin-token`` (mode 600: readable by the server's user only) and prints
the link carrying it, ``http://HOST:PORT/?token=TOKEN``; a browser that opened that link is
the local admin; every other client, local or proxied, is a ``viewer``: no note, no exclusion,
no operator action.

Data paths typed on a page must resolve inside a data root: ``$NSCLC_DATA_ROOTS`` (folders
separated by ``:``) and the roots an admin registered. With neither, a local user may read
any path and a served app none. Pretrained weights come only from ``<artifacts>/weights``.
This module is pure: the pages pass in what Streamlit knows (claims, server address).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

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
ADMIN_TOKEN_FILE = ".local-admin-token"
ADMIN_COOKIE = "nsclc_local_admin"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class User:
    """The person at the page: ``identity`` (an e-mail when signed in), ``role`` (``None``:
    no access), ``how`` they were identified (``local``: the admin link; ``without sign-in or
    the admin link``; ``signed in``)."""

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
SERVER = User("server", "admin", "the server's own action")  # e.g. the first-start demo


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


def local_admin_token(artifacts: str | os.PathLike) -> str:
    """The local admin's token, made on first use: ``<artifacts>/.local-admin-token``, 32
    random bytes (URL-safe text) that only the server's user may read. A token file that
    others could read, or that another user owns, is replaced by a new token (its links stop
    working). Deleting the file and reloading a page makes a new one: old links and cookies
    stop working."""
    path = Path(artifacts) / ADMIN_TOKEN_FILE
    try:
        held = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        held = None
    if held is not None:
        private = stat.S_ISREG(held.st_mode) and not held.st_mode & 0o077
        if private and held.st_uid == os.getuid():
            token = path.read_text().strip()
            if len(token) >= 32:
                return token
        log.warning("%s: not a private token file of this user; a new token replaces it", path)
    return _new_token(path, replace=held is not None)


def _new_token(path: Path, replace: bool) -> str:
    """Write a new token to ``path``: created with mode 600 beside it, then moved into place,
    so no reader sees it half-written or readable by others. A new file is linked into place
    only if none is there yet: of two sessions making one at once, both return the first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            except FileExistsError:
                return path.read_text().strip()
    finally:
        temporary.unlink(missing_ok=True)
    return token


def admin_link(token: str, address: str | None, port: int, base_path: str = "") -> str:
    """The link that makes a browser the local admin, for the server's address (one that
    listens on every interface is reached as ``localhost`` from the server itself)."""
    host = (address or "").strip()
    if host in ("", "0.0.0.0", "::"):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    path = f"/{base_path.strip('/')}/" if base_path.strip("/") else "/"
    return f"http://{host}:{port}{path}?token={token}"


def admin_cookie_value(token: str) -> str:
    """What the local admin's browser keeps in its session cookie: derived from the token, so
    the cookie never holds the token of the printed link itself."""
    return hmac.new(token.encode(), b"nsclc local admin session", hashlib.sha256).hexdigest()


def holds_token(given: str | None, token: str) -> bool:
    """Whether ``given`` is the token (compared in constant time)."""
    return bool(given) and hmac.compare_digest(str(given).encode(), token.encode())


def resolve_user(sign_in: bool, claims: dict, local_admin: bool, roles: dict[str, str]) -> User:
    """The current user from what Streamlit knows. ``sign_in``: ``[auth]`` is configured
    (then the roles file alone decides); ``claims``: ``st.user``; ``local_admin``: this
    browser session opened the link with the local admin token (:func:`local_admin_token`).
    A provider that says the e-mail is not verified signs nobody in."""
    if sign_in:
        identity = str(claims.get("email") or "")
        if not claims.get("is_logged_in") or not identity:
            return User("", None, "not signed in")
        if str(claims.get("email_verified", True)).lower() in {"false", "0"}:
            return User(identity, None, "signed in, e-mail not verified")
        return User(identity, role_of(identity, roles), "signed in")
    if local_admin:
        return LOCAL_USER
    return User("anyone", "viewer", "without sign-in or the admin link")


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
