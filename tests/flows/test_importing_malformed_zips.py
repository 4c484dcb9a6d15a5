"""Malformed zips are refused with a message naming the member, store nothing and never answer 500."""

import io
import struct
import warnings
import zipfile
from pathlib import Path

import pytest

from django.core.files.uploadedfile import SimpleUploadedFile

from flows.importing import FlowImportError, _copy_limited, import_zip
from flows.models import Flow, FlowVersion

pytestmark = pytest.mark.django_db

DAG = "inputs:\n  text:\n    type: string\noutputs: {}\nnodes: []\n"


def _zip(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we write on purpose
        with zipfile.ZipFile(buffer, "w", compression) as archive:
            for name, data in members:
                archive.writestr(name, data)
    return buffer.getvalue()


def _file_and_folder() -> bytes:
    return _zip([("flow.dag.yaml", DAG.encode()), ("a", b"file"), ("a/b", b"in a folder")])


def _folder_then_file() -> bytes:
    return _zip([("flow.dag.yaml", DAG.encode()), ("a/b", b"in a folder"), ("a", b"file")])


def _duplicates() -> bytes:
    return _zip([("flow.dag.yaml", DAG.encode()), ("tool.py", b"x = 1\n"), ("tool.py", b"x = 2\n")])


def _understated() -> bytes:
    """big.bin unpacks to 2 MiB, but its headers say 1000 bytes (the limit in these tests is 1 MiB)."""
    data = bytearray(_zip([("flow.dag.yaml", DAG.encode()), ("big.bin", b"\0" * (2 * 1024 * 1024))]))
    for signature, size_offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            name_offset = 30 if signature == b"PK\x03\x04" else 46
            name_length = struct.unpack_from("<H", data, start + (26 if signature == b"PK\x03\x04" else 28))[0]
            if data[start + name_offset : start + name_offset + name_length] == b"big.bin":
                struct.pack_into("<I", data, start + size_offset, 1000)
            start += 4
    return bytes(data)


def _corrupt() -> bytes:
    """tool.py's stored bytes were changed after the zip was written: its CRC no longer matches."""
    data = _zip([("flow.dag.yaml", DAG.encode()), ("tool.py", b"print('original content')\n")], zipfile.ZIP_STORED)
    return data.replace(b"original content", b"tampered content")


MALFORMED = [
    (_file_and_folder, "holds both a file a and a folder of the same name (a/b)"),
    (_folder_then_file, "holds both a file a and a folder of the same name (a/b)"),
    (_duplicates, "holds tool.py twice"),
    (_understated, "big.bin cannot be unpacked (Bad CRC-32 for file 'big.bin')"),
    (_corrupt, "The zip file is damaged: tool.py cannot be unpacked (Bad CRC-32 for file 'tool.py')"),
]
IDS = ["file-and-folder", "folder-then-file", "duplicate-names", "understated-sizes", "crc-error"]


@pytest.fixture
def small_limit(settings, isolated_flow_dirs) -> Path:
    settings.FLOWDEPLOY_MAX_UPLOAD_BYTES = 1024 * 1024
    return isolated_flow_dirs


def _nothing_stored(root: Path) -> bool:
    flows = root / "flows"
    leftovers = sorted(p.name for p in flows.iterdir()) if flows.exists() else []
    return leftovers == [] and not Flow.objects.exists() and not FlowVersion.objects.exists()


@pytest.mark.parametrize(("make", "message"), MALFORMED, ids=IDS)
def test_it_refuses_a_malformed_zip_naming_the_member(make, message, small_limit):
    with pytest.raises(FlowImportError) as refused:
        import_zip(io.BytesIO(make()), "malformed", None)
    assert message in str(refused.value)
    assert _nothing_stored(small_limit)


@pytest.mark.parametrize(("make", "message"), MALFORMED, ids=IDS)
def test_it_shows_the_refusal_on_the_import_page(make, message, small_limit, admin_client):
    upload = SimpleUploadedFile("malformed.zip", make(), content_type="application/zip")
    response = admin_client.post("/flows/import/", {"source": "upload", "file": upload, "name": "malformed"})
    assert response.status_code == 400
    html = response.content.decode()
    assert message.replace("'", "&#x27;") in html
    assert "Nothing was imported." in html
    assert _nothing_stored(small_limit)


def test_it_counts_unpacked_bytes_instead_of_trusting_declared_sizes():
    sink = io.BytesIO()
    with pytest.raises(FlowImportError, match=r"more than .* \(at big.bin\): the zip understates its sizes"):
        _copy_limited(io.BytesIO(b"\0" * 5000), sink, 4096, "big.bin")
    assert len(sink.getvalue()) <= 4096
    assert _copy_limited(io.BytesIO(b"\0" * 4096), io.BytesIO(), 4096, "fits.bin") == 4096
