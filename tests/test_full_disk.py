"""Outputs are complete or absent when the disk fills up (item: full disk corrupts an output silently)."""

from __future__ import annotations

import json

import numpy as np

from faceage.imageio import load_image
from fault_helpers import run_limited

# A 150 x 150 noise JPEG at quality 95 is about 56 kB: past the 40 kB limit, but not by a whole write,
# so Pillow's JPEG encoder used to see a short write, not an error, and leave 40 000 bytes behind.
SAVE = """
import json, sys
import numpy as np
from faceage.errors import ImageWriteError
from faceage.imageio import save_image
rgb = np.random.default_rng(0).integers(0, 255, (150, 150, 3)).astype(np.uint8)
out = {}
for name in sys.argv[1:]:
    try:
        save_image(name, rgb)
        out[name] = "written"
    except ImageWriteError as error:
        out[name] = "refused: " + str(error)
print(json.dumps(out))
"""


def test_a_short_write_raises_and_leaves_nothing(tmp_path):
    names = [str(tmp_path / f"noise.{suffix}") for suffix in ("jpg", "png")]
    done = run_limited(SAVE, 40_000, *names)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for name in names:
        assert result[name].startswith("refused: ") and "cannot write" in result[name], result
    assert list(tmp_path.iterdir()) == []  # neither the final name nor a temp file


def test_what_fits_is_written_whole(tmp_path):
    name = str(tmp_path / "noise.jpg")
    done = run_limited(SAVE, 200_000, name)
    assert json.loads(done.stdout) == {name: "written"}, done.stderr
    assert load_image(name).shape == (150, 150, 3)


MP4 = """
import sys
import numpy as np
from faceage.errors import ImageWriteError
from faceage.outputs.progression import save_mp4
frames = [np.random.default_rng(i).integers(0, 255, (240, 320, 3)).astype(np.uint8) for i in range(6)]
try:
    save_mp4(sys.argv[1], frames, fps=2.0)
    print("written")
except ImageWriteError as error:
    print("refused:", error)
"""


def test_a_video_cut_short_by_the_disk_is_refused(tmp_path):
    name = tmp_path / "p.mp4"
    done = run_limited(MP4, 30_000, str(name))
    assert done.stdout.startswith("refused:"), (done.stdout, done.stderr)
    assert list(tmp_path.iterdir()) == []


def test_noise_frames_are_large_enough_to_hit_the_limit():
    rgb = np.random.default_rng(0).integers(0, 255, (150, 150, 3)).astype(np.uint8)
    assert rgb.nbytes > 40_000  # the JPEG of noise cannot compress below the limit
