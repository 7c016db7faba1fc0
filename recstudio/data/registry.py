"""The dataset registry: what each dataset is, where it comes from, and how it becomes atomic files.

Each dataset is described by a YAML file in ``recstudio/data/registry/`` (see
``docs/datasets.md`` for the schema). A *family* YAML (``family:`` + ``categories:``)
describes many datasets at once, e.g. every Amazon 2014 category; its members are
registered under their own names and reachable as ``"<family>:<Category>"``.

:func:`prepare_dataset` turns a name into a folder of atomic files::

    <data_dir>/<name>/raw/       downloaded files (+ CHECKSUMS recorded on first use)
    <data_dir>/<name>/atomic/    <name>.inter [.user .item .net] + manifest.json

Example:
    >>> from recstudio.data.registry import get_spec, prepare_dataset
    >>> get_spec("ML-100K").name
    'ml-100k'
    >>> folder = prepare_dataset("ml-100k")        # doctest: +SKIP
"""
import dataclasses
import json
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import yaml

from recstudio.data.converters import convert_into
from recstudio.data.download import ARCHIVES, acquire_raw_files, normalize_checksum, url_filename
from recstudio.utils.errors import ConfigError, DatasetNotFoundError
from recstudio.utils.suggest import did_you_mean

logger = logging.getLogger("recstudio.data")

REGISTRY_DIR = Path(__file__).with_name("registry")
#: the repository root, where ``datasets/`` holds bundled data (absent in installed packages)
REPO_ROOT = Path(__file__).resolve().parents[2]
ATOMIC_DIR, RAW_DIR, MANIFEST = "atomic", "raw", "manifest.json"
#: bump when converters change their output, so prepared folders are rebuilt
FORMAT_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class DatasetSpec:
    """One registered dataset (built from its YAML).

    Args:
        name: the dataset's name, also its folder name (letters, digits, ``. _ -``).
        description, citation, homepage, license_note: for humans (docs, ``--help``).
        url: the download address, or ``None`` for bundled-only data.
        checksum: the provider's digest(s) of the download, e.g. ``{'md5': '...'}``; ``None``
            when none is published (the sha256 is then recorded on first use).
        archive: ``'zip'``, ``'tar.gz'``, ``'gz'`` (one gzip file, read compressed) or ``'none'``.
        bundled: a folder (relative to the repository root, or absolute) holding the raw
            files; used instead of downloading when present and verified.
        converter: a registered converter name or ``'package.module:function'``.
        converter_args: keyword arguments of the converter.
        config: the dataset's default data-config values (field names, thresholds, ...).
        yaml_path: the YAML it was read from.
        filename: local name of the download (default: the URL's last part).
        extra_files: more downloads, each ``{url, checksum, archive, filename}``.
        bundled_checksums: ``{file name: sha256}`` the bundled folder must match.
        extracted_checksums: ``{file name: sha256}`` of the files inside the main archive, as
            published: when the archive is absent from ``raw/`` these extracted originals are
            accepted in its place (the first listed one must be there), each verified.
        aliases: other names that find this dataset.
        family, category: set for members of a family YAML.
        atomic: a folder that already holds RecBole atomic files ``<name>.inter`` (``.item``
            ``.user`` ``.kg`` ``.link`` ``.net``): nothing is downloaded or converted. Unregistered
            names resolve to such specs (see :func:`get_spec`).

    Example:
        >>> spec = DatasetSpec(name="my-data", url="https://example.org/my.zip", archive="zip",
        ...                    converter="movielens_csv")
        >>> spec.filename
        'my.zip'
    """

    name: str
    description: str = ""
    citation: str = ""
    homepage: str = ""
    license_note: str = ""
    url: Optional[str] = None
    checksum: Optional[Dict[str, str]] = None
    archive: str = "none"
    bundled: Optional[str] = None
    converter: str = ""
    converter_args: Dict[str, Any] = field(default_factory=dict)
    config: Dict[str, Any] = field(default_factory=dict)
    yaml_path: Optional[Path] = None
    filename: Optional[str] = None
    extra_files: List[Dict[str, Any]] = field(default_factory=list)
    bundled_checksums: Dict[str, str] = field(default_factory=dict)
    extracted_checksums: Dict[str, str] = field(default_factory=dict)
    aliases: List[str] = field(default_factory=list)
    family: Optional[str] = None
    category: Optional[str] = None
    atomic: Optional[str] = None

    def __post_init__(self):
        where = f"dataset spec {self.name!r}" + (f" ({self.yaml_path})" if self.yaml_path else "")
        if self.atomic is not None:  # a ready atomic folder: named after its files, nothing to fetch
            if not isinstance(self.name, str) or not self.name or not isinstance(self.config, dict):
                raise ConfigError(f"{where}: an atomic-folder spec needs a name and a config mapping.")
            self.atomic = str(self.atomic)
            self.aliases = [str(a) for a in (self.aliases or [])]
            return
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(f"{where}: name must be letters, digits, '.', '_' or '-' (it names a folder).")
        if not self.url and not self.bundled:
            raise ConfigError(f"{where}: give 'url' (download) or 'bundled' (a folder with the files), or both.")
        if self.archive not in ARCHIVES:
            raise ConfigError(f"{where}: archive {self.archive!r} is not one of {list(ARCHIVES)}."
                              + did_you_mean(str(self.archive), ARCHIVES))
        if not self.converter or not isinstance(self.converter, str):
            raise ConfigError(f"{where}: 'converter' must name a converter (see list_converters()).")
        for key in ("converter_args", "config", "bundled_checksums", "extracted_checksums"):
            if not isinstance(getattr(self, key), dict):
                raise ConfigError(f"{where}: {key!r} must be a mapping, got {getattr(self, key)!r}.")
        self.checksum = normalize_checksum(self.checksum, where)
        self.extracted_checksums = {str(n): normalize_checksum({"sha256": d}, f"{where}: extracted file {n!r}")["sha256"]
                                    for n, d in self.extracted_checksums.items()}
        if self.url and not self.filename:
            self.filename = url_filename(self.url)
        files = []
        for i, extra in enumerate(self.extra_files or []):
            if not isinstance(extra, dict) or not extra.get("url"):
                raise ConfigError(f"{where}: extra_files[{i}] must be a mapping with 'url'.")
            bad = set(extra) - {"url", "checksum", "archive", "filename"}
            if bad:
                raise ConfigError(f"{where}: extra_files[{i}] has unknown keys {sorted(bad)}; "
                                  "use url, checksum, archive, filename.")
            archive = extra.get("archive", "none")
            if archive not in ARCHIVES:
                raise ConfigError(f"{where}: extra_files[{i}] archive {archive!r} is not one of {list(ARCHIVES)}.")
            files.append({"url": extra["url"], "checksum": normalize_checksum(extra.get("checksum"), where),
                          "archive": archive, "filename": extra.get("filename") or url_filename(extra["url"])})
        self.extra_files = files
        self.aliases = [str(a) for a in (self.aliases or [])]
        if self.yaml_path is not None:
            self.yaml_path = Path(self.yaml_path)

    def downloads(self) -> List[Dict[str, Any]]:
        """Every file to download: ``[{url, checksum, archive, filename}, ...]`` (empty if bundled-only)."""
        main = [{"url": self.url, "checksum": self.checksum, "archive": self.archive, "filename": self.filename}]
        return (main if self.url else []) + list(self.extra_files)

    @classmethod
    def from_dict(cls, data: Dict[str, Any], yaml_path=None) -> "DatasetSpec":
        """Build a spec from a YAML mapping; unknown keys are errors naming the closest key."""
        if not isinstance(data, dict):
            raise ConfigError(f"{yaml_path or 'dataset spec'}: expected a mapping of spec keys, got {type(data).__name__}.")
        known = [f.name for f in dataclasses.fields(cls) if f.name != "yaml_path"]
        for key in data:
            if key not in known:
                raise ConfigError(f"{yaml_path or 'dataset spec'}: unknown key {key!r}." + did_you_mean(str(key), known)
                                  + f" Valid keys: {known}.")
        if "name" not in data:
            raise ConfigError(f"{yaml_path or 'dataset spec'}: the spec has no 'name'.")
        return cls(**{k: v for k, v in data.items()}, yaml_path=yaml_path)


# ---- the registry ---------------------------------------------------------------------------
_SPECS: Dict[str, DatasetSpec] = {}
_ALIASES: Dict[str, str] = {}
_FAMILIES: Dict[str, Dict[str, str]] = {}     # family -> {normalised category: dataset key}
_LOADED = False
_FAMILY_KEYS = ("family", "categories", "checksums")


def _norm_category(category: str) -> str:
    return re.sub(r"[\s_-]+", "_", str(category).strip()).lower()


def _substitute(value, mapping: Dict[str, str]):
    if isinstance(value, str):
        for k, v in mapping.items():
            value = value.replace("{" + k + "}", v)
        return value
    if isinstance(value, list):
        return [_substitute(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, mapping) for k, v in value.items()}
    return value


def _expand_family(data: Dict[str, Any], path) -> List[DatasetSpec]:
    family, categories = data.get("family"), data.get("categories")
    if not isinstance(family, str) or not _NAME.match(family):
        raise ConfigError(f"{path}: 'family' must be a name (letters, digits, '.', '_', '-').")
    if not isinstance(categories, list) or not categories:
        raise ConfigError(f"{path}: a family needs a non-empty 'categories' list.")
    checksums = data.get("checksums") or {}
    unknown = [c for c in checksums if c not in categories]
    if unknown:
        raise ConfigError(f"{path}: checksums given for categories {unknown} that are not in 'categories'.")
    template = {k: v for k, v in data.items() if k not in _FAMILY_KEYS}
    specs = []
    for category in categories:
        mapping = {"category": category, "slug": category.lower().replace("_", "-"),
                   "title": category.replace("_", " ")}
        member = _substitute(template, mapping)
        member.update(family=family, category=category, checksum=checksums.get(category))
        specs.append(DatasetSpec.from_dict(member, yaml_path=path))
    return specs


def load_yaml(path) -> List[DatasetSpec]:
    """Read a dataset YAML (one spec, or a family of specs) without registering it.

    Raises:
        ConfigError: unreadable YAML, unknown keys or invalid values (the message names the file).
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read dataset YAML {path}: {e}") from e
    if isinstance(data, dict) and "family" in data:
        return _expand_family(data, path)
    return [DatasetSpec.from_dict(data, yaml_path=path)]


def _check_free(spec: DatasetSpec, overwrite: bool):
    key = spec.name.lower()
    if overwrite:
        return
    if key in _SPECS:
        raise ConfigError(f"a dataset named {spec.name!r} is already registered"
                          + (f" (from {_SPECS[key].yaml_path})" if _SPECS[key].yaml_path else "")
                          + "; choose another name or pass overwrite=True.")
    for n in [key] + [a.lower() for a in spec.aliases]:
        owner = n if n in _SPECS else _ALIASES.get(n)
        if owner is not None and owner != key:
            raise ConfigError(f"dataset name {n!r} is already used by {_SPECS[owner].name!r}; choose another "
                              "name or pass overwrite=True.")


def _add(spec: DatasetSpec):
    key = spec.name.lower()
    _SPECS[key] = spec
    for alias in spec.aliases:
        _ALIASES[alias.lower()] = key
    if spec.family and spec.category:
        _FAMILIES.setdefault(spec.family.lower(), {})[_norm_category(spec.category)] = key


def _ensure_loaded():
    global _LOADED
    if _LOADED:
        return
    specs = [spec for path in sorted(REGISTRY_DIR.glob("*.yaml")) for spec in load_yaml(path)]
    for spec in specs:
        _check_free(spec, overwrite=False)
        _add(spec)
    _LOADED = True


def register_dataset(spec: Union[DatasetSpec, Dict[str, Any], str, os.PathLike], overwrite: bool = False):
    """Add a dataset to the registry.

    Args:
        spec: a :class:`DatasetSpec`, a mapping of spec keys, or the path of a YAML file
            (which may define a family).
        overwrite: replace an existing dataset of the same name.

    Returns:
        The registered :class:`DatasetSpec` (a list of them for a family YAML).

    Raises:
        ConfigError: an invalid spec, or the name is taken and ``overwrite`` is false.

    Example:
        >>> register_dataset({"name": "my-ratings", "url": "https://example.org/ratings.csv",
        ...                   "converter": "amazon_ratings",
        ...                   "converter_args": {"filename": "ratings.csv"}})      # doctest: +SKIP
    """
    _ensure_loaded()
    if isinstance(spec, (str, os.PathLike)):
        specs = load_yaml(spec)
    elif isinstance(spec, dict):
        specs = [DatasetSpec.from_dict(spec)]
    elif isinstance(spec, DatasetSpec):
        specs = [spec]
    else:
        raise ConfigError(f"register_dataset expects a DatasetSpec, a mapping or a YAML path, got {type(spec).__name__}.")
    for s in specs:  # check every name first, so a failure registers nothing
        _check_free(s, overwrite)
    for s in specs:
        _add(s)
    is_family = len(specs) > 1 or (specs[0].family is not None and not isinstance(spec, DatasetSpec))
    return specs if is_family else specs[0]


def list_datasets() -> List[str]:
    """Names of every registered dataset, sorted.

    Example:
        >>> "ml-100k" in list_datasets()
        True
    """
    _ensure_loaded()
    return sorted(s.name for s in _SPECS.values())


#: atomic folders resolved by name in this process (so that a later lookup without data_dir finds them)
_FOLDER_SPECS: Dict[str, DatasetSpec] = {}
FOLDER_SUFFIXES = ".inter (+ .item .user .kg .link .net)"


def _registered(name) -> Optional[DatasetSpec]:
    key = str(name).strip().lower()
    if key in _SPECS:
        return _SPECS[key]
    if key in _ALIASES:
        return _SPECS[_ALIASES[key]]
    return None


def find_atomic_dataset(name, data_dir=None) -> Optional[Path]:
    """The atomic folder an unregistered dataset name stands for, or ``None``.

    ``name`` is either a path to a folder holding ``<folder name>.inter``, or a name looked up as
    ``<data_dir>/<name>/<name>.inter`` (``data_dir`` as in :func:`default_data_dir`).

    Raises:
        DatasetNotFoundError: ``name`` is an existing folder without ``<folder name>.inter``.

    Example:
        >>> find_atomic_dataset("no-such-dataset", "/tmp/rs") is None
        True
    """
    text = str(name).strip()
    if not text:
        return None
    path = Path(text).expanduser()
    candidates = [path] if path.is_absolute() else [path, default_data_dir(data_dir) / path]
    for folder in candidates:
        if folder.is_dir() and (folder / f"{folder.name}.inter").is_file():
            return folder.absolute()
    if path.is_dir() and (os.sep in text or "/" in text or text.startswith(".")):
        inters = sorted(p.name for p in path.glob("*.inter"))
        raise DatasetNotFoundError(f"dataset folder {path} holds no {path.name}.inter"
                                   + (f" (it has {inters}; name the folder after that file)" if inters else "")
                                   + f"; an atomic dataset folder <name>/ holds <name>{FOLDER_SUFFIXES}.")
    return None


def atomic_spec(folder) -> DatasetSpec:
    """A :class:`DatasetSpec` for a ready atomic folder (default data config, no download)."""
    folder = Path(folder).absolute()
    return DatasetSpec(name=folder.name, atomic=str(folder), description=f"RecBole atomic files in {folder}")


def get_spec(name: str, data_dir=None) -> DatasetSpec:
    """The spec of a dataset, by name, alias or ``"<family>:<Category>"`` (case-insensitive), or an
    atomic folder.

    A name that is not registered is looked up as a folder of RecBole atomic files: ``name`` as
    a path to a folder holding ``<folder name>.inter``, then ``<data_dir>/<name>/<name>.inter``
    (see :func:`find_atomic_dataset`); the spec's ``atomic`` is that folder.

    Args:
        name: a registered name, or a dataset folder's name or path.
        data_dir: where dataset folders are looked up (see :func:`default_data_dir`).

    Raises:
        DatasetNotFoundError: neither a registered name nor an atomic folder; the message says
            both options and lists close registered names.

    Example:
        >>> get_spec("amazon2014-5core:Musical_Instruments").name
        'amazon-musical-instruments-5core'
    """
    _ensure_loaded()
    spec = _registered(name)
    if spec is not None:
        return spec
    family, sep, category = str(name).strip().partition(":")
    family = family.lower()
    if sep and family in _FAMILIES:
        members = _FAMILIES[family]
        hit = members.get(_norm_category(category))
        if hit is not None:
            return _SPECS[hit]
        cats = sorted(_SPECS[k].category for k in members.values())
        raise DatasetNotFoundError(f"family {family!r} has no category {category!r}."
                                   + did_you_mean(category.replace("-", "_"), cats) + f" Categories: {cats}.")
    folder = find_atomic_dataset(name, data_dir)
    if folder is not None:
        spec = _FOLDER_SPECS[str(name).strip()] = atomic_spec(folder)
        return spec
    if str(name).strip() in _FOLDER_SPECS:
        return _FOLDER_SPECS[str(name).strip()]
    root = default_data_dir(data_dir)
    folders = sorted(p.name for p in root.glob("*/") if (p / f"{p.name}.inter").is_file()) if root.is_dir() else []
    choices = list_datasets() + sorted(_ALIASES) + [f"{f}:<Category>" for f in sorted(_FAMILIES)] + folders
    where = root / str(name).strip()
    raise DatasetNotFoundError(
        f"unknown dataset {name!r}: it is not a registered name and no atomic folder was found "
        f"({where}/{Path(str(name).strip()).name}.inter does not exist, nor is {name!r} a folder holding "
        f"<folder name>.inter)." + did_you_mean(str(name), choices)
        + f" Give a registered name (recstudio.data.registry.list_datasets(), python run.py --list-datasets; "
        f"add your own with register_dataset()), or a RecBole atomic folder: <data_dir>/<name>/<name>"
        f"{FOLDER_SUFFIXES} with --data_dir / data_dir=, or the folder's path.")


def default_data_dir(data_dir=None) -> Path:
    """The data folder: ``data_dir``, else ``$RECSTUDIO_DATA_DIR``, else ``~/.cache/recstudio``.

    Example:
        >>> default_data_dir("/tmp/rs")
        PosixPath('/tmp/rs')
    """
    if data_dir is None:
        data_dir = os.environ.get("RECSTUDIO_DATA_DIR") or "~/.cache/recstudio"
    return Path(data_dir).expanduser().absolute()


# ---- preparation ----------------------------------------------------------------------------
def _say(message: str, progress: bool):
    logger.info(message)
    if progress:
        print(message, file=sys.stderr)


def read_manifest(folder) -> Optional[Dict[str, Any]]:
    """The ``manifest.json`` of a prepared atomic folder (source digests, converter), or ``None``."""
    try:
        return json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_complete(out: Path, spec: DatasetSpec) -> bool:
    m = read_manifest(out)
    return (m is not None and m.get("format_version") == FORMAT_VERSION and m.get("converter") == spec.converter
            and m.get("converter_args") == spec.converter_args and (out / f"{spec.name}.inter").is_file())


def prepare_dataset(name_or_spec: Union[str, DatasetSpec], data_dir=None, progress: bool = True,
                    force: bool = False) -> Path:
    """Make a dataset's atomic files ready and return their folder.

    Uses the bundled files when present (verified by sha256), else downloads into
    ``<data_dir>/<name>/raw/`` (verified; a file put there by hand is verified too),
    extracts archives, and converts once into ``<data_dir>/<name>/atomic/``. The
    conversion is written to a temporary folder renamed at the end, so a crash never
    leaves a folder that looks complete. Later calls return the folder at once.

    Args:
        name_or_spec: a registered name (see :func:`get_spec`) or a :class:`DatasetSpec`.
        data_dir: the data folder (see :func:`default_data_dir`).
        progress: print progress (download bar, conversion) to stderr.
        force: convert again even when a prepared folder exists.

    Returns:
        The folder holding ``<name>.inter`` (and ``.user`` / ``.item`` / ``.net`` when the
        data has them).

    Raises:
        DatasetNotFoundError: unknown name.
        DownloadError: download failed (the message says where to put the file by hand)
            or a checksum does not match.
        DataError: a raw file is missing or malformed, or a bundled file was modified.

    Example:
        >>> folder = prepare_dataset("ml-100k", data_dir="/tmp/rs")      # doctest: +SKIP
        >>> sorted(p.name for p in folder.glob("ml-100k.*"))             # doctest: +SKIP
        ['ml-100k.inter', 'ml-100k.item', 'ml-100k.user']
    """
    spec = name_or_spec if isinstance(name_or_spec, DatasetSpec) else get_spec(name_or_spec, data_dir)
    if spec.atomic is not None:  # ready atomic files: used in place
        return Path(spec.atomic)
    root = default_data_dir(data_dir) / spec.name
    out = root / ATOMIC_DIR
    if not force and _is_complete(out, spec):
        return out
    source, sources, extracted = acquire_raw_files(spec, root / RAW_DIR, REPO_ROOT, progress)
    manifest = {"format_version": FORMAT_VERSION, "dataset": spec.name, "converter": spec.converter,
                "converter_args": spec.converter_args, "sources": sources}
    _say(f"converting {spec.name} into atomic files in {out}", progress)
    convert_into(spec.converter, spec.converter_args, source, out, spec.name, manifest,
                 is_complete=lambda: _is_complete(out, spec))
    for folder in extracted:  # the archive stays in raw/; its unpacked copy is no longer needed
        shutil.rmtree(folder, ignore_errors=True)
    _say(f"{spec.name} is ready in {out}", progress)
    return out


__all__ = ["DatasetSpec", "list_datasets", "get_spec", "find_atomic_dataset", "atomic_spec", "register_dataset", "prepare_dataset", "default_data_dir",
           "load_yaml", "read_manifest"]
