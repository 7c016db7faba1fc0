"""Downloading dataset files: stream, verify, record checksums, extract.

Every download streams into a temporary ``.part`` file beside its target and is
renamed to the final name only after the byte count and the checksum were checked,
so an interrupted or corrupt download never sits under the final name.

Where the registry knows no published checksum, the first use computes the file's
sha256, reports it and records it in ``<raw dir>/CHECKSUMS`` (``sha256sum`` format);
later uses verify against that record.

Example:
    >>> from recstudio.data.download import fetch_file
    >>> path = fetch_file("https://files.grouplens.org/datasets/movielens/ml-1m.zip",
    ...                   "/tmp/data/ml-1m/raw", checksum={"md5": "c4d9eecfca2ab87c1945afe126590906"})
    ...                                                          # doctest: +SKIP
"""
import hashlib
import http.client
import logging
import os
import shutil
import socket
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Dict, Mapping, Optional

from recstudio.utils.errors import ConfigError, DataError, DownloadError
from recstudio.utils.io import atomic_path, file_digest

logger = logging.getLogger("recstudio.data")

#: checksum algorithm -> length of its hex digest
ALGORITHMS = {"md5": 32, "sha1": 40, "sha256": 64}
#: archive kinds a registry entry may declare. ``gz`` is one gzip-compressed file that is
#: kept compressed (converters read it through gzip); ``none`` is a plain file.
ARCHIVES = ("zip", "tar.gz", "gz", "none")
#: name of the file, in a dataset's raw folder, that records checksums computed on first use
CHECKSUM_RECORD = "CHECKSUMS"

Checksum = Optional[Dict[str, str]]


def normalize_checksum(value, where: str = "checksum") -> Checksum:
    """Validate a checksum given as a dict (``{'md5': hex}``), ``'md5:hex'`` or ``None``.

    Args:
        value: the checksum as written in a registry YAML or passed by a caller.
        where: a label for error messages (e.g. the YAML path).

    Returns:
        ``{algorithm: lowercase hex}`` or ``None``.

    Raises:
        ConfigError: an unknown algorithm or a digest of the wrong length / not hex.

    Example:
        >>> normalize_checksum("md5:0E33842E24A9C977BE4E0107933C0723")
        {'md5': '0e33842e24a9c977be4e0107933c0723'}
    """
    if value is None or value == {}:
        return None
    if isinstance(value, str):
        algo, sep, digest = value.partition(":")
        if not sep:
            raise ConfigError(f"{where}: checksum {value!r} must be 'algorithm:hex' (e.g. 'sha256:...') "
                              "or a mapping like {md5: ...}.")
        value = {algo: digest}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: checksum must be a mapping like {{sha256: ...}} or null, got {value!r}.")
    out = {}
    for algo, digest in value.items():
        algo = str(algo).lower()
        if algo not in ALGORITHMS:
            raise ConfigError(f"{where}: unknown checksum algorithm {algo!r}; use one of {sorted(ALGORITHMS)}.")
        digest = str(digest).strip().lower()
        if len(digest) != ALGORITHMS[algo] or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(f"{where}: {algo} digest {digest!r} is not {ALGORITHMS[algo]} hex characters.")
        out[algo] = digest
    return out


def describe_checksum(checksum: Checksum) -> str:
    """``'md5 0e33…'`` style text for messages; ``'no published checksum'`` for ``None``."""
    if not checksum:
        return "no published checksum"
    return ", ".join(f"{a} {d}" for a, d in sorted(checksum.items()))


def _mismatches(expected: Checksum, actual: Mapping[str, str]):
    return [(a, d, actual[a]) for a, d in (expected or {}).items() if actual.get(a) != d]


def manual_hint(url: str, dest: Path, checksum: Checksum) -> str:
    """The sentence telling an offline user where to put a file by hand."""
    check = (f"verified ({describe_checksum(checksum)})" if checksum else
             "verified (its sha256 is recorded on first use)")
    return (f"If this machine is offline, download {url} on another machine and put the file at "
            f"{dest} (exactly this path); it will then be {check} and used.")


def _progress_bar(total: Optional[int], desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress is optional
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, file=sys.stderr)


def download_file(url: str, dest, checksum: Checksum = None, progress: bool = True, timeout: float = 60.0,
                  chunk_size: int = 1 << 20) -> Dict[str, str]:
    """Stream ``url`` into ``dest``; verify length and checksum before the file gets its name.

    Args:
        url: an ``http(s)://`` or ``file://`` address.
        dest: the final path of the file.
        checksum: expected digests (see :func:`normalize_checksum`), or ``None``.
        progress: show a tqdm progress bar when tqdm is installed.
        timeout: seconds to wait for the connection and for each read.
        chunk_size: bytes per read.

    Returns:
        ``{'sha256': hex, 'md5': hex, ...}`` of the downloaded bytes.

    Raises:
        DownloadError: the server could not be reached, answered with an error, closed the
            connection early, or the bytes fail the checksum. Nothing is left at ``dest``
            (nor a ``.part`` file); the message names the URL and where to put the file by hand.

    Example:
        >>> download_file("https://example.org/data.zip", "/tmp/raw/data.zip")   # doctest: +SKIP
        {'sha256': '...', 'md5': '...'}
    """
    dest = Path(dest)
    checksum = normalize_checksum(checksum, f"checksum for {url}")
    algos = sorted({"sha256", "md5", *(checksum or {})})
    hint = manual_hint(url, dest, checksum)
    request = urllib.request.Request(url, headers={"User-Agent": "recstudio-dataset-downloader (python urllib)"})
    try:
        with atomic_path(dest) as tmp:
            hashers = {a: hashlib.new(a) for a in algos}
            received = 0
            with urllib.request.urlopen(request, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                bar = _progress_bar(total, dest.name, progress)
                try:
                    with open(tmp, "wb") as f:
                        while True:
                            block = response.read(chunk_size)
                            if not block:
                                break
                            f.write(block)
                            for h in hashers.values():
                                h.update(block)
                            received += len(block)
                            if bar is not None:
                                bar.update(len(block))
                finally:
                    if bar is not None:
                        bar.close()
            if total is not None and received != total:
                raise DownloadError(f"download of {url} was incomplete: got {received} of {total} bytes; "
                                    f"nothing was saved. Retry. {hint}")
            digests = {a: h.hexdigest() for a, h in hashers.items()}
            bad = _mismatches(checksum, digests)
            if bad:
                detail = "; ".join(f"expected {a} {e}, got {g}" for a, e, g in bad)
                raise DownloadError(f"checksum mismatch for {url}: {detail} ({received} bytes). The file was "
                                    f"deleted, not saved as {dest}. Retry; if it fails again the file at the URL "
                                    "differs from the registered one (a changed release or a proxy's error page).")
    except DownloadError:
        raise
    except urllib.error.HTTPError as e:
        raise DownloadError(f"could not download {url}: the server answered HTTP {e.code} {e.reason}. {hint}") from e
    except urllib.error.URLError as e:
        raise DownloadError(f"could not download {url}: {e.reason}. {hint}") from e
    except (http.client.HTTPException, socket.timeout, TimeoutError, ConnectionError) as e:
        raise DownloadError(f"could not download {url}: the connection failed or was cut "
                            f"({type(e).__name__}: {e}); nothing was saved. {hint}") from e
    except OSError as e:
        raise DownloadError(f"could not download {url} to {dest}: {e}. {hint}") from e
    return digests


def read_checksum_record(raw_dir) -> Dict[str, str]:
    """Recorded sha256 digests of a raw folder: ``{filename: sha256}`` (empty when none)."""
    path = Path(raw_dir) / CHECKSUM_RECORD
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        digest, sep, name = line.strip().partition("  ")
        if sep and len(digest) == 64:
            out[name.lstrip("*")] = digest.lower()
    return out


def record_checksum(raw_dir, filename: str, sha256: str) -> Path:
    """Add or replace ``filename``'s sha256 in ``<raw_dir>/CHECKSUMS`` (atomic rewrite)."""
    record = read_checksum_record(raw_dir)
    record[filename] = sha256
    path = Path(raw_dir) / CHECKSUM_RECORD
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{d}  {n}\n" for n, d in sorted(record.items())), encoding="utf-8")
    return path


def verify_file(path, checksum: Checksum, url: Optional[str] = None, origin: str = "") -> Dict[str, str]:
    """Check a file already on disk against ``checksum``; on mismatch move it aside.

    Args:
        path: the file.
        checksum: expected digests, or ``None`` (then only the sha256 is computed).
        url: where the file comes from, for the message.
        origin: extra text for the message (e.g. which record the checksum came from).

    Returns:
        The computed digests (``sha256`` always, plus the expected algorithms).

    Raises:
        DownloadError: a digest differs; the file is renamed to ``<name>.corrupt``.

    Example:
        >>> verify_file("/tmp/raw/ml-1m.zip", {"md5": "c4d9eecfca2ab87c1945afe126590906"})  # doctest: +SKIP
    """
    path = Path(path)
    algos = sorted({"sha256", *(checksum or {})})
    digests = {a: file_digest(path, a) for a in algos}
    bad = _mismatches(checksum, digests)
    if bad:
        corrupt = path.with_name(path.name + ".corrupt")
        os.replace(path, corrupt)
        detail = "; ".join(f"expected {a} {e}, got {g}" for a, e, g in bad)
        source = f" (source {url})" if url else ""
        raise DownloadError(f"checksum mismatch for {path}{source}: {detail}{origin}. The file was moved aside "
                            f"to {corrupt}. Put the correct file at {path}, or delete it to download it again.")
    return digests


def fetch_file(url: str, raw_dir, filename: Optional[str] = None, checksum: Checksum = None,
               progress: bool = True, timeout: float = 60.0) -> Path:
    """Make sure ``<raw_dir>/<filename>`` exists and is verified; download it when missing.

    A file put there by hand is verified like a download. With no published checksum,
    the sha256 of the first file used is recorded in ``<raw_dir>/CHECKSUMS`` and reported;
    later uses must match it.

    Args:
        url: where to download from.
        raw_dir: the dataset's raw folder.
        filename: the local name (default: the last part of the URL).
        checksum: the published checksum, or ``None``.
        progress: show a progress bar while downloading.
        timeout: network timeout in seconds.

    Returns:
        The verified file's path.

    Raises:
        DownloadError: download failure or checksum mismatch (see :func:`download_file`).

    Example:
        >>> fetch_file("https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
        ...            "/tmp/data/lastfm-2k/raw")                      # doctest: +SKIP
    """
    raw_dir = Path(raw_dir)
    filename = filename or url_filename(url)
    dest = raw_dir / filename
    checksum = normalize_checksum(checksum, f"checksum for {url}")
    recorded = None if checksum else read_checksum_record(raw_dir).get(filename)
    expected = checksum or ({"sha256": recorded} if recorded else None)
    origin = f" (recorded on first use in {raw_dir / CHECKSUM_RECORD}; if the provider published a new " \
             f"version, delete that line and retry)" if recorded else ""
    if dest.is_file():
        digests = verify_file(dest, expected, url, origin)
    else:
        try:
            digests = download_file(url, dest, expected, progress=progress, timeout=timeout)
        except DownloadError as e:
            if recorded and "checksum mismatch" in str(e):
                raise DownloadError(f"{e}{origin}") from e
            raise
    if expected is None:
        record_checksum(raw_dir, filename, digests["sha256"])
        logger.warning("%s has no published checksum; recorded its sha256 %s in %s (later uses are verified "
                       "against it).", filename, digests["sha256"], raw_dir / CHECKSUM_RECORD)
    return dest


def url_filename(url: str) -> str:
    """The file name at the end of a URL (query and fragment removed)."""
    name = url.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    if not name:
        raise ConfigError(f"cannot take a file name from URL {url!r}; set 'filename' in the dataset spec.")
    return name


def archive_stem(filename: str) -> str:
    """``ml-1m.zip`` -> ``ml-1m``; ``x.tar.gz`` / ``x.tgz`` -> ``x``."""
    for ext in (".tar.gz", ".tgz", ".zip"):
        if filename.lower().endswith(ext):
            return filename[: -len(ext)]
    return filename


def _check_member(root: Path, name: str, archive: Path):
    target = (root / name).resolve()
    if name.startswith(("/", "\\")) or (target != root and root not in target.parents):
        raise DataError(f"{archive}: member {name!r} would be written outside the extraction folder; "
                        "refusing to extract this archive.")


def extract_archive(path, archive: str, dest) -> Path:
    """Extract a ``zip`` or ``tar.gz`` file into ``dest`` (all or nothing).

    The archive is unpacked into a temporary folder beside ``dest`` which is renamed to
    ``dest`` when complete; an existing ``dest`` is taken as already extracted. Members
    that would land outside ``dest`` (``../x``, absolute paths, links) are refused.

    Args:
        path: the archive file.
        archive: ``'zip'`` or ``'tar.gz'`` (``'gz'`` and ``'none'`` need no extraction).
        dest: the folder to create.

    Returns:
        ``dest``.

    Raises:
        DataError: a corrupt archive, an unsafe member, or an unknown archive kind.

    Example:
        >>> extract_archive("/tmp/raw/ml-1m.zip", "zip", "/tmp/raw/ml-1m")     # doctest: +SKIP
    """
    path, dest = Path(path), Path(dest)
    if archive not in ("zip", "tar.gz"):
        raise ConfigError(f"cannot extract archive kind {archive!r}; extract_archive handles 'zip' and 'tar.gz'.")
    if dest.is_dir():
        return dest
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract-", dir=dest.parent))
    try:
        root = tmp.resolve()
        if archive == "zip":
            with zipfile.ZipFile(path) as zf:
                for name in zf.namelist():
                    _check_member(root, name, path)
                zf.extractall(tmp)
        else:
            with tarfile.open(path, "r:gz") as tf:
                members = tf.getmembers()
                for m in members:
                    _check_member(root, m.name, path)
                    if m.issym() or m.islnk():
                        raise DataError(f"{path}: member {m.name!r} is a link; refusing to extract this archive.")
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, members=members, filter="data")
                else:  # pragma: no cover - Python < 3.11.4
                    tf.extractall(tmp, members=members)
        os.chmod(tmp, 0o755)
        try:
            os.replace(tmp, dest)
        except OSError:
            if not dest.is_dir():  # else another process extracted the same archive first
                raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"cannot extract {path} ({type(e).__name__}: {e}). The file is damaged: delete it "
                        "and run again to download it anew.") from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest



def bundled_folder(spec, repo_root) -> Optional[Path]:
    """The spec's bundled folder when present with every listed file, verified; else ``None``.

    Raises:
        DataError: a bundled file's sha256 differs from ``spec.bundled_checksums``.
    """
    if not spec.bundled:
        return None
    folder = Path(spec.bundled)
    folder = folder if folder.is_absolute() else Path(repo_root) / folder
    missing = [f for f in spec.bundled_checksums if not (folder / f).is_file()]
    if not folder.is_dir() or missing:
        logger.info("bundled folder %s is absent or lacks %s; downloading instead.", folder, missing)
        return None
    for name, expected in spec.bundled_checksums.items():
        actual = file_digest(folder / name, "sha256")
        if actual != str(expected).lower():
            raise DataError(f"bundled file {folder / name} has sha256 {actual}, expected {expected}: the file was "
                            f"modified. Restore the original (e.g. 'git checkout -- {folder / name}'), or move the "
                            f"folder {folder} away so that {spec.name} is downloaded instead.")
    return folder


def extracted_hint(spec, raw_dir) -> str:
    """The offline message's second option: the archive's extracted original files."""
    names = list(spec.extracted_checksums)
    return (f"Or, instead of the archive, put its extracted original files {names} (at least {names[0]!r}) in "
            f"{Path(raw_dir)} (or {Path(raw_dir) / archive_stem(spec.filename)}); each is verified against its "
            "published sha256 and used.")


def extracted_originals(spec, raw_dir) -> Optional[Dict[str, Dict[str, str]]]:
    """Verified extracted files standing in for the spec's absent archive, or ``None``.

    The files of ``spec.extracted_checksums`` are looked up in ``raw_dir`` and in
    ``raw_dir/<archive stem>/`` (the archive's own layout). They are used only when the first
    listed file (the interactions) is there; every listed file present is verified against its
    own sha256, and a mismatch is an error (the file is moved aside, see :func:`verify_file`).

    Returns:
        ``{file name: {'sha256': hex}}`` of the files found, or ``None``.

    Raises:
        DownloadError: a present file differs from its published sha256.
    """
    listed = spec.extracted_checksums
    if not listed or not spec.filename:
        return None
    raw_dir = Path(raw_dir)
    places = (raw_dir, raw_dir / archive_stem(spec.filename))
    present = {}
    for name in listed:
        hits = [folder / name for folder in places if (folder / name).is_file()]
        if hits:
            present[name] = hits[0]
    if next(iter(listed)) not in present:
        return None
    origin = f" (the published sha256 of {spec.name}'s extracted {{}}, used because {spec.filename} is absent)"
    return {name: {"sha256": verify_file(path, {"sha256": listed[name]}, spec.url, origin.format(name))["sha256"]}
            for name, path in present.items()}


def acquire_raw_files(spec, raw_dir, repo_root, progress: bool = True):
    """Make a dataset's raw files present and verified.

    Uses the bundled folder when present (see :func:`bundled_folder`); else fetches every
    download of the spec into ``raw_dir`` (see :func:`fetch_file`) and extracts archives
    into ``raw_dir/<archive stem>/``.

    Args:
        spec: a :class:`~recstudio.data.registry.DatasetSpec`.
        raw_dir: the dataset's raw folder.
        repo_root: where relative ``bundled`` folders are looked up.
        progress: show download progress.

    Returns:
        ``(source folder, {file name: verified digests}, [extracted folders])``.

    Raises:
        DownloadError: a download or checksum failed. DataError: bundled-only data is missing.

    Example:
        >>> acquire_raw_files(get_spec("ml-1m"), "/tmp/rs/ml-1m/raw", ".")    # doctest: +SKIP
    """
    folder = bundled_folder(spec, repo_root)
    bundled_sources = {f: {"sha256": d} for f, d in spec.bundled_checksums.items()}
    if folder is not None and not spec.extra_files:
        return folder, bundled_sources, []
    if folder is None and not spec.url:
        raise DataError(f"dataset {spec.name!r} is bundled-only, but its folder {Path(repo_root) / spec.bundled} is "
                        f"missing or incomplete (needs {sorted(spec.bundled_checksums)}); restore it from the "
                        "repository.")
    raw_dir = Path(raw_dir)
    sources, extracted = {}, []
    downloads = list(enumerate(spec.downloads()))
    if folder is not None:  # the bundled main files linked beside the downloaded extras (ml-100k-kg: .kg / .link)
        sources.update(bundled_sources)
        (raw_dir / folder.name).mkdir(parents=True, exist_ok=True)
        for name in spec.bundled_checksums:
            if not (raw_dir / folder.name / name).exists():
                (raw_dir / folder.name / name).symlink_to((folder / name).resolve())
        downloads = downloads[1:] if spec.url else downloads
    for index, d in downloads:
        if index == 0 and not (raw_dir / d["filename"]).is_file():
            originals = extracted_originals(spec, raw_dir)
            if originals is not None:
                sources.update(originals)
                continue
        try:
            path = fetch_file(d["url"], raw_dir, d["filename"], d["checksum"], progress=progress)
        except DownloadError as e:
            if index == 0 and spec.extracted_checksums and "could not download" in str(e):
                raise DownloadError(f"{e} {extracted_hint(spec, raw_dir)}") from e
            raise
        sources[d["filename"]] = d["checksum"] or {"sha256": read_checksum_record(raw_dir).get(d["filename"])}
        if d["archive"] in ("zip", "tar.gz"):
            extracted.append(extract_archive(path, d["archive"], raw_dir / archive_stem(d["filename"])))
    return raw_dir, sources, extracted
