"""Outputs that are either complete or absent: folders and files written beside their destination and
moved into place by rename, and folder manifests (each file's size and sha256, written last) that a
reader checks before trusting a folder.

A kill at any point leaves either the old output, the new one, or (between the two renames that
replace an existing folder) none, plus hidden ``.NAME.tmp-*`` / ``.NAME.old-*`` siblings; never a mix.
The next write to the same destination from this machine tidies the siblings of dead writers (and
puts back an old folder that a kill left aside).
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

MANIFEST_FILE = "manifest.json"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prefix(dest: Path, kind: str, pid: int | None = None) -> str:
    """``.NAME.KIND-HOST-PID-``: whose temporary it is, so that only a dead writer's is tidied."""
    return f"{_host_prefix(dest, kind)}{os.getpid() if pid is None else pid}-"


def _host_prefix(dest: Path, kind: str) -> str:
    return f".{dest.name}.{kind}-{socket.gethostname()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _tidy(dest: Path) -> None:
    """Remove the temporaries of this machine's dead writers to ``dest``; restore an old folder set aside."""
    for kind in ("tmp", "old"):
        head = _host_prefix(dest, kind)
        for path in dest.parent.glob(f"{glob.escape(head)}*"):
            pid = path.name[len(head):].split("-", 1)[0]
            if not pid.isdigit() or _alive(int(pid)):
                continue
            if kind == "old" and not dest.exists():
                os.replace(path, dest)
            elif path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(dest: str | Path, manifest: bool = True) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``dest`` to fill; on success write its manifest (last) and
    move it to ``dest`` (an existing ``dest`` is renamed aside first and removed after). On error the
    temporary folder is removed and ``dest`` is untouched."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _tidy(dest)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(dest, "tmp"), dir=dest.parent))
    try:
        yield tmp
        umask = _umask()
        for path in [tmp, *tmp.rglob("*")]:  # mkdtemp and safetensors make owner-only files
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
        if manifest:
            write_manifest(tmp)
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=_prefix(dest, "old"), dir=dest.parent))
            os.replace(dest, old)
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write(dest: str | Path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary sibling of ``dest``, then rename it to ``dest``."""
    dest = Path(dest)
    _tidy(dest)
    fd, name = tempfile.mkstemp(prefix=_prefix(dest, "tmp"), dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        tmp.chmod(0o666 & ~_umask())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name != MANIFEST_FILE)


def write_manifest(folder: Path) -> None:
    files = {name: {"size": (folder / name).stat().st_size, "sha256": sha256(folder / name)}
             for name in _files(folder)}
    (folder / MANIFEST_FILE).write_text(json.dumps({"files": files}, indent=1) + "\n")


def check_manifest(folder: str | Path, what: str = "folder") -> None:
    """Raise ValueError naming the first file that is missing, altered or not listed in ``folder``'s
    manifest (or the manifest itself when it is missing or unreadable)."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise ValueError(f"{path} is missing: {folder} is an incomplete or pre-manifest {what} (a model "
                         "folder you trust from before manifests: melp.load(folder, verify=False)"
                         ".save_pretrained(new_folder))")
    try:
        listed = json.loads(path.read_text())["files"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is damaged ({e})") from e
    present = set(_files(folder))
    for name, entry in listed.items():
        file = folder / name
        if name not in present:
            raise ValueError(f"{file} is missing: {folder} is an incomplete {what}")
        if file.stat().st_size != entry["size"] or sha256(file) != entry["sha256"]:
            raise ValueError(f"{file} does not match {MANIFEST_FILE} (damaged, or from another write)")
    extra = sorted(present - set(listed))
    if extra:
        raise ValueError(f"{folder / extra[0]} is not in {MANIFEST_FILE}: {folder} mixes files of "
                         f"different writes")
