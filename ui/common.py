"""Helpers shared by the pages: the artifacts folder, the signed-in user and their role, the
review database, the selected run, cached engine calls."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import streamlit as st

from nsclc_engine import access
from nsclc_engine.dashboard import patient as patient_view
from nsclc_engine.dashboard import run_view
from nsclc_engine.dashboard import threshold as threshold_view
from nsclc_engine.paths import artifacts_dir
from nsclc_engine.review import store
from nsclc_engine.runs import run_dir

log = logging.getLogger("nsclc_engine.dashboard")


def artifacts() -> Path:
    return Path(artifacts_dir())


def review_db() -> str:
    return store.review_url(artifacts())


def secrets_state() -> str:
    """``auth`` when ``[auth]`` is in the secrets (everyone signs in), ``none`` without a
    secrets file or section, ``broken`` when a secrets file exists but cannot be read (then
    nobody gets in: a typo must not turn sign-in off)."""
    try:
        return "auth" if "auth" in st.secrets else "none"
    except Exception:
        files = [Path(p).expanduser() for p in st.get_option("secrets.files") or []]
        if any(path.exists() for path in files):
            log.error("the secrets file cannot be read: nobody gets in until it is fixed")
            return "broken"
        return "none"


def current_user() -> access.User:
    """Who is at the page, resolved afresh on every call (the roles file is reread, so a
    role an admin removes stops working at the next click)."""
    state = secrets_state()
    if state == "broken":
        return access.User("", None, "the secrets file cannot be read")
    sign_in = state == "auth"
    claims = st.user.to_dict() if sign_in else {}
    try:
        roles = access.load_roles(access.roles_file()) if sign_in else {}
    except ValueError as error:
        log.error("%s", error)
        st.error("The roles file cannot be read; nobody has a role until an admin fixes it.")
        roles = {}
    return access.resolve_user(sign_in, claims, not sign_in and local_admin(), roles)


ADMIN_SESSION = "local_admin_session"


def local_admin() -> bool:
    """Whether this browser session opened the admin link (``?token=``, the token in
    ``<artifacts>/.local-admin-token``) or holds the session cookie that link left. The token
    is taken out of the address bar at once, so a link copied from it never carries it."""
    token = access.local_admin_token(artifacts())
    _announce(token)
    expected = access.admin_cookie_value(token)
    given = st.query_params.get("token")
    if given is not None:
        if access.holds_token(given, token):
            st.session_state[ADMIN_SESSION] = expected
        else:
            log.warning("a page was opened with a wrong local admin token")
        del st.query_params["token"]
    held = st.session_state.get(ADMIN_SESSION) or st.context.cookies.get(access.ADMIN_COOKIE)
    return access.holds_token(held, expected)


def keep_admin_cookie() -> None:
    """For the local admin's browser: a session cookie (this site only, gone when the browser
    closes) so that a reload or a new tab stays the admin without the token in the address."""
    value = st.session_state.get(ADMIN_SESSION)
    if value and st.context.cookies.get(access.ADMIN_COOKIE) != value:
        st.html(
            f"<script>document.cookie = '{access.ADMIN_COOKIE}={value}; path=/; SameSite=Strict'"
            " + (location.protocol === 'https:' ? '; Secure' : '');</script>",
            unsafe_allow_javascript=True,
        )


@st.cache_resource(show_spinner=False)
def _announce(token: str) -> None:
    """Print the admin link once per server process and token, in the terminal of whoever
    started the server (never into a log file or a page)."""
    link = access.admin_link(
        token,
        st.get_option("server.address"),
        st.get_option("server.port"),
        st.get_option("server.baseUrlPath") or "",
    )
    print(
        f"\n  Local admin (without sign-in): open {link}\n"
        f"  Everyone else is a viewer. The token is in {artifacts() / access.ADMIN_TOKEN_FILE}.\n",
        flush=True,
    )


def require_page(page: str) -> access.User:
    """The top of every page: stop unless the current user's role may open ``page``."""
    user = current_user()
    if not user.may_open(page):
        _record_refusal(user, f"page {page}")
        needed = access.PAGES[page]
        have = f"Your role is {user.role}" if user.role else "You have no role"
        st.error(f"This page needs the {needed} role. {have} ({user.identity or 'not signed in'}).")
        st.stop()
    return user


def authorize(action: str) -> access.User:
    """Right before an action runs: the user again, refused (and the refusal audited) unless
    their role allows ``action``, whatever the page showed."""
    user = current_user()
    try:
        access.refuse_unless(user, action)
    except access.AccessDenied as denied:
        _record_refusal(user, action)
        st.error(str(denied))
        st.stop()
    return user


def role_help(user: access.User, action: str) -> str | None:
    """The tooltip of a button that ``user``'s role may not use. Such a button stays enabled:
    its click (from this page, a stale one or any client) reaches :func:`authorize`, which
    refuses it and records the refusal; Streamlit drops a disabled button's click unseen."""
    if user.may_do(action):
        return None
    return (
        f"Needs the {access.ACTIONS[action]} role (yours: {user.role}); a click is refused "
        "and recorded."
    )


def _record_refusal(user: access.User, what: str) -> None:
    """Audit a refused page or action (an unreachable database only goes to the log: the
    refusal stands either way)."""
    try:
        store.record(review_db(), user.identity or "anonymous", "denied", what)
    except ConnectionError as error:
        log.error("%s", error)


def audit(user: access.User, action: str, target: str = "", **detail) -> None:
    """Append the action to the audit log (a database that cannot be reached is logged and
    shown, but does not undo what was done)."""
    try:
        store.record(review_db(), user.identity, action, target, **detail)
    except ConnectionError as error:
        log.error("audit entry %s %s by %s not written: %s", action, target, user.identity, error)
        st.warning(f"The audit log could not be written: {error}")


def data_roots() -> list[Path]:
    """``$NSCLC_DATA_ROOTS`` and the roots an admin registered."""
    return access.data_roots(store.registered_roots(review_db()))


def show_error(what: str, error: Exception) -> None:
    """An error on a page: the engine's one-line message (it names the file or patient and
    never quotes file contents); the traceback goes to the server log."""
    log.warning("%s", what, exc_info=error)
    st.error(f"{what}: {error}")


LINKED = "_linked"  # name -> the value this session last wrote into the address bar


def from_link(name: str, key: str, choices=None, parse: Callable = str) -> None:
    """Before the widget ``key`` is made: a value of ``name`` in the address bar that this
    session did not put there (an opened link) becomes the widget's state. A value that is not
    among ``choices`` (or that ``parse`` refuses) is one line on the page, once."""
    given = st.query_params.get(name)
    written = st.session_state.setdefault(LINKED, {})
    if given is None or written.get(name) == given:
        return
    written[name] = given
    try:
        value = parse(given)
    except ValueError:
        value = None
    if value is None or (choices is not None and value not in list(choices)):
        st.warning(f"The link names {name} {given!r}, which is not here; showing another {name}.")
        return
    st.session_state[key] = value


def to_link(**values) -> None:
    """The page's state into the address bar (``None`` takes a name out), so that copying
    it shares this view."""
    written = st.session_state.setdefault(LINKED, {})
    for name, value in values.items():
        if value is None:
            st.query_params.pop(name, None)
            written.pop(name, None)
            continue
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        if st.query_params.get(name) != text:
            st.query_params[name] = text
        written[name] = text


def copy_link(page: str) -> None:
    """The link to this view (the address bar's query string on ``page``), with a copy
    button."""
    origin = urlsplit(st.context.url or "")
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    path = "/".join(part for part in (base, page) if part)
    query = urlencode(st.query_params.to_dict())
    st.code(f"{origin.scheme}://{origin.netloc}/{path}?{query}", language=None)


@st.cache_data(show_spinner=False, max_entries=32)
def _load(run_dir: str, stamp: tuple) -> run_view.RunView:
    return run_view.load_run(run_dir)


def load(run_id: str) -> run_view.RunView:
    folder = run_dir(run_id, artifacts())
    return _load(str(folder), run_view.run_stamp(folder))


def selected_run() -> run_view.RunView | None:
    run_id = st.session_state.get("run_id")
    if not run_id or not run_dir(run_id, artifacts()).is_dir():
        return None
    return load(run_id)


def require_finished_run(allow_survival: bool = False) -> run_view.RunView:
    """The selected run if it has predictions; otherwise say why and stop the page. A page
    about a yes/no label's probabilities (``allow_survival`` False) offers the
    classification runs in place of a survival run."""
    view = selected_run()
    if view is None:
        st.info("No run selected. Launch one on the Train page or pick one in the sidebar.")
        st.stop()
    if not view.finished:
        if view.status.get("state") in ("queued", "running"):
            _progress(view.run_id)
        else:
            st.info(f"Run `{view.run_id}` is {view.status.get('state', 'unknown')}.")
            if view.status.get("error"):
                st.error(view.status["error"])
        st.stop()
    if view.config.get("hold_out_test") and not view.metrics:
        st.info(
            f"Run `{view.run_id}` is trial {view.config.get('trial')} of study "
            f"`{view.config.get('study')}`: it trained with its test part held out, and only the "
            "study's best trial is scored on test, once. Its trials are on the Studies page."
        )
        st.stop()
    if view.metrics.too_few_patients:
        st.warning(f"Run `{view.run_id}`: {view.metrics.too_few_patients}")
        st.dataframe(view.predictions, hide_index=True)
        st.stop()
    if view.config.get("task") == "survival" and not allow_survival:
        offer_runs(
            patient_view.why_not_classification(view) + " This page reads the probabilities of "
            "a yes/no label; its survival figures are on the Survival and Calibration pages.",
            "classification",
            patient_view.why_not_classification,
        )
    return view


def offer_runs(
    why: str,
    question: str,
    why_not: Callable[[run_view.RunView], str],
    stop: bool = True,
    then: dict | None = None,
) -> None:
    """What the selected run cannot answer: one line saying ``why``, and a button per
    finished run that can (``why_not(view) == ""``; ``question`` names the test, a cache
    key) which selects it in the sidebar (and sets ``then`` in the session state, e.g. the
    patient to open); then the page stops unless ``stop`` is False."""
    selected = st.session_state.get("run_id", "")
    answering = _answering(str(artifacts()), question, selected, why_not)
    st.info(why + (" Open a run that can:" if answering else " No finished run here can yet."))
    columns = st.columns(4)
    for i, run_id in enumerate(answering[:8]):
        columns[i % 4].button(
            run_id,
            key=f"offer_{question}_{run_id}",
            on_click=_select_run,
            args=(run_id, then or {}),
        )
    if stop:
        st.stop()


@st.cache_data(show_spinner=False, max_entries=64, ttl=30)  # runs that finish meanwhile appear
def _answering(artifacts: str, question: str, selected: str, _why_not) -> list[str]:
    return patient_view.runs_answering(artifacts, _why_not, exclude=selected)


def _select_run(run_id: str, then: dict) -> None:
    """A button's callback: it runs before the sidebar's run selector is drawn, so it may set
    the selection."""
    st.session_state["run_id"] = run_id
    for key, value in then.items():
        st.session_state[key] = value


@st.fragment(run_every=3)
def _progress(run_id: str) -> None:
    """Progress of a queued or running run; the page fills in by itself when it finishes."""
    view = load(run_id)
    if view.finished or view.status.get("state") not in ("queued", "running"):
        st.rerun()
    st.info(
        f"Run `{run_id}` is {view.status.get('state')}: {view.status.get('stage') or 'waiting'} "
        f"({view.status.get('progress', 0):.0%}). This page fills in when it finishes."
    )
    st.progress(float(view.status.get("progress", 0.0)))


@st.cache_data(show_spinner=False, max_entries=64)
def part_predictions(run_id: str, stamp: tuple, split: str, recalibration: str):
    view = load(run_id)
    return run_view.part_predictions(view.predictions, split, recalibration)


@st.cache_data(show_spinner=False, max_entries=64)
def rule_thresholds(run_id: str, stamp: tuple, recalibration: str) -> dict:
    return threshold_view.rule_thresholds(load(run_id).predictions, recalibration)


@st.cache_data(show_spinner="Counting at every threshold…", max_entries=32)
def explorer_table(run_id: str, stamp: tuple, split: str, recalibration: str) -> dict:
    frame = part_predictions(run_id, stamp, split, recalibration)
    return threshold_view.explorer_table(frame)


def stamp(view: run_view.RunView) -> tuple:
    return run_view.run_stamp(view.run_dir)
