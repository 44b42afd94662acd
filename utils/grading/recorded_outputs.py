"""The trusted reader of what a grading kernel recorded (:mod:`utils.grading.in_kernel.recording`).

Everything in the kernel's folder is untrusted: the student's code may have replaced the
``.grading`` folder or the outputs by a link, a FIFO, a device or a folder, or written files of
any size and content. So the reader

* opens each file relative to an open folder, without following links and without blocking
  (``O_NOFOLLOW | O_NONBLOCK``; ``.grading`` itself with ``O_DIRECTORY | O_NOFOLLOW``), and reads
  only regular files (checked with ``fstat`` on what was opened);
* bounds every size before reading (``fstat``) and while reading (never more than the limit + 1
  bytes): the ``.npz`` and the total of its members, decompressed, to ``max_bytes``, the JSON to
  :data:`MAX_JSON_BYTES`;
* validates the JSON against the schema the recorder writes, and reads from the ``.npz`` only the
  members the JSON names (``<check>_<case>.npy``, :func:`~utils.grading.in_kernel.recording.array_key`),
  each with a bounded read whatever its header declares, as a plain boolean, integer or float
  array (never unpickled);
* then turns them into the :class:`~utils.checks.exercise.Produced` values the check core judges.

Anything else raises :class:`UnreadableOutputs`, whose message says what was found; the grader
shows it to the student under "the outputs of this test could not be read".
"""
from __future__ import annotations

import io
import json
import math
import os
import stat
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from utils.checks.exercise import Produced
from utils.checks.feedback import Report
from utils.grading.in_kernel.recording import (
    ARRAY_KINDS,
    GRADING_DIR,
    MAX_DETAIL_LINES,
    MAX_TEXT_CHARS,
    array_key,
    outputs_paths,
)

REPORT_FIELDS = {f.name for f in fields(Report)}
REPORT_LIST_FIELDS = {f.name for f in fields(Report) if f.default_factory is list}   # lists of texts; the others: texts
MAX_JSON_BYTES = 2**20             # the recorder's JSON for one cell is a few kB
MAX_ARRAYS = 1000                  # most arrays one cell may record (checks × cases)
NPY_MAX_HEADER_BYTES = 10_000      # numpy's own default for .npy headers
_CENTRAL_DIRECTORY_RECORD = b"PK\x01\x02"   # the signature every zip member's directory record starts with
_ZIP_ENCRYPTED = 0x1


class UnreadableOutputs(ValueError):
    """Recorded outputs the grader refuses to read; the message says why, for the student."""


class Opaque:
    """Stands for a non-array value the kernel returned (only its type name crosses over)."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self):
        return self.type_name


@dataclass
class RecordedCheck:
    """What the kernel recorded for one check of a test cell."""

    entry: dict | None             # {"check", "outputs": [...]} or {"check", "missing": NameError text}
    arrays: dict[str, np.ndarray]

    def missing(self) -> str | None:
        """The NameError of a function that was not defined when the test ran (None when it was)."""
        return self.entry.get("missing") if self.entry else None

    def produced(self, index: int, label: str) -> Produced:
        """What the student's code gave for case ``index`` (called ``label`` in the feedback)."""
        recorded = self.entry["outputs"]
        if index >= len(recorded):
            return Produced(error=Report(headline=f"no output was recorded for {label}"))
        item = recorded[index]
        if "error" in item:
            return Produced(error=Report(**item["error"]), not_implemented=item.get("not_implemented", False))
        if "non_array" in item:
            return Produced(value=None if item["non_array"] == "None" else Opaque(item["non_array"]))
        return Produced(value=self.arrays[item["array"]])


# ----------------------------------------------------------------------------- files

def _what_is(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return name
    return "a file of an unknown kind"


def _refusal(folder_fd: int, name: str, what: str, expected: str, error: OSError) -> UnreadableOutputs:
    """Why ``name`` could not be opened, naming what is there instead of ``expected``."""
    try:
        found = _what_is(os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mode)
    except OSError:
        found = expected
    if found != expected:
        return UnreadableOutputs(f"{what} is {found}; it must be {expected}")
    return UnreadableOutputs(f"{what} could not be opened ({error.strerror})")


def _open(folder_fd: int, name: str, what: str, folder: bool = False) -> int | None:
    """A file descriptor for ``name`` in ``folder_fd`` (None when there is nothing of that name).

    Never follows a link and never blocks: a FIFO opens at once with ``O_NONBLOCK`` and is then
    refused, like anything else that is not a regular file (or, with ``folder=True``, a folder).
    """
    if not name or "/" in name or name in (".", ".."):
        raise UnreadableOutputs(f"{what}: {name[:80]!r} is not a plain file name")
    expected = "a folder" if folder else "a regular file"
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_DIRECTORY if folder else 0)
    try:
        fd = os.open(name, flags, dir_fd=folder_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:   # ELOOP for a link, ENOTDIR for a non-folder, ENXIO for a socket...
        raise _refusal(folder_fd, name, what, expected, exc) from None
    found = _what_is(os.fstat(fd).st_mode)
    if found != expected:
        os.close(fd)
        raise UnreadableOutputs(f"{what} is {found}; it must be {expected}")
    return fd


def _read(fd: int, limit: int, what: str) -> bytes:
    """The whole file behind ``fd``, refused when it holds more than ``limit`` bytes (before and while reading)."""
    size = os.fstat(fd).st_size
    if size > limit:
        raise UnreadableOutputs(f"{what} holds {size:,} bytes; at most {limit:,} are read")
    chunks, total = [], 0
    while total <= limit:
        chunk = os.read(fd, min(2**20, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > limit:
        raise UnreadableOutputs(f"{what} grew past {limit:,} bytes while it was read")
    return b"".join(chunks)


# ----------------------------------------------------------------------------- the JSON

def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a text", bool: "true/false", type(None): "null"}.get(
        type(value), "a number")


def _text(value, where: str) -> str:
    if not isinstance(value, str):
        raise UnreadableOutputs(f"outputs JSON: {where} must be a text, found {_kind(value)}")
    if len(value) > MAX_TEXT_CHARS:
        raise UnreadableOutputs(f"outputs JSON: {where} is {len(value):,} characters long; "
                                f"at most {MAX_TEXT_CHARS:,} are accepted")
    return value


def _object(value, where: str, required: set[str], optional: set[str]) -> dict:
    if not isinstance(value, dict):
        raise UnreadableOutputs(f"outputs JSON: {where} must be an object, found {_kind(value)}")
    for key in value:
        if key not in required | optional:
            raise UnreadableOutputs(f"outputs JSON: {where} has an unexpected key {key[:40]!r}")
    for key in sorted(required):
        if key not in value:
            raise UnreadableOutputs(f"outputs JSON: {where} has no {key!r}")
    return value


def _check_report(value, where: str) -> None:
    _object(value, where, {"headline"}, REPORT_FIELDS - {"headline"})
    for name, field_value in value.items():
        if name not in REPORT_LIST_FIELDS:
            _text(field_value, f"{where}.{name}")
            continue
        if not isinstance(field_value, list) or len(field_value) > MAX_DETAIL_LINES:
            found = f"{len(field_value):,} of them" if isinstance(field_value, list) else _kind(field_value)
            raise UnreadableOutputs(f"outputs JSON: {where}.{name} must be a list of at most "
                                    f"{MAX_DETAIL_LINES} texts, found {found}")
        for line, text in enumerate(field_value):
            _text(text, f"{where}.{name}[{line}]")


def _check_output(item, check_index: int, index: int) -> str | None:
    """Validate one recorded case; the array key it names, if any."""
    where = f"entry {check_index}, output {index}"
    kinds = [key for key in ("array", "non_array", "error") if isinstance(item, dict) and key in item]
    if isinstance(item, dict) and len(kinds) != 1:
        raise UnreadableOutputs(f"outputs JSON: {where} must hold exactly one of 'array', 'non_array', 'error'")
    _object(item, where, set(kinds), {"not_implemented"} if kinds == ["error"] else set())
    if kinds == ["error"]:
        _check_report(item["error"], f"{where}.error")
        if not isinstance(item.get("not_implemented", False), bool):
            raise UnreadableOutputs(f"outputs JSON: {where}.not_implemented must be true or false, "
                                    f"found {_kind(item['not_implemented'])}")
        return None
    if kinds == ["non_array"]:
        _text(item["non_array"], f"{where}.non_array")
        return None
    key, expected = _text(item["array"], f"{where}.array"), array_key(check_index, index)
    if key != expected:
        raise UnreadableOutputs(f"outputs JSON: {where} names array {key[:40]!r}; the recorder names it {expected!r}")
    return key


def _parse_entries(raw: bytes) -> tuple[list[dict], list[str]]:
    """The JSON's entries, validated, and the array keys they name."""
    try:
        entries = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:   # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UnreadableOutputs(f"outputs JSON is not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(entries, list):
        raise UnreadableOutputs(f"outputs JSON must be a list of entries, found {_kind(entries)}")
    keys = []
    for check_index, entry in enumerate(entries):
        where = f"entry {check_index}"
        has_missing = isinstance(entry, dict) and "missing" in entry
        _object(entry, where, {"check", "missing" if has_missing else "outputs"}, set())
        _text(entry["check"], f"{where}.check")
        if has_missing:
            _text(entry["missing"], f"{where}.missing")
            continue
        if not isinstance(entry["outputs"], list):
            raise UnreadableOutputs(f"outputs JSON: {where}.outputs must be a list, found {_kind(entry['outputs'])}")
        for index, item in enumerate(entry["outputs"]):
            key = _check_output(item, check_index, index)
            if key is not None:
                keys.append(key)
    if len(keys) > MAX_ARRAYS:
        raise UnreadableOutputs(f"outputs JSON names {len(keys):,} arrays; at most {MAX_ARRAYS:,} are read")
    return entries, keys


# ----------------------------------------------------------------------------- the arrays

def _parse_npy(data: bytes, name: str) -> np.ndarray:
    """A fresh native-order array from the bytes of one ``.npy`` member: bool, int, uint or float only."""
    fp = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fp)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f".npy format version {version}, not 1.0 or 2.0")
        shape, fortran_order, dtype = read_header(fp, max_header_size=NPY_MAX_HEADER_BYTES)
    except Exception as exc:   # a malformed header, whatever numpy raises for it
        raise UnreadableOutputs(f"member {name} is not a valid .npy array ({str(exc)[:120]})") from None
    if dtype.kind not in ARRAY_KINDS or dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise UnreadableOutputs(f"member {name} holds values of type {str(dtype)[:40]}; "
                                "the recorder writes only booleans, integers and floats")
    if any(d < 0 for d in shape) or math.prod(max(d, 1) for d in shape) * dtype.itemsize > len(data):
        raise UnreadableOutputs(f"member {name} declares shape {str(shape)[:80]}, larger than its {len(data):,} bytes")
    offset, count = fp.tell(), math.prod(shape)
    if len(data) - offset != count * dtype.itemsize:
        raise UnreadableOutputs(f"member {name} declares {count * dtype.itemsize:,} bytes of {dtype} values "
                                f"but holds {len(data) - offset:,}")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    if dtype.kind == "b":
        flat = flat.view(np.uint8) != 0   # a bool is one byte that must read 0 or 1
    return flat.reshape(shape, order="F" if fortran_order else "C").astype(flat.dtype.newbyteorder("="))


def _load_arrays(raw: bytes, keys: list[str], max_bytes: int) -> dict[str, np.ndarray]:
    """The members ``<key>.npy`` of the ``.npz`` bytes, with at most ``max_bytes`` decompressed in all."""
    # zipfile builds one entry per central-directory record before any member can be looked at;
    # each record starts with this signature, so counting it bounds that work.
    if raw.count(_CENTRAL_DIRECTORY_RECORD) > MAX_ARRAYS:
        raise UnreadableOutputs(f"outputs .npz holds more than {MAX_ARRAYS:,} members")
    wanted = {key + ".npy": key for key in keys}
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = archive.infolist()
            names = [member.filename for member in members]
            for name in names:
                if name not in wanted:
                    raise UnreadableOutputs(f"outputs .npz holds a member {name[:40]!r} that the JSON does not name")
            if len(set(names)) != len(names):
                raise UnreadableOutputs("outputs .npz holds the same member twice")
            for name, key in wanted.items():
                if name not in names:
                    raise UnreadableOutputs(f"outputs JSON names array {key!r}, which the .npz does not hold")
            declared = sum(member.file_size for member in members)
            if declared > max_bytes:
                raise UnreadableOutputs(f"outputs .npz declares {declared:,} bytes once decompressed; "
                                        f"at most {max_bytes:,} are read")
            left = max_bytes
            for member in members:
                if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) \
                        or member.flag_bits & _ZIP_ENCRYPTED:
                    raise UnreadableOutputs(f"member {member.filename} is encrypted or compressed with method "
                                            f"{member.compress_type}; the recorder writes plain members")
                with archive.open(member) as stream:
                    data = stream.read(left + 1)   # its header's sizes may lie: never decompress more
                if len(data) > left:
                    raise UnreadableOutputs(f"outputs .npz holds more than {max_bytes:,} bytes once decompressed")
                left -= len(data)
                arrays[wanted[member.filename]] = _parse_npy(data, member.filename)
    except UnreadableOutputs:
        raise
    except Exception as exc:   # zipfile, zlib and struct report a damaged archive in many ways
        raise UnreadableOutputs(f"outputs .npz is not a valid archive ({type(exc).__name__}: "
                                f"{str(exc)[:120]})") from None
    return arrays


# ----------------------------------------------------------------------------- the reader

def load_recorded(folder: Path, cell_id: str, check_names: list[str], max_bytes: int) -> list[RecordedCheck] | None:
    """One :class:`RecordedCheck` per check of the cell, or None when the kernel recorded nothing.

    ``folder`` is the grader's own folder for the kernel (only what is inside it is untrusted).
    The ``.npz`` and its members, decompressed, may hold ``max_bytes`` each; the JSON
    :data:`MAX_JSON_BYTES`. Raises :class:`UnreadableOutputs` (a ValueError) for outputs that
    cannot be read, saying why.
    """
    npz_name, json_name = (path.name for path in outputs_paths(Path(folder), cell_id))
    try:
        folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    opened: list[int] = []
    try:
        grading_fd = _open(folder_fd, GRADING_DIR, "the .grading folder", folder=True)
        if grading_fd is None:
            return None
        opened.append(grading_fd)
        npz_fd = _open(grading_fd, npz_name, f"outputs file {npz_name}")
        opened += [npz_fd] if npz_fd is not None else []
        json_fd = _open(grading_fd, json_name, f"outputs file {json_name}")
        opened += [json_fd] if json_fd is not None else []
        if npz_fd is None or json_fd is None:
            return None
        entries, keys = _parse_entries(_read(json_fd, min(max_bytes, MAX_JSON_BYTES), f"outputs file {json_name}"))
        arrays = _load_arrays(_read(npz_fd, max_bytes, f"outputs file {npz_name}"), keys, max_bytes)
    finally:
        for fd in (*opened, folder_fd):
            os.close(fd)
    recorded = []
    for index, check_name in enumerate(check_names):
        entry = entries[index] if index < len(entries) else None
        if entry is not None and entry["check"] != check_name:
            entry = None
        recorded.append(RecordedCheck(entry, arrays))
    return recorded
