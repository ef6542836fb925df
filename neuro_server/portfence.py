"""Jobs of different users must not reach each other's ports (process runtime, a root server).

Process-runtime jobs share the host's network, so bob's job could connect to 127.0.0.1:PORT
where alice's job listens.  A listener cannot be told apart by the packets that reach it, but
its answers can: they are sent by a socket of alice's uid.  So, with iptables' ``owner`` and
``connmark`` matches, in a chain of our own jumped to from ``OUTPUT`` (locally sent packets;
loopback traffic passes there once)::

    -m owner --uid-owner U -m conntrack --ctstate NEW -m connmark --mark 0
        -j CONNMARK --set-mark U           # a connection a job of uid U opens is marked U
    -m owner --uid-owner U -m connmark ! --mark 0 -m connmark ! --mark U -j DROP
                                           # U sends nothing on another job uid's connection

Alice's listener answering bob's connection is dropped (bob's connect times out), while
connections opened by root (the server: port-forward, the ingress), by the host's other users
or from outside carry no mark and are answered; each user's jobs reach each other.  Only
packets of job uids match: the server's own traffic and the engines' (containers send from
their own network namespaces) never do.  Both IPv4 (iptables) and IPv6 (ip6tables).

The chain is the server's own (``NEURO-USERS-<hash of its data dir>``), made when a job uid
is first used, kept while jobs run (they outlive the server), and removed (the jump and the
chain) by ``remove``.  Each command is a short blocking process: call from a thread.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import threading
from pathlib import Path

TOOLS = ("iptables", "ip6tables")
PREFIX = "NEURO-USERS-"


def chain_name(data_dir: Path) -> str:
    """The chain of the server of ``data_dir`` (iptables names: 28 characters at most)."""
    digest = hashlib.sha256(str(data_dir.absolute()).encode()).hexdigest()[:8]
    return f"{PREFIX}{digest}"


def uid_rules(uid: int) -> list[list[str]]:
    """The rules of one job uid (see the module's docstring)."""
    u = str(uid)
    return [
        [
            "-m",
            "owner",
            "--uid-owner",
            u,
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
            "-m",
            "connmark",
            "--mark",
            "0",
            "-j",
            "CONNMARK",
            "--set-mark",
            u,
        ],
        [
            "-m",
            "owner",
            "--uid-owner",
            u,
            "-m",
            "connmark",
            "!",
            "--mark",
            "0",
            "-m",
            "connmark",
            "!",
            "--mark",
            u,
            "-j",
            "DROP",
        ],
    ]


BUSY = 4  # iptables' exit status for a resource problem: its lock held too long by another


class FenceError(Exception):
    """iptables is missing or refused; the message says which and why, in one line.
    ``passing``: a failure that goes away (its lock was busy)."""

    def __init__(self, message: str, passing: bool = False) -> None:
        super().__init__(message)
        self.passing = passing


class PortFence:
    def __init__(self, chain: str, tools: tuple[str, ...] = TOOLS) -> None:
        self.chain = chain
        self.tools = tools
        # why ports are not kept apart: iptables is missing, or refused before it ever worked
        self.why_not: str | None = None
        self._uids: set[int] = set()  # uids whose rules are in place
        self._worked = False
        self._lock = threading.Lock()

    def fenced(self, uid: int) -> bool:
        """Whether the rules of ``uid`` are in place (from this process)."""
        return uid in self._uids

    def describe(self) -> str:
        """The `config show` line: whether users' jobs reach each other's ports."""
        why = self.why_not or self._missing()
        if why:
            return f"not kept apart ({why})"
        return "each user's jobs reach only their own jobs' ports directly (iptables)"

    def _missing(self) -> str | None:
        missing = [t for t in self.tools if shutil.which(t) is None]
        return f"no {' nor '.join(missing)}" if missing else None

    def allow(self, uid: int) -> None:
        """Keep the jobs of ``uid`` to their own connections (idempotent).  FenceError when
        iptables is missing or refuses; ``why_not`` says so from then on, unless it worked
        before or the failure is a passing one (a busy lock)."""
        with self._lock:
            if uid in self._uids:
                return
            if (why := self.why_not or self._missing()) is not None:
                self.why_not = why
                raise FenceError(why)
            try:
                for tool in self.tools:
                    self._ensure_chain(tool)
                    for rule in uid_rules(uid):
                        if not self._ok(tool, "-C", self.chain, *rule):
                            self._run(tool, "-A", self.chain, *rule)
            except FenceError as e:
                if not self._worked and not e.passing:
                    self.why_not = str(e)
                raise
            self._uids.add(uid)
            self._worked = True

    def remove(self) -> None:
        """Take the chain away (the jump to it first); nothing when there is none."""
        with self._lock:
            self._uids.clear()
            for tool in self.tools:
                if shutil.which(tool) is None:
                    continue
                while self._ok(tool, "-D", "OUTPUT", "-j", self.chain):
                    pass
                if self._ok(tool, "-F", self.chain):
                    self._ok(tool, "-X", self.chain)

    def _ensure_chain(self, tool: str) -> None:
        if not self._ok(tool, "-L", self.chain, "-n"):
            self._ok(tool, "-N", self.chain)  # (made meanwhile by another process: fine)
            if not self._ok(tool, "-L", self.chain, "-n"):
                self._run(tool, "-N", self.chain)  # the error, said
        if not self._ok(tool, "-C", "OUTPUT", "-j", self.chain):
            self._run(tool, "-I", "OUTPUT", "1", "-j", self.chain)

    def _ok(self, tool: str, *args: str) -> bool:
        try:
            return self._call(tool, *args).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False

    def _run(self, tool: str, *args: str) -> None:
        try:
            r = self._call(tool, *args)
        except (OSError, subprocess.SubprocessError) as e:
            raise FenceError(f"{tool}: {getattr(e, 'strerror', None) or e}") from None
        if r.returncode != 0:
            text = (r.stderr or r.stdout).strip().splitlines()
            raise FenceError(
                f"{tool} refused: {text[0] if text else f'exit {r.returncode}'}",
                passing=r.returncode == BUSY,
            )

    @staticmethod
    def _call(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tool, "-w", "5", *args], capture_output=True, text=True, timeout=30, check=False
        )


def remove_chain(data_dir: Path) -> None:
    """The chain of the server of ``data_dir`` gone (tests, and servers that end idle)."""
    PortFence(chain_name(data_dir)).remove()
