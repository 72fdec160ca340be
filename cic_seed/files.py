"""Low-level file helpers of the datadir: whole-file replacement, sharded folders, symlinks."""
import os
import shutil
import threading
from pathlib import Path
from typing import Iterator


def shard(name: str) -> str:
    """``XX/YY`` of a hex name."""
    return f"{name[0:2]}/{name[2:4]}"


def atomic_write(path, data, mode: int = 0o644, durable: bool = True):
    """Replace ``path`` as a whole: write a temp file in the same folder, then rename it.

    Readers see the old file or the new one, never half of one. ``durable`` also fsyncs the file
    and its folder, so the new file survives a power cut. The temp file has ``mode`` from the start
    (keyfiles: 0o600).
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    data = data.encode() if isinstance(data, str) else data
    fd = _open_making_folders(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)


def _fsync_dir(path: Path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_sharded(root: str, key: str, name: str, data: bytes):
    """Write ``root/XX/YY/name`` (XX/YY from ``key``), making the folders only when missing."""
    path = Path(f"{root}/{key[0:2]}/{key[2:4]}/{name}")
    fd = _open_making_folders(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _open_making_folders(path: Path, flags: int, mode: int) -> int:
    """os.open, making the parent folders only when they are missing (one syscall when they exist)."""
    try:
        return os.open(path, flags, mode)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, flags, mode)


def link_relative(link: Path, target: Path):
    """Make ``link`` a relative symlink to ``target`` (making its folder if missing); replace one
    that points elsewhere."""
    relative = os.path.relpath(target, link.parent)
    try:
        try:
            os.symlink(relative, link)
        except FileNotFoundError:
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(relative, link)
    except FileExistsError:
        if os.readlink(link) != relative:
            link.unlink()
            os.symlink(relative, link)


def remove(path: Path):
    """Remove a file, a symlink or a whole folder tree; nothing if ``path`` does not exist."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def walk_sharded(root: Path, suffix: str) -> Iterator[Path]:
    """The files ``root/XX/YY/*suffix`` in name order; nothing if ``root`` is missing."""
    if not root.is_dir():
        return
    for xx in sorted(e.name for e in os.scandir(root) if e.is_dir() and len(e.name) == 2):
        for yy in sorted(e.name for e in os.scandir(root / xx) if e.is_dir()):
            folder = root / xx / yy
            for name in sorted(e.name for e in os.scandir(folder) if e.name.endswith(suffix)):
                yield folder / name

