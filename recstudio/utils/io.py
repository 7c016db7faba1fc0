"""File helpers: atomic writes and checksums.

Every file RecStudio writes (cache, atomic files, downloads) goes through
:func:`atomic_path`, so a crash never leaves a half-written file under the final name.
"""
import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str = "", durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    The temporary file is removed if the body raises, so ``path`` either keeps its
    old content or gets the complete new one.

    Args:
        path: the final file.
        suffix: appended to the temporary file's name (after ``.part``).
        durable: also ``fsync`` the new file before the rename and its folder after it, so that a
            power loss right after the rename cannot leave an empty or partial file (checkpoints).

    Example:
        >>> with atomic_path("/tmp/out.txt") as tmp:          # doctest: +SKIP
        ...     tmp.write_text("hello")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the final file normal permissions
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's) data to the disk; folders cannot be opened on Windows (skipped)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (IsADirectoryError, PermissionError):
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_digest(path: PathLike, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file's bytes (``sha256`` or ``md5``), read in chunks.

    Example:
        >>> file_digest("datasets/ml-100k/u.info")[:8]        # doctest: +SKIP
        '5b0a40b2'
    """
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk_size)
            if not block:
                break
            h.update(block)
    return h.hexdigest()
