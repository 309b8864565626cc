"""aliases.json: the discovered aliases with their metrics and provenance (schema version 2).

The schema is ``alias_opt/schemas/aliases.schema.json`` (JSON Schema; README "The alias file" has an
example); every file names it in ``$schema``. Layout (DESIGN §6)::

    {
      "$schema": "alias_opt/schemas/aliases.schema.json",
      "schema_version": 2,
      "provenance": {"model_fingerprint", "model_source", "dataset_path", "dataset_hash",
                     "split_seed", "train_fraction", "max_negatives", "config", "seed",
                     "tool_version", "created"},
      "aliases": [
        {"category_id", "category_name", "token_ids", "text", "roundtrips", "strategy",
         "train_metrics", "test_metrics", "baseline_text", "baseline_train_metrics",
         "baseline_test_metrics", "extra",
         "alias_set": [{"token_ids", "text", "roundtrips", "train_metrics", "test_metrics"}, ...]}, ...
      ]
    }

A record answers its category with an *alias set* of 1..k aliases whose detections are merged
(``alias_opt.eval.alias_sets``): ``alias_set`` lists them, each with its own metrics scored alone; the
record's ``train_metrics`` / ``test_metrics`` are the set's (merged detections). ``token_ids``, ``text``
and ``roundtrips`` repeat the set's first alias (the best single alias on train), so a reader that
takes one prompt still gets one. Version 1 files (no ``alias_set``) load as one-alias sets; other
versions are refused with one line naming the versions this tool reads.

Token ids are the ground truth (no SOT/EOT, 1..30 ids); ``text`` is their decoding, usable as a plain
prompt only where ``roundtrips`` is true. Metrics are ``PromptMetrics.to_dict()`` objects (NaN as
null) or null. ``extra`` holds optional strategy outputs (e.g. a soft-prompt file, a history file).
Files are written atomically; ``read_aliases`` validates and raises :class:`AliasFileError` with
the file, the record and the fix.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alias_opt.eval.metrics import PromptMetrics

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # v1: one alias per record, read as a one-alias set
SCHEMA_ID = "alias_opt/schemas/aliases.schema.json"  # the JSON Schema, in this package
SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "aliases.schema.json"
MAX_ALIAS_TOKENS = 30
VOCAB_SIZE = 49408  # SAM 3's CLIP BPE vocabulary


def tool_version() -> str:
    """The installed sam3-alias version."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("sam3-alias")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


class AliasFileError(ValueError):
    """An alias file that cannot be read; the message names the file, the record and the fix."""


@dataclass
class Provenance:
    """Where a set of aliases came from.

    Attributes:
        model_fingerprint: ``Sam3Backend.fingerprint`` of the frozen model.
        model_source: what ``--model`` was (``toy``, a path, a hub id).
        dataset_path: the annotation JSON the aliases were found on.
        dataset_hash: ``dataset_hash`` of that file.
        split_seed, train_fraction, max_negatives: the train/test split (``CocoDataset.target_sets``);
            ``evaluate.py`` re-uses them so that "test" is the held-out split.
        config: the discovery configuration.
        seed: the discovery seed.
        tool_version: sam3-alias version.
        created: ISO 8601 time (UTC).
    """

    model_fingerprint: str = ""
    model_source: str = ""
    dataset_path: str = ""
    dataset_hash: str = ""
    split_seed: int = 0
    train_fraction: float = 0.5
    max_negatives: int = 20
    config: dict = field(default_factory=dict)
    seed: int = 0
    tool_version: str = field(default_factory=tool_version)
    created: str = field(default_factory=now_iso)


@dataclass
class AliasMember:
    """One alias of a record's alias set, with its metrics scored alone (not merged)."""

    token_ids: list[int]
    text: str
    roundtrips: bool
    train_metrics: PromptMetrics | None = None
    test_metrics: PromptMetrics | None = None


@dataclass
class AliasRecord:
    """One category's answer and how it scored: the alias set (``members()``: 1..k aliases, detections
    merged) whose first alias is ``token_ids`` / ``text`` / ``roundtrips``; ``train_metrics`` and
    ``test_metrics`` are the set's. ``alias_set`` empty means the one alias in ``token_ids``."""

    category_id: int
    category_name: str | None
    token_ids: list[int]
    text: str
    roundtrips: bool
    strategy: str
    train_metrics: PromptMetrics | None = None
    test_metrics: PromptMetrics | None = None
    baseline_text: str | None = None
    baseline_train_metrics: PromptMetrics | None = None
    baseline_test_metrics: PromptMetrics | None = None
    extra: dict = field(default_factory=dict)
    alias_set: list[AliasMember] = field(default_factory=list)

    def members(self) -> list[AliasMember]:
        """The aliases whose detections are merged (one: the record's own alias, with its metrics)."""
        if self.alias_set:
            return list(self.alias_set)
        return [AliasMember(list(self.token_ids), self.text, self.roundtrips, self.train_metrics, self.test_metrics)]

    @property
    def is_set(self) -> bool:
        """More than one alias."""
        return len(self.members()) > 1

    @property
    def set_text(self) -> str:
        """The aliases' texts joined by `` | `` (the text alone for one alias)."""
        return " | ".join(m.text for m in self.members())

    @property
    def parts(self) -> list[list[int]]:
        """Each alias's token ids."""
        return [list(m.token_ids) for m in self.members()]


@dataclass
class AliasFile:
    """The content of aliases.json."""

    schema_version: int = SCHEMA_VERSION
    provenance: Provenance = field(default_factory=Provenance)
    aliases: list[AliasRecord] = field(default_factory=list)

    def by_category(self) -> dict[int, AliasRecord]:
        return {a.category_id: a for a in self.aliases}


METRIC_KEYS = ("train_metrics", "test_metrics", "baseline_train_metrics", "baseline_test_metrics")


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def to_dict(alias_file: AliasFile) -> dict:
    """JSON-ready dict of an AliasFile (with ``$schema``), in the current schema version (every record
    with its ``alias_set``)."""
    data = asdict(alias_file)
    data["schema_version"] = SCHEMA_VERSION
    for rec, row in zip(alias_file.aliases, data["aliases"]):
        row["alias_set"] = [asdict(m) for m in rec.members()]
    return _json_safe({"$schema": SCHEMA_ID, **data})


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it into place, with the ordinary
    permissions of a new file (0666 less the umask, as ``open`` gives; mkstemp's would be 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(_json_safe(data), f, indent=2, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_aliases(path: str | Path, alias_file: AliasFile) -> None:
    """Validate and write aliases.json atomically (temp file + os.replace)."""
    data = to_dict(alias_file)
    _validate(data, str(path))
    write_json_atomic(path, data)


def read_aliases(path: str | Path, vocab_size: int = VOCAB_SIZE) -> AliasFile:
    """Read and validate aliases.json.

    Raises:
        AliasFileError: missing file, not JSON, wrong or future schema version, missing keys,
            bad token ids, duplicate categories.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AliasFileError(f"alias file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AliasFileError(f"cannot read alias file {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise AliasFileError(f"{path} is not valid JSON: {exc}") from exc
    return _validate(data, str(path), vocab_size)


def _validate(data: Any, where: str, vocab_size: int = VOCAB_SIZE) -> AliasFile:
    if not isinstance(data, dict):
        raise AliasFileError(f"{where}: expected a JSON object with schema_version, provenance and aliases")
    version = data.get("schema_version")
    if version is None:
        raise AliasFileError(f"{where}: no 'schema_version'; this is not a sam3-alias aliases file")
    known_versions = ", ".join(map(str, READABLE_VERSIONS))
    if isinstance(version, bool) or not isinstance(version, int) or version not in READABLE_VERSIONS:
        if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
            raise AliasFileError(
                f"{where}: schema_version {version} was written by a newer sam3-alias; this version "
                f"({tool_version()}) reads schema versions {known_versions}: upgrade sam3-alias"
            )
        raise AliasFileError(f"{where}: schema_version {version!r} is not a version this tool knows ({known_versions})")
    for key in ("provenance", "aliases"):
        if key not in data:
            raise AliasFileError(f"{where}: missing key '{key}'")
    prov = data["provenance"]
    if not isinstance(prov, dict):
        raise AliasFileError(f"{where}: 'provenance' must be an object")
    known = {k: prov[k] for k in Provenance.__dataclass_fields__ if k in prov}
    for key in ("split_seed", "seed", "max_negatives"):
        if key in known and (isinstance(known[key], bool) or not isinstance(known[key], int)):
            raise AliasFileError(f"{where}: provenance.{key} must be an integer, got {known[key]!r}")
    if not isinstance(known.get("config", {}), dict):
        raise AliasFileError(f"{where}: provenance.config must be an object")
    provenance = Provenance(**known)
    if not isinstance(data["aliases"], list):
        raise AliasFileError(f"{where}: 'aliases' must be a list")
    records, seen = [], set()
    for n, rec in enumerate(data["aliases"]):
        record = _record(rec, f"{where}: aliases[{n}]", vocab_size, version)
        if record.category_id in seen:
            raise AliasFileError(
                f"{where}: aliases[{n}]: a second alias for category {record.category_id}; keep one per category"
            )
        seen.add(record.category_id)
        records.append(record)
    return AliasFile(SCHEMA_VERSION, provenance, records)  # held in the current version (v1: one-alias sets)


def _token_ids(ids: Any, where: str, vocab_size: int) -> list[int]:
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_ALIAS_TOKENS:
        raise AliasFileError(f"{where}: token_ids must be a list of 1..{MAX_ALIAS_TOKENS} ids")
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < vocab_size:
            raise AliasFileError(f"{where}: token id {i!r} is not in the vocabulary (0..{vocab_size - 1})")
    return list(ids)


def _metrics(value: Any, key: str, where: str) -> PromptMetrics | None:
    if value is None:
        return None
    try:
        return PromptMetrics.from_dict(value)
    except KeyError as exc:
        raise AliasFileError(f"{where}: {key} lacks '{exc.args[0]}'") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise AliasFileError(f"{where}: {key} is not a metrics object: {exc}") from None


def _members(rec: dict, where: str, vocab_size: int, ids: list[int]) -> list[AliasMember]:
    """A v2 record's ``alias_set``: one or more members, the first one the record's own ``token_ids``."""
    items = rec.get("alias_set")
    if not isinstance(items, list) or not items:
        raise AliasFileError(f"{where}: alias_set must be a non-empty list of aliases (schema 2)")
    members = []
    for n, m in enumerate(items):
        at = f"{where}: alias_set[{n}]"
        if not isinstance(m, dict) or not {"token_ids", "text", "roundtrips"} <= set(m):
            raise AliasFileError(f"{at}: expected an object with token_ids, text and roundtrips")
        if not isinstance(m["text"], str) or not isinstance(m["roundtrips"], bool):
            raise AliasFileError(f"{at}: text must be a string and roundtrips true or false")
        members.append(
            AliasMember(
                _token_ids(m["token_ids"], at, vocab_size),
                m["text"],
                m["roundtrips"],
                _metrics(m.get("train_metrics"), "train_metrics", at),
                _metrics(m.get("test_metrics"), "test_metrics", at),
            )
        )
    if members[0].token_ids != ids:
        raise AliasFileError(f"{where}: alias_set[0] must be the record's own token_ids {ids}")
    return members


def _record(rec: Any, where: str, vocab_size: int, version: int = SCHEMA_VERSION) -> AliasRecord:
    if not isinstance(rec, dict):
        raise AliasFileError(f"{where}: expected an object")
    for key in ("category_id", "token_ids", "text", "roundtrips", "strategy"):
        if key not in rec:
            raise AliasFileError(f"{where}: missing key '{key}'")
    cid = rec["category_id"]
    if isinstance(cid, bool) or not isinstance(cid, int):
        raise AliasFileError(f"{where}: category_id must be an integer, got {cid!r}")
    where = f"{where} (category {cid})"
    ids = _token_ids(rec["token_ids"], where, vocab_size)
    name = rec.get("category_name")
    if name is not None and not isinstance(name, str):
        raise AliasFileError(f"{where}: category_name must be a string or null")
    if not isinstance(rec["text"], str) or not isinstance(rec["strategy"], str):
        raise AliasFileError(f"{where}: text and strategy must be strings")
    if not isinstance(rec["roundtrips"], bool):
        raise AliasFileError(f"{where}: roundtrips must be true or false")
    baseline = rec.get("baseline_text")
    if baseline is not None and not isinstance(baseline, str):
        raise AliasFileError(f"{where}: baseline_text must be a string or null")
    extra = rec.get("extra") or {}
    if not isinstance(extra, dict):
        raise AliasFileError(f"{where}: extra must be an object")
    metrics = {key: _metrics(rec.get(key), key, where) for key in METRIC_KEYS}
    record = AliasRecord(
        cid,
        name,
        ids,
        rec["text"],
        rec["roundtrips"],
        rec["strategy"],
        extra=extra,
        baseline_text=baseline,
        **metrics,
    )
    if version >= 2:
        record.alias_set = _members(rec, where, vocab_size, ids)
    return record


def dataset_hash(path: str | Path) -> str:
    """``sha256:<hex>`` of a dataset's annotation JSON bytes (a folder is resolved to its JSON).

    Images are not hashed (too slow for large sets); the JSON names them and their sizes.
    """
    from alias_opt.data.loader import find_annotation_file

    h = hashlib.sha256()
    with open(find_annotation_file(path), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()
