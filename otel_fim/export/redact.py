"""Secrets in command lines are replaced by `REDACTED` before a record leaves the host.

OpenTelemetry's semantic conventions say `process.command_line` / `process.command_args` should not be
collected without sanitization: argv routinely carries passwords and tokens. Redaction works on each
argument (so a quoted command line cannot hide a secret from it), and only on what is exported:
rules still see the real argv. On by default; `redaction.enabled: false` turns it off.

What is redacted (DEFAULT_* below; `redaction.options` and `redaction.patterns` add more):
- the value of a secret-named option: `--password=X`, `--password X`, `--token X`, `--api-key=X`,
  `--client-secret X`, `-token X`, ... (an option with password, passwd, pass, pwd, passphrase, token,
  secret, api-key/apikey, access-key, private-key, credential(s) or auth as a whole part of its name;
  not `...-file`/`-path`/`-dir`/`-env`/`-stdin`/`-prompt`, whose value is not the secret, and not
  `--no-...`);
- `-p<secret>` for programs that take a password that way (mysql and its tools, mariadb, sshpass),
  and sshpass's `-p <secret>`;
- assignments as arguments (`env PASSWORD=X cmd`, `GITHUB_TOKEN=X`, `MYSQL_PWD=X`,
  `-Dspring.datasource.password=X`): a name containing PASSWORD, PASSWD, TOKEN, SECRET, API_KEY,
  ACCESS_KEY, PRIVATE_KEY or CREDENTIAL, or with pass, pwd, passphrase, auth, apikey as a part;
- the password in a URL's user info (`https://user:pass@host` -> `https://user:REDACTED@host`);
- HTTP credentials: `Authorization: ...`, `Proxy-Authorization: ...`, `Cookie: ...`, `X-Api-Key: ...`
  header arguments, and the password of `-u/--user user:pass` (curl, wget);
- all of the above inside an argument that is itself a command line (`sh -c "mysql -pX db"`,
  `su -c ...`, `ssh host "..."`): such an argument is split like a shell would and, when something
  in it was redacted, joined again.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

REDACTED = "REDACTED"

# ... but not one naming where the secret is kept.
_OPTION_NAMES_A_FILE = re.compile(r"[-_](?:file|path|dir|env|prompt|stdin)$", re.I)
# A `NAME=value` argument (`env PASSWORD=x cmd`, `-Ddb.password=x`) whose name holds a secret word.
_ASSIGNMENT = re.compile(r"^(?:-D)?([A-Za-z_][A-Za-z0-9_.-]*)=")
_SECRET_PARTS = frozenset(
    {"password", "passwd", "pass", "pwd", "passphrase", "token", "secret", "apikey", "credential",
     "credentials", "auth", "accesskey", "privatekey"}
)  # fmt: skip
_SECRET_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key"), ("client", "secret")})
MAX_OPTION_NAME = 128  # longer is no option name a program documents
_SECRET_IN_NAME = re.compile(
    r"PASSWORD|PASSWD|TOKEN|SECRET|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL", re.I
)
# The scheme is bounded and must start a word: every regex here stays linear in the argument's length.
_URL_USERINFO = re.compile(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]{0,31}://[^/\s:@]*):[^@\s/]+@")
_HEADER = re.compile(r"^((?:proxy-)?authorization|cookie|x-api-key|x-auth-token)\s*:\s*\S.*$", re.I | re.S)
# Programs whose `-p<secret>` (attached) is a password.
ATTACHED_P_PROGRAMS = frozenset(
    {"mysql", "mysqldump", "mysqladmin", "mysqlimport", "mysqlshow", "mysqlcheck", "mysqlbinlog",
     "mysqlpump", "mariadb", "mariadb-dump", "mariadb-admin", "mariadb-import", "mariadb-check", "sshpass"}
)  # fmt: skip
USER_PASSWORD_PROGRAMS = frozenset({"curl", "wget"})


class RedactionError(ValueError):
    pass


@dataclass
class Redactor:
    """`argv(args)` returns a copy with secrets replaced. `options` are extra option names whose
    value is secret (`--db-key`); `patterns` are extra regular expressions searched in each argument:
    the group named `secret` (else the whole match) is replaced."""

    enabled: bool = True
    options: Sequence[str] = ()
    patterns: Sequence[str] = ()
    _patterns: list[re.Pattern[str]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        for text in self.patterns:
            try:
                self._patterns.append(re.compile(text))
            except re.error as exc:
                raise RedactionError(f"redaction pattern {text!r}: {exc}") from None
        self._options = {o.strip() for o in self.options}

    def argv(self, args: Sequence[str]) -> list[str]:
        if not self.enabled:
            return list(args)
        out = self._flat(args)
        for i, arg in enumerate(out):
            if any(c.isspace() for c in arg):  # `sh -c "mysql -pX db"`: a command line in one argument
                words = _split(arg)
                redacted = self._flat(words)
                if redacted != words:
                    out[i] = shlex.join(redacted)
        return out

    def _flat(self, args: Sequence[str]) -> list[str]:
        out = list(args)
        program = os.path.basename(out[0]) if out else ""
        value_is_secret = False  # the previous argument was a secret-taking option
        for i, arg in enumerate(out):
            if value_is_secret and not arg.startswith("--"):  # `--auth --verbose`: a flag, not a value
                out[i] = REDACTED
                value_is_secret = False
                continue
            out[i], value_is_secret = self._one(program, arg, out[i - 1] if i else "")
        return out

    def _one(self, program: str, arg: str, previous: str) -> tuple[str, bool]:
        """(the argument redacted, whether the next argument is a secret)."""
        if arg.startswith("-"):
            name, eq, _value = arg.partition("=")
            if self._secret_option(name):
                return (f"{name}={REDACTED}", False) if eq else (arg, True)
            if program in ATTACHED_P_PROGRAMS and arg.startswith("-p") and len(arg) > 2 and not eq:
                return "-p" + REDACTED, False
            if program == "sshpass" and arg == "-p":
                return arg, True
        if program in USER_PASSWORD_PROGRAMS and previous in ("-u", "--user") and ":" in arg:
            return arg.split(":", 1)[0] + ":" + REDACTED, False
        if (m := _ASSIGNMENT.match(arg)) is not None and _secret_name(m.group(1)):
            return m.group(0) + REDACTED, False
        if _HEADER.match(arg):
            return _HEADER.sub(rf"\1: {REDACTED}", arg), False
        arg = _URL_USERINFO.sub(rf"\1:{REDACTED}@", arg)
        for pattern in self._patterns:
            arg = pattern.sub(_replace_secret, arg)
        return arg, False

    def _secret_option(self, name: str) -> bool:
        """--password, --db-pass, -token, --client_secret, --api-key: a secret word as a whole part
        of the name (not --passive, --bypass), unless the name says the value is a file or a prompt."""
        if name in self._options:
            return True
        bare = name.lstrip("-")
        if len(name) > MAX_OPTION_NAME or not bare or bare.lower().startswith("no-"):
            return False
        if _OPTION_NAMES_A_FILE.search(name):
            return False
        parts = re.split(r"[-_.]", bare.lower())
        return not _SECRET_PARTS.isdisjoint(parts) or any(
            pair in _SECRET_PAIRS for pair in zip(parts, parts[1:], strict=False)
        )


def _split(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:  # unbalanced quotes (hostile or cut off): words are still words
        return command.split()


def _secret_name(name: str) -> bool:
    return bool(_SECRET_IN_NAME.search(name)) or not _SECRET_PARTS.isdisjoint(
        re.split(r"[._-]", name.lower())
    )


def _replace_secret(m: re.Match[str]) -> str:
    if "secret" in m.re.groupindex and m.group("secret") is not None:
        start, end = m.span("secret")
        whole_start = m.start()
        text = m.group(0)
        return text[: start - whole_start] + REDACTED + text[end - whole_start :]
    return REDACTED


_active = Redactor()
_generation = 0


def active() -> Redactor:
    """The redactor records are built with (on, with the defaults, until `configure`)."""
    return _active


def generation() -> int:
    """Changes with every `configure`: memoized records built under another redactor are stale."""
    return _generation


def configure(redactor: Redactor) -> None:
    global _active, _generation
    _active = redactor
    _generation += 1
