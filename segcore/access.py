"""Who is acting, and what their role lets them do.

Every action that changes the workspace (launch, stop, resume, delete, notes,
queue order, import) is done by an :class:`Actor`: the person signed in to the
dashboard, or the machine's own user on the command line. segcore's functions
that change the workspace take the actor and call :func:`require`, so a page
that forgot to hide a button still cannot do what the role may not.

Roles (``ROLE_ACTIONS``)::

    viewer   browse, compare, predict, notes
    trainer  + import, launch, stop / resume / delete / reorder their own runs
    admin    everything, other people's runs and the server's settings

Who gets which role is a server setting (``<workspace>/server.json``, read by
``segcore.workspace``)::

    {"roles": {"ana@lab.org": "admin", "group:ml-team": "trainer"},
     "default_role": "viewer", "group_claim": "groups"}

A key is an e-mail address (matched without regard to case) or ``group:NAME``
(matched against the identity's ``group_claim`` claim); when several match,
the highest role wins; a signed-in identity matching none gets
``default_role`` (``"none"``: no access). Without sign-in the dashboard is
used by the local user, who is an admin: the same as the command line.

This module never imports Streamlit: the dashboard turns ``st.user`` into an
:class:`Actor` with :func:`actor_from_claims`.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

ROLES = ("viewer", "trainer", "admin")
NO_ACCESS = "none"
ACTIONS = ("browse", "compare", "predict", "notes", "import", "launch", "stop", "resume", "delete", "reorder", "settings")
_VIEWER = frozenset({"browse", "compare", "predict", "notes"})
_TRAINER = _VIEWER | {"import", "launch", "stop", "resume", "delete", "reorder"}
ROLE_ACTIONS: dict[str, frozenset[str]] = {"viewer": _VIEWER, "trainer": _TRAINER, "admin": frozenset(ACTIONS)}
# A trainer may do these to the runs they launched only; an admin to every run.
OWN_RUNS_ONLY = frozenset({"stop", "resume", "delete", "reorder"})
GROUP_PREFIX = "group:"
ALLOW_OPEN_ENV = "SEGCORE_ALLOW_OPEN"
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class AccessDenied(PermissionError):
    """An actor's role does not allow the action; the message says who, what and which role would."""


@dataclass(frozen=True)
class Actor:
    """Who is acting: a signed-in identity or the local user.

    ``who`` is what the records keep (the e-mail address of a signed-in
    identity, the OS user name of the local user); ``name`` is what pages show.
    """

    who: str
    role: str
    name: str = ""
    groups: tuple[str, ...] = ()
    signed_in: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.who, str) or not self.who.strip():
            raise ValueError(f"actor who is {self.who!r}; expected an e-mail address or a user name")
        if self.role not in ROLES + (NO_ACCESS,):
            raise ValueError(f"actor role is {self.role!r}; expected one of {', '.join(ROLES + (NO_ACCESS,))}")
        object.__setattr__(self, "name", self.name or self.who)
        object.__setattr__(self, "groups", tuple(self.groups))

    def may(self, action: str, owner: str | None = None) -> bool:
        """Whether this actor may do ``action`` (to a run launched by ``owner``, for the run actions)."""
        return denial(self, action, owner) is None

    def record(self) -> dict[str, str]:
        """The fields an audit record keeps about the actor."""
        return {"who": self.who, "role": self.role}


def role_summary(role: str) -> str:
    """What ``role`` may do, in a few words for a page (``"trainer: browse, compare, ..."``)."""
    if role == "admin":
        return "admin: everything, every run"
    if role not in ROLE_ACTIONS:
        return f"{role}: nothing"
    actions = [a for a in ACTIONS if a in ROLE_ACTIONS[role]]
    own = [a for a in actions if a in OWN_RUNS_ONLY]
    text = ", ".join(a for a in actions if a not in OWN_RUNS_ONLY)
    return f"{role}: {text}" + (f"; {', '.join(own)} their own runs" if own else "")


def local_actor() -> Actor:
    """The machine's own user (the command line, or the dashboard without sign-in): an admin."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = f"uid-{os.getuid()}"
    return Actor(who=user, role="admin", name=user, signed_in=False)


def check_role_map(roles: Any) -> dict[str, str]:
    """``server.json``'s ``roles``, checked: ``{"email" or "group:NAME": role}``; ValueError naming the entry."""
    if not isinstance(roles, Mapping):
        raise ValueError(f"server setting roles is {roles!r}; expected an object such as "
                         "{\"ana@lab.org\": \"admin\", \"group:ml-team\": \"trainer\"}")
    clean: dict[str, str] = {}
    for key, role in roles.items():
        if not isinstance(key, str) or not key.strip() or (key.startswith(GROUP_PREFIX) and not key[len(GROUP_PREFIX):].strip()):
            raise ValueError(f"server setting roles has the key {key!r}; expected an e-mail address or group:NAME")
        if not key.startswith(GROUP_PREFIX) and "@" not in key:
            raise ValueError(f"server setting roles has the key {key!r}; expected an e-mail address (with @) "
                             f"or group:NAME for a group claim")
        if role not in ROLES:
            raise ValueError(f"server setting roles[{key!r}] is {role!r}; expected one of {', '.join(ROLES)}")
        clean[key.strip().lower() if not key.startswith(GROUP_PREFIX) else key.strip()] = role
    return clean


def check_default_role(role: Any) -> str:
    if role not in ROLES + (NO_ACCESS,):
        raise ValueError(f"server setting default_role is {role!r}; expected one of {', '.join(ROLES + (NO_ACCESS,))} "
                         f"({NO_ACCESS!r}: signed-in people not named in roles get no access)")
    return role


def actor_from_claims(claims: Mapping[str, Any], settings: Any) -> Actor:
    """The signed-in identity's :class:`Actor`, its role from the server settings.

    Args:
        claims: the identity's claims (``st.user``): ``email``, ``name`` and the group claim.
        settings: the :class:`~segcore.workspace.ServerSettings` (``roles``, ``default_role``, ``group_claim``).

    Raises:
        ValueError: the identity has no e-mail address (roles are matched on it).
    """
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise ValueError(f"the sign-in gave no e-mail address (claims {sorted(claims)}); segcore matches roles on "
                         "the email claim: ask the identity provider to send it (scope 'email')")
    raw_groups = claims.get(settings.group_claim) or ()
    groups = (raw_groups,) if isinstance(raw_groups, str) else tuple(str(g) for g in raw_groups if isinstance(g, (str, int)))
    matched = []
    role = settings.roles.get(email.lower())
    if role:
        matched.append(role)
    matched += [settings.roles[GROUP_PREFIX + g] for g in groups if GROUP_PREFIX + g in settings.roles]
    role = max(matched, key=ROLES.index) if matched else settings.default_role
    name = claims.get("name") if isinstance(claims.get("name"), str) and claims.get("name") else email
    return Actor(who=email, role=role, name=name, groups=groups, signed_in=True)


def denial(actor: Actor, action: str, owner: str | None = None) -> str | None:
    """Why ``actor`` may not do ``action`` (to a run launched by ``owner``), or None if they may."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    allowed = ROLE_ACTIONS.get(actor.role, frozenset())
    if action not in allowed:
        needed = next(r for r in ROLES if action in ROLE_ACTIONS[r])
        return f"{actor.who} is {'without a role' if actor.role == NO_ACCESS else 'a ' + actor.role}; {action} needs the {needed} role"
    if action in OWN_RUNS_ONLY and actor.role != "admin" and owner != actor.who:
        whose = f"launched by {owner}" if owner else "launched before anyone was recorded"
        return f"{actor.who} is a {actor.role}; a {actor.role} may {action} only their own runs, and this one was {whose}"
    return None


def require(actor: Actor, action: str, owner: str | None = None) -> None:
    """Raise :class:`AccessDenied` unless ``actor`` may do ``action`` (to a run launched by ``owner``)."""
    reason = denial(actor, action, owner)
    if reason is not None:
        raise AccessDenied(reason)


# -- who may reach the server ------------------------------------------------------------------


def is_local_address(address: str | None) -> bool:
    """Whether a ``server.address`` binds to this machine only (unset: Streamlit's default, every interface)."""
    if not address:
        return False
    address = address.strip().strip("[]")
    if address in _LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def signin_configured(secrets_files: list[str | os.PathLike]) -> bool:
    """Whether any of these ``secrets.toml`` files has an ``[auth]`` section; ValueError naming a broken file."""
    for path in map(Path, secrets_files):
        if not path.is_file():
            continue
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is not valid TOML ({exc}); expected Streamlit's secrets file with an [auth] section") from None
        if isinstance(data.get("auth"), dict):
            return True
    return False


def allow_open(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``$SEGCORE_ALLOW_OPEN`` says to serve beyond localhost without sign-in."""
    value = environ.get(ALLOW_OPEN_ENV, "").strip().lower()
    if value in ("", "0", "no", "false"):
        return False
    if value in ("1", "yes", "true"):
        return True
    raise ValueError(f"${ALLOW_OPEN_ENV} is {value!r}; expected 1 (serve beyond localhost without sign-in) or 0")


def exposure_problem(address: str | None, signed_in: bool, open_allowed: bool) -> str | None:
    """Why a server bound to ``address`` must not start, or None: beyond localhost it needs sign-in or an explicit yes."""
    if is_local_address(address) or signed_in or open_allowed:
        return None
    where = f"--server.address {address}" if address else "no --server.address (every network interface)"
    return (f"refusing to serve on {where} without sign-in: anyone who reaches the port could launch and delete runs. "
            f"Configure sign-in ([auth] in .streamlit/secrets.toml, see docs/security.md), bind to 127.0.0.1, "
            f"or allow it explicitly with {ALLOW_OPEN_ENV}=1 (scripts/start.sh --allow-open)")


@dataclass
class _StartArgs:
    address: str | None = "localhost"
    secrets_files: list[str] = field(default_factory=list)


def _start_args(argv: list[str], config_toml: Path) -> _StartArgs:
    """The bind address and secrets files a ``streamlit run`` with these flags would use."""
    args = _StartArgs()
    try:
        server = tomllib.loads(config_toml.read_text(encoding="utf-8")).get("server", {}) if config_toml.is_file() else {}
        args.address = server.get("address") if "address" in server else None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{config_toml} is not valid TOML ({exc})") from None
    if os.environ.get("STREAMLIT_SERVER_ADDRESS"):
        args.address = os.environ["STREAMLIT_SERVER_ADDRESS"]
    files = []
    i = 0
    while i < len(argv):
        flag, _, value = argv[i].partition("=")
        if flag in ("--server.address", "--secrets.files"):
            if not _:
                i += 1
                value = argv[i] if i < len(argv) else ""
            if flag == "--server.address":
                args.address = value
            else:
                files.append(value)
        i += 1
    args.secrets_files = files or [str(Path.home() / ".streamlit" / "secrets.toml"), str(config_toml.parent / "secrets.toml")]
    return args


def main(argv: list[str] | None = None) -> int:
    """``python -m segcore.access [streamlit flags]``: exit 1 with a message if that server must not start."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        start = _start_args(argv, Path(".streamlit") / "config.toml")
        problem = exposure_problem(start.address, signin_configured(start.secrets_files), allow_open())
    except ValueError as exc:
        problem = str(exc)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
