"""The Asterisk root: built once with debootstrap from Debian unstable, reused after.

A root is reused only when its marker names the current recipe and its Asterisk runs;
otherwise it is deleted and built again. Building goes to ``root.building`` and is renamed
at the end, so an interrupted build never looks finished.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from testpbx.errors import SetupError
from testpbx.paths import Paths

SUITE = "sid"
# One list for this root and the Docker image of the same PBX (docker/asterisk.Dockerfile).
PACKAGE_LIST = Path(__file__).with_name("packages") / "asterisk-root.txt"


def read_packages(path: Path) -> tuple[str, ...]:
    """The package names of a list: one a line, ``#`` starts a comment."""
    names = tuple(name for line in path.read_text().splitlines()
                  if (name := line.split("#", 1)[0].strip()))
    if not names:
        raise SetupError(f"{path} names no packages", f"list the root's packages in {path}")
    return names


PACKAGES = read_packages(PACKAGE_LIST)
RECIPE = f"debootstrap minbase {SUITE} {' '.join(PACKAGES)} v1"
MARKER = ".ivr-testpbx-root"


def hosts_file() -> str:
    """Asterisk looks up the host name on every call: the root must know it."""
    name = socket.gethostname()
    return f"127.0.0.1\tlocalhost {name}\n::1\tlocalhost ip6-localhost\n"


def asterisk_version(root: Path) -> str | None:
    """``Asterisk 22...`` when the root's Asterisk runs, else ``None``."""
    if not (root / "usr/sbin/asterisk").exists():
        return None
    try:
        out = subprocess.run(
            ["chroot", str(root), "/usr/sbin/asterisk", "-V"],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    version = out.stdout.strip()
    return version if out.returncode == 0 and version.startswith("Asterisk 22") else None


def is_usable(root: Path) -> bool:
    marker = root / MARKER
    return marker.is_file() and marker.read_text().strip() == RECIPE and bool(
        asterisk_version(root)
    )


def ensure_root(paths: Paths, log: Path) -> tuple[Path, bool]:
    """Return the root and whether it was built now."""
    if is_usable(paths.root):
        return paths.root, False
    if shutil.which("debootstrap") is None:
        raise SetupError(
            "debootstrap is not installed, so the Asterisk root cannot be built",
            "apt-get install debootstrap (make test and make up do it for you)",
        )
    for stale in (paths.root, paths.building):
        if stale.exists():
            shutil.rmtree(stale)
    paths.cache.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"testpbx: building the Asterisk root in {paths.root} (about a minute; log {log})",
          flush=True)
    with log.open("w") as out:
        done = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
             str(paths.building)],
            stdout=out, stderr=subprocess.STDOUT, check=False,
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
        raise SetupError(
            f"debootstrap failed (exit {done.returncode}); last lines of {log}:\n{tail}",
            "check the network to the Debian mirror and the free space in "
            f"{paths.cache}, then run make again",
        )

    if not asterisk_version(paths.building):
        raise SetupError(
            f"the new root in {paths.building} has no working Asterisk 22",
            f"see {log}; delete {paths.cache} and run make again",
        )
    (paths.building / MARKER).write_text(RECIPE + "\n")
    paths.building.rename(paths.root)
    return paths.root, True
