"""Provenance metadata: what it says, and that it survives save_image in PNG, JPEG and WebP."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from faceage import __version__
from faceage.errors import ImageReadError
from faceage.imageio import load_image, read_metadata, save_image
from faceage.outputs.provenance import DIGITAL_SOURCE_TYPE, provenance_metadata, read_provenance

METHOD = {"method": "ipcgan", "weights": "ipcgan.safetensors", "sha256": "0123abcd" * 8, "kimg": 120}
WHEN = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def _meta(**kwargs) -> dict[str, str]:
    args = {"method_info": METHOD, "source_ages": [34.26, 51.0], "target_age": 60.0, "created": WHEN} | kwargs
    return provenance_metadata(**args)


def test_metadata_says_synthetic_tool_method_and_ages() -> None:
    meta = _meta()
    assert meta["Iptc4xmpExt:DigitalSourceType"] == DIGITAL_SOURCE_TYPE
    assert DIGITAL_SOURCE_TYPE.startswith("http://cv.iptc.org/newscodes/digitalsourcetype/")
    assert meta["xmp:CreatorTool"] == f"faceage {__version__}"
    assert meta["xmp:CreateDate"] == "2025-03-04T05:06:07Z"
    assert meta["faceage:synthetic"] == "true" and meta["faceage:version"] == __version__
    assert meta["faceage:method"] == "ipcgan" and meta["faceage:weights_sha256"] == "0123abcd" * 8
    assert meta["faceage:source_ages"] == "34.3, 51" and meta["faceage:target_age"] == "60"
    assert '"kimg": 120' in meta["faceage:method_info"]
    description = meta["dc:description"]
    assert "AI-altered" in description and "ipcgan" in description and "2 faces from 34.3, 51 to 60" in description
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())


def test_metadata_options() -> None:
    # no sha256 -> no weights field; a progression's several targets; numpy ages; extra fields
    meta = provenance_metadata(
        {"method": "direction"},
        np.array([40.0], np.float32),
        [5, 15.5, 75],
        extra={"face_crop": True, "dc:title": "Zoë at 75"},
    )
    assert "faceage:weights_sha256" not in meta
    assert meta["faceage:target_age"] == "5, 15.5, 75" and meta["faceage:source_ages"] == "40"
    assert meta["faceage:face_crop"] == "True" and meta["dc:title"] == "Zoë at 75"
    created = datetime.strptime(meta["xmp:CreateDate"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=1)
    # another time zone is converted to UTC; a naive time is taken as UTC
    local = datetime(2025, 3, 4, 7, 6, 7, tzinfo=timezone(timedelta(hours=2)))
    assert _meta(created=local)["xmp:CreateDate"] == "2025-03-04T05:06:07Z"
    assert _meta(created=WHEN.replace(tzinfo=None))["xmp:CreateDate"] == "2025-03-04T05:06:07Z"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method_info": {}}, "method"),
        ({"method_info": "ipcgan"}, "method"),
        ({"source_ages": []}, "source_ages"),
        ({"source_ages": "34"}, "source_ages"),
        ({"source_ages": [math.nan]}, "outside"),
        ({"target_age": -1}, "outside"),
        ({"target_age": 200.0}, "outside"),
        ({"target_age": []}, "target_age"),
        ({"target_age": "sixty"}, "target_age"),
        ({"extra": {"bad key": 1}}, "extra key"),
        ({"extra": {"exif:Make": 1}}, "extra key"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _meta(**kwargs)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_round_trip_through_save_image(tmp_path: Path, astronaut: np.ndarray, suffix: str) -> None:
    meta = _meta(extra={"note": 'Zoë, 34 → 60 <&> "quoted"\nsecond line\r\n'})
    path = save_image(tmp_path / f"aged{suffix}", astronaut, metadata=meta)
    assert read_provenance(path) == meta
    assert read_metadata(path) == meta
    back = load_image(path)
    assert back.shape == astronaut.shape and np.abs(back.astype(int) - astronaut).mean() < 4
    with Image.open(path) as im:
        xmp = im.info["xmp"]  # a standard XMP packet, readable by any XMP tool
        if suffix == ".png":
            assert {k: v for k, v in im.text.items() if k != "XML:com.adobe.xmp"} == meta  # plain text chunks
    root = ET.fromstring(xmp)
    ns = {"Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/", "xmp": "http://ns.adobe.com/xap/1.0/"}
    assert root.find(".//Iptc4xmpExt:DigitalSourceType", ns).text == DIGITAL_SOURCE_TYPE
    assert root.find(".//xmp:CreatorTool", ns).text == f"faceage {__version__}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"aged{suffix}"]


def test_jpeg_has_an_xmp_app1_segment_and_opens_everywhere(tmp_path: Path, astronaut: np.ndarray) -> None:
    path = save_image(tmp_path / "aged.jpg", astronaut, metadata=_meta())
    data = path.read_bytes()
    header = data.index(b"http://ns.adobe.com/xap/1.0/\x00")
    assert data[header - 4 : header - 2] == b"\xff\xe1"  # an APP1 marker, then the segment length
    end = header - 2 + int.from_bytes(data[header - 2 : header], "big")
    packet = data[header + 29 : end]
    assert packet.startswith(b"<?xpacket begin=") and packet.endswith(b'<?xpacket end="w"?>')
    assert b"Exif\x00\x00" not in data  # every provenance key is XMP: no JSON copy in EXIF
    bgr = cv2.imread(str(path))
    assert bgr is not None and bgr.shape == astronaut.shape
    with Image.open(path) as im:
        im.load()
        assert im.format == "JPEG" and im.size == (512, 512)


def test_mixed_keys_keep_the_plain_ones_in_exif(tmp_path: Path, astronaut: np.ndarray) -> None:
    meta = {"seed": "3", "faceage:method": "ipcgan"}
    path = save_image(tmp_path / "mixed.jpg", astronaut[:64, :64], metadata=meta)
    assert read_metadata(path) == meta
    assert Image.open(path).getexif()[0x010E] == '{"seed": "3"}'


def test_images_without_faceage_provenance(tmp_path: Path, astronaut: np.ndarray) -> None:
    small = Image.fromarray(astronaut[:64, :64])
    small.save(tmp_path / "plain.png")
    small.save(tmp_path / "plain.jpg")
    save_image(tmp_path / "ours_plain.png", astronaut[:64, :64], metadata={"note": "no provenance"})
    # a photo edited elsewhere: foreign XMP with a tool and a namespace we do not know
    foreign = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:other="urn:other:"'
        b' xmp:CreatorTool="Photo Editor 5" other:thing="x"/></rdf:RDF></x:xmpmeta>'
    )
    small.save(tmp_path / "foreign.jpg", xmp=foreign)
    for name in ("plain.png", "plain.jpg", "ours_plain.png", "foreign.jpg"):
        assert read_provenance(tmp_path / name) == {}, name
    assert read_metadata(tmp_path / "foreign.jpg") == {"xmp:CreatorTool": "Photo Editor 5"}


def test_hostile_or_broken_xmp_is_ignored(tmp_path: Path, astronaut: np.ndarray) -> None:
    small = Image.fromarray(astronaut[:32, :32])
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:faceage="urn:faceage:xmp:1.0:" faceage:method="&b;"/></rdf:RDF></x:xmpmeta>'
    )
    small.save(tmp_path / "bomb.jpg", xmp=bomb)
    small.save(tmp_path / "broken.jpg", xmp=b"<x:xmpmeta><unclosed")
    assert read_provenance(tmp_path / "bomb.jpg") == {}
    assert read_provenance(tmp_path / "broken.jpg") == {}


def test_unreadable_files_raise_image_read_error(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageReadError, match="notes.png: not an image"):
        read_provenance(tmp_path / "notes.png")
    with pytest.raises(ImageReadError, match="file not found"):
        read_provenance(tmp_path / "missing.jpg")


def test_metadata_xml_cannot_hold_is_refused(tmp_path: Path, astronaut: np.ndarray) -> None:
    with pytest.raises(ValueError, match="cannot be stored in XMP"):
        save_image(tmp_path / "x.jpg", astronaut[:8, :8], metadata={"faceage:note": "bell\x07"})
    with pytest.raises(ValueError, match="not a valid XMP property name"):
        save_image(tmp_path / "x.png", astronaut[:8, :8], metadata={"faceage:two words": "x"})
    assert list(tmp_path.iterdir()) == []
