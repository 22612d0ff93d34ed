"""A second, unprivileged user on this machine, for the cases a course server brings: many
users, one /tmp, one /dev/shm.

Root can make one (``useradd``); anybody else cannot, and the multi-user cases then skip,
saying why. The peer runs shell commands as itself (`Peer.run`), and Python with hftlab
(`Peer.python`). This test run's interpreter may live in a folder the peer cannot enter
(pyenv under /root, mode 0700): the peer's Python then runs in a private mount namespace in
which the closed folder is a tiny tmpfs holding only the needed parts, bound back in. Nothing
outside that namespace changes, and it goes when the process ends.
"""

import contextlib
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile

import pytest

NAME = "hftlab-peer"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Peer:
    def __init__(self, uid: int, gid: int):
        self.uid, self.gid = uid, gid

    def env(self, **extra) -> dict:
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
        return {**keep, "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": ROOT, **extra}

    def run(self, argv, env=None, **kw) -> subprocess.CompletedProcess:
        """`argv` as the peer (no Python of ours needed: mkdir, ln, a shell)."""
        return subprocess.run(argv, user=self.uid, group=self.gid, extra_groups=[], env=env or self.env(),
                              capture_output=True, text=True, timeout=60, **kw)

    def python(self, args, env=None, **kw) -> subprocess.CompletedProcess:
        """``python args...`` as the peer, with hftlab importable (see the module docstring)."""
        script, holders = _reachable_script()
        try:
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                    str(self.uid), str(self.gid), sys.executable, *args]
            return subprocess.run(argv, env=env or self.env(), capture_output=True, text=True, timeout=120, **kw)
        finally:
            for path in holders:
                with contextlib.suppress(OSError):
                    os.rmdir(path)


def _closed_ancestor(path: str):
    """(the first folder on the way to `path` that others may not enter, its child on that
    way), or None if the peer can reach `path`."""
    parts = os.path.realpath(path).split(os.sep)[1:]
    at = "/"
    for i, part in enumerate(parts[:-1]):
        if not os.stat(at).st_mode & 0o001:
            return at, part
        at = os.path.join(at, part)
    return None if os.stat(at).st_mode & 0o001 or not os.path.isdir(at) else (at, parts[-1])


def _reachable_script():
    """A shell script that makes this interpreter, its prefixes and the repository reachable
    in a new mount namespace, then execs ``setpriv`` as the peer: ``sh -c SCRIPT sh UID GID
    PYTHON ARGS...``; and the holder folders it uses, to remove afterwards."""
    needed = {sys.executable, os.path.realpath(sys.executable), sys.prefix, sys.base_prefix, ROOT}
    closed = {}
    for path in needed:
        found = _closed_ancestor(path)
        if found:
            closed.setdefault(found[0], set()).add(found[1])
    lines, holders = ["set -e"], []
    for folder, children in closed.items():
        binds = []
        for child in sorted(children):
            holder = tempfile.mkdtemp(prefix="hftlab-peer-")
            holders.append(holder)
            binds.append((os.path.join(folder, child), holder))
            lines.append(f"mount --bind {shlex.quote(binds[-1][0])} {shlex.quote(holder)}")
        lines.append(f"mount -t tmpfs -o size=64k,mode=0755 hftlab-peer {shlex.quote(folder)}")
        for inside, holder in binds:
            lines += [f"mkdir {shlex.quote(inside)}", f"mount --bind {shlex.quote(holder)} {shlex.quote(inside)}"]
    lines.append('uid=$1 gid=$2; shift 2; exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"')
    return "\n".join(lines), holders


@contextlib.contextmanager
def peer_user():
    """The peer (made now, and removed again, if it did not exist), or pytest.skip."""
    if os.geteuid() != 0:
        pytest.skip("the multi-user cases need a second user, and only root can make one "
                    "(useradd): run the suite as root to include them")
    for tool in ("useradd", "userdel", "unshare", "setpriv"):
        if shutil.which(tool) is None:
            pytest.skip(f"the multi-user cases need {tool}, which this machine lacks")
    made = False
    try:
        entry = pwd.getpwnam(NAME)
    except KeyError:
        made = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", NAME],
                              capture_output=True, text=True)
        if made.returncode != 0:
            pytest.skip(f"could not make a second user with useradd: {made.stderr.strip()}")
        entry, made = pwd.getpwnam(NAME), True
    try:
        yield Peer(entry.pw_uid, entry.pw_gid)
    finally:
        if made:
            subprocess.run(["userdel", NAME], capture_output=True)


def shared_tmp() -> str:
    """A fresh folder like /tmp (everyone may make things in it, sticky), for TMPDIR."""
    path = tempfile.mkdtemp(prefix="hftlab-shared-", dir="/tmp")
    os.chmod(path, 0o1777)
    return path
