"""List files as `faceage age` inputs (one path a line, or a CSV/Parquet `path` column): which photos
they name, where the outputs go, and one clear error for a list that cannot be used."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import faceage.batch
from faceage.errors import FaceageError
from faceage.methods.commands import BatchInputError, collect_jobs, read_list


@pytest.fixture
def photos(tmp_path) -> Path:
    """Three empty stand-ins for photos (a list is read without opening them) in two subfolders."""
    for name in ("a/one.jpg", "a/two.png", "b/three.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def test_a_text_list_names_one_path_a_line_relative_to_its_folder(photos, tmp_path):
    outside = tmp_path.parent / "elsewhere.jpg"
    listing = photos / "list.txt"
    listing.write_text(f"# chosen photos\na/one.jpg\n\n  b/three.jpg  \n{outside}\n")
    assert read_list(listing) == [photos / "a/one.jpg", photos / "b/three.jpg", outside]


def test_csv_and_parquet_lists_read_their_path_column(photos):
    (photos / "list.csv").write_text("id,path\n1,a/two.png\n2,b/three.jpg\n3,\n")
    assert read_list(photos / "list.csv") == [photos / "a/two.png", photos / "b/three.jpg"]
    table = pa.table({"path": ["b/three.jpg", str(photos / "a/one.jpg")], "age": [30, 40]})
    pq.write_table(table, photos / "list.parquet")
    assert read_list(photos / "list.parquet") == [photos / "b/three.jpg", photos / "a/one.jpg"]


def test_a_list_without_a_path_column_is_one_clear_error(photos):
    (photos / "list.csv").write_text("file\na/one.jpg\n")
    with pytest.raises(FaceageError, match=r"list.csv: a CSV list needs a 'path' column \(found \['file'\]\)"):
        read_list(photos / "list.csv")
    pq.write_table(pa.table({"file": ["a/one.jpg"]}), photos / "list.parquet")
    with pytest.raises(FaceageError, match="a Parquet list needs a 'path' column"):
        read_list(photos / "list.parquet")
    (photos / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(FaceageError, match="broken.parquet: not a readable Parquet table"):
        read_list(photos / "broken.parquet")


def test_listed_photos_mirror_their_folders_under_out_and_others_land_at_its_top(photos, tmp_path):
    outside = tmp_path.parent / f"{tmp_path.name}-outside.jpg"
    outside.write_bytes(b"")
    listing = photos / "list.txt"
    listing.write_text(f"a/one.jpg\nb/three.jpg\na/one.jpg\n{outside}\n")
    out = tmp_path / "out"
    jobs = collect_jobs((listing,), out)
    assert [(job.source, job.out_dir, job.from_folder) for job in jobs] == [
        (photos / "a/one.jpg", out / "a", True),  # listed twice, aged once
        (photos / "b/three.jpg", out / "b", True),
        (outside, out, True),
    ]


def test_a_list_needs_an_output_folder_and_the_api_checks_its_arguments(photos):
    (photos / "list.txt").write_text("a/one.jpg\n")
    with pytest.raises(BatchInputError, match="list input .*list.txt needs an output folder: add -o OUT"):
        faceage.batch.age([photos / "list.txt"], to=60)
    with pytest.raises(BatchInputError, match="engine must be 'local' or 'ray'"):
        faceage.batch.age([photos / "list.txt"], to=60, out=photos / "out", engine="spark")
    with pytest.raises(BatchInputError, match="target age"):
        faceage.batch.age([photos / "list.txt"], to=[60, 400], out=photos / "out")


def test_batch_api_takes_method_options_and_the_known_age(tmp_path):
    import faceage.batch
    from faceage.assets import EXAMPLE_PHOTO

    report = faceage.batch.age(
        [EXAMPLE_PHOTO], to=50, out=tmp_path, options={"loop": False, "strength": 1.5}, source_age=28, evaluate=False
    )
    import json

    from faceage.outputs.provenance import read_provenance

    (result,) = report.results
    (face,) = result.ages[0]["faces"]
    assert face["given_age"] == 28 and face["source_age"] == 28
    info = json.loads(read_provenance(result.outputs[0])["faceage:method_info"])
    assert info["loop"] is False and info["strength"] == 1.5
