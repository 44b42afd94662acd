"""The trusted reader of kernel outputs (utils.grading.recorded_outputs) against what a student's
kernel can leave in its folder, and the recorder (utils.grading.in_kernel.recording) it reads.

Every load runs under :func:`load_within`, so a reader that blocks (on a FIFO, a device) fails
the test instead of hanging the suite.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import socket
import stat
import struct
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from utils.checks.exercise import evaluate
from utils.checks.feedback import CheckResult
from utils.checks.registry import exercise as find_exercise
from utils.grading.in_kernel.recording import GRADING_DIR, MAX_TEXT_CHARS, inputs_path, outputs_paths, record
from utils.grading.recorded_outputs import (
    MAX_ARRAYS,
    MAX_JSON_BYTES,
    Opaque,
    UnreadableOutputs,
    load_recorded,
)

CELL = "test_relu"
LIMIT = 4 * 2**20
SECONDS = 10


def load_within(folder: Path, names=("check_relu_forward",), max_bytes: int = LIMIT, seconds: float = SECONDS):
    """load_recorded in a thread: its result, or the exception it raised; fails if it takes over ``seconds``."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = load_recorded(folder, CELL, list(names), max_bytes)
        except BaseException as exc:   # noqa: BLE001 (handed back to the test)
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"load_recorded was still running after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def refused(folder: Path, *fragments: str, **kwargs) -> str:
    """The message of the UnreadableOutputs raised for ``folder``, checked to hold every fragment."""
    with pytest.raises(UnreadableOutputs) as info:
        load_within(folder, **kwargs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert len(message) < 300, message   # the grader shows the first 300 characters
    return message


def write_outputs(folder: Path, entries, arrays: dict[str, np.ndarray] | None = None) -> tuple[Path, Path]:
    """What the recorder writes: np.savez of the arrays and the JSON entries."""
    (folder / GRADING_DIR).mkdir(exist_ok=True)
    npz_path, json_path = outputs_paths(folder, CELL)
    np.savez(npz_path, **(arrays or {}))
    json_path.write_text(entries if isinstance(entries, str) else json.dumps(entries))
    return npz_path, json_path


def one_array(folder: Path, array=None) -> tuple[Path, Path]:
    array = np.arange(6.0).reshape(2, 3) if array is None else array
    return write_outputs(folder, [{"check": "check_relu_forward", "outputs": [{"array": "0_0"}]}], {"0_0": array})


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def write_zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


# ----------------------------------------------------------------------------- what the recorder writes

def relu_cases():
    return [(c.description, c.inputs) for c in find_exercise("check_relu_forward").make_cases(True)]


def test_what_record_writes_is_read_back(tmp_path, monkeypatch):
    """Round trip through the recorder: arrays, non-arrays, an error, a NotImplementedError, a missing name."""
    import torch
    (tmp_path / GRADING_DIR).mkdir()
    cases = relu_cases()
    inputs_path(tmp_path, CELL).write_bytes(pickle.dumps([cases, cases[:3], cases[:1], cases[:1], cases[:1]]))

    def broken(x):
        raise ValueError("bad shape " + "x" * 10 * MAX_TEXT_CHARS)

    def not_yet(x):
        raise NotImplementedError()

    def mixed(x):   # a text, the input itself, a tensor NumPy cannot hold
        return {1: "a text", 2: torch.ones(2, dtype=torch.bfloat16)}.get(x.ndim, x)

    def undefined():
        raise NameError("name 'relu_forward' is not defined")

    monkeypatch.chdir(tmp_path)
    record(CELL, [("check_relu_forward", lambda: lambda x: np.maximum(x, 0)),
                  ("check_relu_forward", lambda: mixed),
                  ("check_relu_forward", lambda: broken), ("check_relu_forward", lambda: not_yet),
                  ("check_relu_forward", undefined)])
    assert not inputs_path(tmp_path, CELL).exists(), "the recorder must delete the inputs once read"

    right, opaque, error, not_implemented, missing = load_within(tmp_path, ["check_relu_forward"] * 5)
    for index, (_, inputs) in enumerate(cases):
        value = right.produced(index, f"case {index + 1}").value
        np.testing.assert_array_equal(value, np.maximum(inputs["x"], 0))
        assert value.flags.writeable and value.dtype.isnative
    text, array, tensor = (opaque.produced(i, f"case {i + 1}").value for i in range(3))
    assert isinstance(text, Opaque) and repr(text) == "str"
    np.testing.assert_array_equal(array, cases[1][1]["x"])
    assert isinstance(tensor, Opaque) and repr(tensor) == "Tensor"   # bfloat16 does not convert to NumPy
    report = error.produced(0, "case 1").error
    assert report.headline == "relu_forward raised an error"
    assert report.details[0].startswith("Your function raised ValueError: bad shape xxx")
    assert len(report.details[0]) <= MAX_TEXT_CHARS and report.details[0].endswith("(shortened)")
    assert error.produced(1, "case 2").error.headline == "no output was recorded for case 2"
    assert not_implemented.produced(0, "case 1").not_implemented is True
    assert missing.missing() == "name 'relu_forward' is not defined" and missing.entry == {
        "check": "check_relu_forward", "missing": "name 'relu_forward' is not defined"}


def test_recorded_outputs_get_the_verdicts_of_the_visible_check(tmp_path, monkeypatch):
    """What crosses the boundary is enough to judge: a right answer passes, a known mistake is named."""
    exercise = find_exercise("check_relu_forward")
    cases = exercise.make_cases(True)
    (tmp_path / GRADING_DIR).mkdir()
    inputs_path(tmp_path, CELL).write_bytes(pickle.dumps([[(c.description, c.inputs) for c in cases]] * 2))
    monkeypatch.chdir(tmp_path)
    record(CELL, [("check_relu_forward", lambda: lambda x: np.maximum(x, 0)),
                  ("check_relu_forward", lambda: lambda x: (x > 0).astype(np.float64))])
    right, mask = load_within(tmp_path, ["check_relu_forward"] * 2)
    assert isinstance(evaluate(exercise, cases, lambda index, case, label: right.produced(index, label)), CheckResult)
    report = evaluate(exercise, cases, lambda index, case, label: mask.produced(index, label))
    mask_mistake = next(m for m in exercise.mistakes if "mask" in m.name and "activation" in m.name)
    assert report.likely_cause == mask_mistake.name, report.text()


def test_nothing_recorded_is_none_not_an_error(tmp_path):
    assert load_within(tmp_path) is None                       # no .grading folder
    assert load_within(tmp_path / "gone") is None              # no folder at all
    npz_path, json_path = one_array(tmp_path)
    json_path.unlink()
    assert load_within(tmp_path) is None                       # the kernel stopped between the two files


def test_a_check_recorded_under_another_name_has_no_entry(tmp_path):
    one_array(tmp_path)
    [check] = load_within(tmp_path, names=["check_relu_backward"])
    assert check.entry is None


def test_big_endian_and_fortran_arrays_come_back_native_and_equal(tmp_path):
    array = np.asfortranarray(np.arange(12, dtype=">i4").reshape(3, 4))
    one_array(tmp_path, array)
    [check] = load_within(tmp_path)
    value = check.produced(0, "case 1").value
    assert value.dtype == np.int32 and value.dtype.isnative
    np.testing.assert_array_equal(value, array)


# ----------------------------------------------------------------------------- special files and links

def test_a_fifo_in_place_of_the_arrays_is_refused_at_once(tmp_path):
    npz_path, _ = one_array(tmp_path)
    npz_path.unlink()
    os.mkfifo(npz_path)
    start = time.perf_counter()
    refused(tmp_path, f"outputs file {npz_path.name} is a FIFO")
    assert time.perf_counter() - start < 2


def test_a_fifo_in_place_of_the_json_is_refused_even_with_no_arrays(tmp_path):
    (tmp_path / GRADING_DIR).mkdir()
    os.mkfifo(outputs_paths(tmp_path, CELL)[1])
    refused(tmp_path, "outputs file test_relu.outputs.json is a FIFO")


def test_a_socket_in_place_of_the_json_is_refused(tmp_path, monkeypatch):
    _, json_path = one_array(tmp_path)
    json_path.unlink()
    monkeypatch.chdir(json_path.parent)   # a short socket address, whatever the temporary folder
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(json_path.name)
        refused(tmp_path, "outputs file test_relu.outputs.json is a socket")


def test_a_device_node_in_place_of_the_arrays_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root makes device nodes")
    npz_path, _ = one_array(tmp_path)
    npz_path.unlink()
    os.mknod(npz_path, stat.S_IFCHR | 0o600, os.makedev(1, 5))   # what /dev/zero is
    refused(tmp_path, "test_relu.outputs.npz is a character device")


def test_a_link_to_dev_zero_is_refused(tmp_path):
    npz_path, _ = one_array(tmp_path)
    npz_path.unlink()
    npz_path.symlink_to("/dev/zero")
    refused(tmp_path, "test_relu.outputs.npz is a symbolic link")


def test_a_link_to_valid_outputs_outside_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    good_npz, good_json = one_array(outside)
    assert load_within(outside) is not None
    folder = tmp_path / "kernel"
    (folder / GRADING_DIR).mkdir(parents=True)
    npz_path, json_path = outputs_paths(folder, CELL)
    npz_path.write_bytes(good_npz.read_bytes())
    json_path.symlink_to(good_json)
    refused(folder, "test_relu.outputs.json is a symbolic link")


def test_a_linked_grading_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    one_array(outside)
    folder = tmp_path / "kernel"
    folder.mkdir()
    (folder / GRADING_DIR).symlink_to(outside / GRADING_DIR)
    refused(folder, "the .grading folder is a symbolic link")


def test_a_file_in_place_of_the_grading_folder_is_refused(tmp_path):
    (tmp_path / GRADING_DIR).write_text("not a folder")
    refused(tmp_path, "the .grading folder is a regular file")


def test_a_folder_in_place_of_the_arrays_is_refused(tmp_path):
    npz_path, _ = one_array(tmp_path)
    npz_path.unlink()
    npz_path.mkdir()
    refused(tmp_path, "test_relu.outputs.npz is a folder")


def test_a_hard_to_read_file_says_why(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    npz_path, _ = one_array(tmp_path)
    npz_path.chmod(0)
    refused(tmp_path, "could not be opened")


# ----------------------------------------------------------------------------- sizes

def test_an_oversized_npz_is_refused_before_it_is_read(tmp_path):
    one_array(tmp_path, np.zeros(2**16))
    refused(tmp_path, "test_relu.outputs.npz holds", "at most 100,000 are read", max_bytes=100_000)


def test_an_oversized_json_is_refused(tmp_path):
    entries = [{"check": "check_relu_forward", "missing": "x" * 1000}] * (MAX_JSON_BYTES // 1000 + 1)
    write_outputs(tmp_path, entries)
    refused(tmp_path, "test_relu.outputs.json holds", f"at most {MAX_JSON_BYTES:,} are read", max_bytes=64 * 2**20)


def zeros_npy_stream(path: Path, name: str, n_bytes: int) -> int:
    """A deflated member: an .npy of ``n_bytes`` zero bytes, written in chunks (never all in memory).

    Returns the member's size once decompressed."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (n_bytes,)})
    chunk = bytes(2**20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, archive.open(name, "w") as member:
        member.write(header.getvalue())
        for _ in range(n_bytes // len(chunk)):
            member.write(chunk)
    return len(header.getvalue()) + n_bytes


def test_a_zip_bomb_is_refused_by_its_declared_size(tmp_path):
    npz_path, _ = one_array(tmp_path)
    size = zeros_npy_stream(npz_path, "0_0.npy", 256 * 2**20)
    assert npz_path.stat().st_size < 2**20   # 256 MiB of zeros in under 1 MiB
    start = time.perf_counter()
    refused(tmp_path, f"declares {size:,} bytes once decompressed", max_bytes=64 * 2**20)
    assert time.perf_counter() - start < 2


def test_a_zip_whose_header_understates_the_size_is_never_fully_decompressed(tmp_path):
    npz_path, _ = one_array(tmp_path)
    size = zeros_npy_stream(npz_path, "0_0.npy", 64 * 2**20)
    data = bytearray(npz_path.read_bytes())
    # Declare 200 bytes uncompressed in the local header and in the central directory (no zip64 field here).
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    assert struct.unpack_from("<I", data, central + 24)[0] == size
    struct.pack_into("<I", data, local + 22, 200)
    struct.pack_into("<I", data, central + 24, 200)
    npz_path.write_bytes(bytes(data))
    start = time.perf_counter()
    refused(tmp_path, "not a valid archive", "CRC")
    assert time.perf_counter() - start < 2


def test_members_that_together_exceed_the_limit_are_refused(tmp_path):
    keys = [f"0_{i}" for i in range(4)]
    npz_path, _ = write_outputs(tmp_path, [{"check": "check_relu_forward", "outputs": [{"array": k} for k in keys]}])
    write_zip(npz_path, {f"{k}.npy": npy_bytes(np.zeros(2**16)) for k in keys}, zipfile.ZIP_DEFLATED)  # 4 × 512 KiB
    assert npz_path.stat().st_size < 2**16
    refused(tmp_path, "declares 2,097,664 bytes once decompressed", max_bytes=3 * 2**19 + 2**18)
    assert len(load_within(tmp_path, max_bytes=2_097_664)[0].arrays) == 4   # exactly the limit is read


@pytest.mark.parametrize("shape", ["(1000000000000,)", "(0, 1000000000000)", "(-8,)"])
def test_a_shape_larger_than_the_data_is_refused(tmp_path, shape):
    npz_path, _ = one_array(tmp_path)
    header = npy_bytes(np.zeros(1)).decode("latin1")
    header = header.replace("(1,)", shape).encode("latin1")
    write_zip(npz_path, {"0_0.npy": header})
    refused(tmp_path, "member 0_0.npy")


def test_too_many_members_are_refused_before_zipfile_lists_them(tmp_path):
    npz_path, _ = one_array(tmp_path)
    write_zip(npz_path, {f"{i}.npy": b"" for i in range(MAX_ARRAYS + 1)})
    refused(tmp_path, f"more than {MAX_ARRAYS:,} members")


# ----------------------------------------------------------------------------- members

def test_an_unexpected_member_is_refused(tmp_path):
    npz_path, _ = one_array(tmp_path)
    write_zip(npz_path, {"0_0.npy": npy_bytes(np.ones(3)), "extra.npy": npy_bytes(np.ones(3))})
    refused(tmp_path, "a member 'extra.npy' that the JSON does not name")


def test_the_same_member_twice_is_refused(tmp_path):
    npz_path, _ = one_array(tmp_path)
    with pytest.warns(UserWarning, match="Duplicate name"):
        write_zip(npz_path, {"0_0.npy": npy_bytes(np.ones(3))})
        with zipfile.ZipFile(npz_path, "a") as archive:
            archive.writestr("0_0.npy", npy_bytes(np.zeros(3)))
    refused(tmp_path, "the same member twice")


class Marker:
    """Unpickling this creates a file: the reader must never unpickle."""

    path = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_pickled_object_member_is_refused_and_never_unpickled(tmp_path):
    npz_path, _ = one_array(tmp_path)
    Marker.path = str(tmp_path / "unpickled")
    write_zip(npz_path, {"0_0.npy": npy_bytes(np.array([Marker()], dtype=object), allow_pickle=True)})
    refused(tmp_path, "member 0_0.npy holds values of type object")
    assert not (tmp_path / "unpickled").exists()


@pytest.mark.parametrize("array", [np.array([1 + 2j]), np.array(["text"]), np.array([1], dtype="datetime64[s]"),
                                   np.zeros(2, dtype=[("a", "f8"), ("b", "i4")]), np.array([b"ab"])],
                         ids=["complex", "str", "datetime", "structured", "bytes"])
def test_a_member_that_is_not_bool_int_or_float_is_refused(tmp_path, array):
    npz_path, _ = one_array(tmp_path)
    write_zip(npz_path, {"0_0.npy": npy_bytes(array)})
    refused(tmp_path, "member 0_0.npy holds values of type", "only booleans, integers and floats")


def test_a_truncated_member_is_refused(tmp_path):
    npz_path, _ = one_array(tmp_path)
    write_zip(npz_path, {"0_0.npy": npy_bytes(np.ones(10))[:-8]})
    refused(tmp_path, "member 0_0.npy declares 80 bytes", "but holds 72")


def test_bzip2_members_are_refused(tmp_path):
    npz_path, _ = one_array(tmp_path)
    write_zip(npz_path, {"0_0.npy": npy_bytes(np.ones(3))}, zipfile.ZIP_BZIP2)
    refused(tmp_path, "compressed with method 12")


def test_a_deflated_npz_within_the_limit_is_read(tmp_path):
    npz_path, _ = one_array(tmp_path)
    write_zip(npz_path, {"0_0.npy": npy_bytes(np.arange(5.0))}, zipfile.ZIP_DEFLATED)
    [check] = load_within(tmp_path)
    np.testing.assert_array_equal(check.produced(0, "case 1").value, np.arange(5.0))


def test_bools_read_as_0_or_1(tmp_path):
    npz_path, _ = one_array(tmp_path)
    write_zip(npz_path, {"0_0.npy": npy_bytes(np.array([True, False, True])).replace(b"\x01\x00\x01", b"\x07\x00\x01")})
    [check] = load_within(tmp_path)
    value = check.produced(0, "case 1").value
    assert value.dtype == bool and value.view(np.uint8).tolist() == [1, 0, 1]


@pytest.mark.parametrize("damage", ["not a zip", "cut in half", "member renamed"])
def test_a_damaged_archive_is_refused(tmp_path, damage):
    npz_path, _ = one_array(tmp_path)
    data = npz_path.read_bytes()
    npz_path.write_bytes({"not a zip": b"not a zip at all",
                          "cut in half": data[:len(data) // 2],
                          "member renamed": data.replace(b"0_0.npy", b"0_1.npy", 1)}[damage])
    refused(tmp_path, "outputs .npz is not a valid archive")


# ----------------------------------------------------------------------------- the JSON

def test_an_array_naming_a_missing_member_is_refused(tmp_path):
    write_outputs(tmp_path, [{"check": "check_relu_forward", "outputs": [{"array": "0_0"}, {"array": "0_1"}]}],
                  {"0_0": np.ones(3)})
    refused(tmp_path, "names array '0_1', which the .npz does not hold")


@pytest.mark.parametrize("text", ['[{"check": "check_relu_forward"', "\xff\xfe", "", "[" * 200_000 + "]" * 200_000])
def test_malformed_json_is_refused(tmp_path, text):
    _, json_path = one_array(tmp_path)
    json_path.write_bytes(text.encode("latin1"))
    refused(tmp_path, "outputs JSON is not valid JSON")


LONG = "x" * (MAX_TEXT_CHARS + 1)
OK_REPORT = {"headline": "h", "case": "", "details": [], "likely_cause": "", "hint": ""}


@pytest.mark.parametrize("entries, fragment", [
    ({"check": "check_relu_forward"}, "must be a list of entries, found an object"),
    ([1], "entry 0 must be an object, found a number"),
    ([{"check": 1, "outputs": []}], "entry 0.check must be a text, found a number"),
    ([{"outputs": []}], "entry 0 has no 'check'"),
    ([{"check": "c", "outputs": [], "missing": "m"}], "entry 0 has an unexpected key 'outputs'"),
    ([{"check": "c", "outputs": {}}], "entry 0.outputs must be a list, found an object"),
    ([{"check": "c", "missing": None}], "entry 0.missing must be a text, found null"),
    ([{"check": "c", "outputs": [], "grade": 9}], "entry 0 has an unexpected key 'grade'"),
    ([{"check": "c", "outputs": [{}]}], "output 0 must hold exactly one of"),
    ([{"check": "c", "outputs": [{"array": "0_0", "non_array": "int"}]}], "output 0 must hold exactly one of"),
    ([{"check": "c", "outputs": ["0_0"]}], "output 0 must be an object, found a text"),
    ([{"check": "c", "outputs": [{"array": "../0_0"}]}], "names array '../0_0'; the recorder names it '0_0'"),
    ([{"check": "c", "outputs": [{"array": "0_0", "not_implemented": True}]}], "unexpected key 'not_implemented'"),
    ([{"check": "c", "outputs": [{"non_array": 3}]}], "output 0.non_array must be a text"),
    ([{"check": "c", "outputs": [{"error": "failed"}]}], "output 0.error must be an object"),
    ([{"check": "c", "outputs": [{"error": {"hint": "h"}}]}], "output 0.error has no 'headline'"),
    ([{"check": "c", "outputs": [{"error": OK_REPORT | {"details": "d"}}]}], "error.details must be a list"),
    ([{"check": "c", "outputs": [{"error": OK_REPORT | {"details": [1]}}]}], "error.details[0] must be a text"),
    ([{"check": "c", "outputs": [{"error": OK_REPORT | {"details": ["d"] * 21}}]}], "at most 20 texts"),
    ([{"check": "c", "outputs": [{"error": OK_REPORT | {"score": "9"}}]}], "error has an unexpected key 'score'"),
    ([{"check": "c", "outputs": [{"error": OK_REPORT, "not_implemented": "yes"}]}], "must be true or false"),
    ([{"check": "c", "missing": LONG}], f"entry 0.missing is {MAX_TEXT_CHARS + 1:,} characters long"),
    ([{"check": "c", "outputs": [{"error": OK_REPORT | {"hint": LONG}}]}], "error.hint is"),
])
def test_json_of_the_wrong_shape_is_refused(tmp_path, entries, fragment):
    write_outputs(tmp_path, entries, {"0_0": np.ones(2)})
    refused(tmp_path, "outputs JSON", fragment)


def test_a_valid_error_entry_becomes_the_report(tmp_path):
    report = OK_REPORT | {"headline": "relu_forward raised an error", "details": ["Your function raised KeyError"]}
    write_outputs(tmp_path, [{"check": "check_relu_forward", "outputs": [{"error": report, "not_implemented": False}]}])
    [check] = load_within(tmp_path)
    produced = check.produced(0, "case 1")
    assert produced.error.headline == "relu_forward raised an error" and produced.not_implemented is False
    assert produced.error.details == ["Your function raised KeyError"]
