"""File names -> output names and back: every input gets outputs of its own, whatever bytes its name
holds, and the name stored in an output's metadata gives the exact input name back."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from faceage.filenames import escape_name, shown, unescape_name
from faceage.imageio import read_metadata, save_image
from faceage.methods.commands import IMAGE_SUFFIXES, Job, Options, _unique_names

# what os.fsdecode makes of the bytes 0x80..0xff that are not UTF-8
UNDECODABLE = st.integers(0x80, 0xFF).map(lambda b: chr(0xDC00 + b))
NAME_CHARS = st.one_of(
    st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
    st.sampled_from(["\x01", "\x1b", "\x7f", "\\", ".", "_", "\u202e", "\u0085"]),
    UNDECODABLE,
)
NAMES = st.text(NAME_CHARS, min_size=1, max_size=12)
SUFFIXES = st.sampled_from(sorted(IMAGE_SUFFIXES) + [".JPG", ".Png", ".TIFF", ""])
FOLDERS = st.sampled_from(["", "a", "A", "a/b"])


@given(st.lists(st.tuples(FOLDERS, NAMES, SUFFIXES), min_size=1, max_size=12), st.booleans())
@example([("", "same", ".bmp"), ("", "same", ".tif"), ("", "same_bmp", ".png")], False)
@example([("", "A", ".jpg"), ("", "a", ".JPG"), ("", "a_jpg", ".jpeg")], True)
def test_every_input_gets_outputs_of_its_own(inputs, crop):
    sources = {Path("/in", folder, stem + suffix): folder for folder, stem, suffix in inputs}
    jobs = [Job(source, Path("/out", folder), True) for source, folder in sources.items()]
    named = _unique_names(jobs)
    assert [job.source for job in named] == [job.source for job in jobs]
    assert _unique_names(jobs) == named  # the same inputs always get the same names
    opts = Options((0.0, 42.5, 60.0, 120.0), strip=True, gif=True, mp4=True, crop=crop, overwrite=False)
    outputs = [path for job in named for path in opts.expected(job)]
    assert len({str(path).casefold() for path in outputs}) == len(outputs)  # no two alike, even ignoring case
    for job in named:
        assert job.stem.startswith(job.source.stem)
        assert all(path.parent == job.out_dir for path in opts.expected(job))


@given(st.text(NAME_CHARS, max_size=40))
@example("x\x01.jpg")
@example("\udcff\\x41")
def test_escaped_names_are_printable_and_give_the_name_back(name):
    escaped = escape_name(name)
    assert escaped.isprintable() and unescape_name(escaped) == name
    escaped.encode("utf-8")  # storable in UTF-8 text: CSV, JSON, XMP
    assert shown(name).isprintable()
    if name.isprintable() and "\\" not in name:
        assert escaped == name == shown(name)  # ordinary names stay as they are


@given(st.text(NAME_CHARS, min_size=1, max_size=24), st.sampled_from([".png", ".jpg", ".webp"]))
def test_names_round_trip_through_image_metadata(name, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"out{suffix}"
        save_image(path, np.full((8, 8, 3), 128, np.uint8), metadata={"faceage:source": escape_name(name)})
        assert unescape_name(read_metadata(path)["faceage:source"]) == name
