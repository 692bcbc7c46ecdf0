"""The multipart/related parser and builder (chalicelib/dicomweb/multipart.py) on hand-made bodies:
boundaries quoted and not, preamble and epilogue, transport padding, CRLF inside parts, bodies
cut short, parts with broken headers, and what the standard library's email parser reads from
the same bytes."""
import time
from email.parser import BytesParser
from email.policy import HTTP

import pytest

from chalicelib.dicomweb.multipart import (
    MalformedMultipart,
    content_type,
    join,
    new_boundary,
    related,
    split,
)

ORTHANC_BOUNDARY = "-".join(["a3e14e40-4da6-4fcf-adfa-23117efaf0ee"] * 2)


@pytest.mark.parametrize("header, boundary, kind", [
    ('multipart/related; type="application/dicom"; boundary=abc123', "abc123",
     "application/dicom"),
    ("Multipart/Related; boundary=abc; type=application/dicom", "abc", "application/dicom"),
    ('multipart/related; boundary="with space;and=separators"; type="Application/DICOM"',
     "with space;and=separators", "application/dicom"),
    ('multipart/related; boundary="quoted\\"inside"', 'quoted"inside', None),
    ("multipart/related; boundary*=utf-8''encoded%20boundary", "encoded boundary", None),
    # Orthanc 1.10's STOW-RS client: two UUIDs, past RFC 2046's 70 characters
    ('multipart/related; type="application/dicom"; boundary=' + ORTHANC_BOUNDARY,
     ORTHANC_BOUNDARY, "application/dicom"),
], ids=["plain", "case", "quoted-separators", "quoted-pair", "rfc2231", "orthanc"])
def test_given_a_content_type_then_its_boundary_and_type_are_read(header, boundary, kind):
    found = related(header)
    assert (found.media_type, found.boundary, found.type) == ("multipart/related", boundary, kind)


@pytest.mark.parametrize("header, words", [
    ("multipart/related", "no usable boundary"),
    ("multipart/related; boundary=", "no usable boundary"),
    ('multipart/related; boundary="' + "x" * 201 + '"', "200 at most"),
    ('multipart/related; type="application/dicom; boundary=unterminated', "no usable boundary"),
    ("application/dicom", "not multipart"),
], ids=["none", "empty", "too-long", "unterminated-quote", "not-multipart"])
def test_given_a_content_type_without_a_usable_boundary_then_400(header, words):
    with pytest.raises(MalformedMultipart) as raised:
        related(header)
    assert words in str(raised.value)


def test_given_preamble_padding_and_epilogue_then_only_the_parts_are_returned():
    body = (b"This preamble is ignored.\r\n--b1 \t\r\nContent-Type: application/dicom\r\n"
            b"Content-ID: <one>\r\n\r\nfirst\r\n--b1\r\n"
            b"content-type:application/dicom;transfer-syntax=1.2.840.10008.1.2.1\r\n\r\n"
            b"second\r\n--b1--  \r\nThis epilogue is ignored, even --b1\r\n")
    parts = split(body, "b1")
    assert [part.body for part in parts] == [b"first", b"second"]
    assert parts[0].headers == {"content-type": "application/dicom", "content-id": "<one>"}
    assert parts[1].content_type == "application/dicom;transfer-syntax=1.2.840.10008.1.2.1"


def test_given_crlf_and_boundary_lookalikes_inside_a_part_then_its_bytes_are_kept():
    payload = b"\r\n--b1x not a delimiter\r\n--b1\tno CRLF after the padding\r\n\r\n\x00\xff"
    body = b"--b1\r\nContent-Type: application/dicom\r\n\r\n" + payload + b"\r\n--b1--"
    assert [part.body for part in split(body, "b1")] == [payload]


def test_given_a_part_without_headers_then_its_body_starts_after_the_empty_line():
    parts = split(b"--b\r\n\r\nbare\r\n--b--", "b")
    assert (parts[0].headers, parts[0].body, parts[0].problem) == ({}, b"bare", None)


def test_given_folded_header_lines_then_they_are_unfolded():
    body = b"--b\r\nContent-Type: application/dicom;\r\n transfer-syntax=1.2\r\n\r\nx\r\n--b--"
    assert split(body, "b")[0].content_type == "application/dicom; transfer-syntax=1.2"


@pytest.mark.parametrize("headers, problem", [
    (b"Content-Type application/dicom\r\n\r\n", "not 'Name: value'"),
    (b"Content-Type: application/dicom\r\n" + b"X-Long: " + b"y" * 20_000 + b"\r\n\r\n",
     "not followed by an empty line"),
], ids=["no-colon", "no-end-of-headers"])
def test_given_a_part_with_broken_headers_then_it_carries_the_problem_and_the_others_are_read(
        headers, problem):
    body = (b"--b\r\n" + headers + b"broken\r\n--b\r\nContent-Type: application/dicom\r\n\r\n"
            b"fine\r\n--b--\r\n")
    broken, fine = split(body, "b")
    assert problem in broken.problem and broken.body == b""
    assert (fine.problem, fine.body) == (None, b"fine")


@pytest.mark.parametrize("body, words", [
    (b"", "never appears"),
    (b"--other\r\n\r\nx\r\n--other--", "never appears"),
    (b"--b--\r\n", "holds no part"),
    (b"--b\r\nContent-Type: application/dicom\r\n\r\ncut short", "ends inside part 1"),
    (b"--b\r\n\r\none\r\n--b\r\n\r\ntwo, no close delimiter", "ends inside part 2"),
    (b"--b\n\nLF only\n--b--\n", "end in LF, not CRLF"),
    (b"--b\r\n\r\nno CRLF before the delimiter--b--", "ends inside part 1"),
], ids=["empty", "other-boundary", "no-parts", "cut-short", "no-close", "lf", "glued"])
def test_given_a_malformed_body_then_400_saying_what_is_wrong(body, words):
    with pytest.raises(MalformedMultipart) as raised:
        split(body, "b")
    assert words in str(raised.value)


def test_join_is_what_split_reads_and_what_the_email_parser_reads():
    boundary = new_boundary()
    parts = [("application/dicom", b"\x00\r\n--" + boundary.encode() + b"x\r\n\xff" * 3),
             ("application/dicom+json", b'{"00081190": {"vr": "UR"}}'), ("application/dicom", b"")]
    body = join(parts, boundary)
    assert [(part.content_type, part.body) for part in split(body, boundary)] == parts
    header = content_type(boundary, "application/dicom")
    assert related(header).boundary == boundary and related(header).type == "application/dicom"
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {header}\r\n\r\n".encode() + body)
    read = [(part.get_content_type(), part.get_payload(decode=True))
            for part in message.iter_parts()]
    assert read == parts


def test_a_body_at_the_synchronous_limit_is_split_quickly_and_exactly(capsys):
    """Three instances of about 1.4 MB of random bytes each: what a 4.4 MB request holds."""
    import os
    instances = [os.urandom(1_450_000) for _ in range(3)]
    boundary = new_boundary()
    body = join([("application/dicom", data) for data in instances], boundary)
    started = time.perf_counter()
    parts = split(body, boundary)
    ours = time.perf_counter() - started
    assert [part.body for part in parts] == instances
    started = time.perf_counter()
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type(boundary, 'application/dicom')}\r\n\r\n".encode() + body)
    email_parts = [part.get_payload(decode=True) for part in message.iter_parts()]
    theirs = time.perf_counter() - started
    assert len(email_parts) == 3
    with capsys.disabled():
        print(f"\nsplit {len(body):,} bytes: ours {ours * 1000:.1f} ms, "
              f"email.parser {theirs * 1000:.1f} ms")
    assert ours < 0.5 and ours < theirs


def test_the_parser_needs_nothing_but_the_standard_library():
    """The batch client builds its STOW-RS requests with it, and needs no Chalice."""
    from tests.support.serving import run_isolated
    out = run_isolated(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('chalice', 'numpy', 'pydicom', 'requests'):\n"
        "            raise ImportError('not installed: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from chalicelib.dicomweb import multipart\n"
        "print(len(multipart.split(multipart.join([('a/b', b'x')], 'q'), 'q')))\n")
    assert out.strip() == "1"
