"""EXIF focal lengths (``read_exif_focal_35mm``) and their conversion to pixels (``focal_from_35mm``)."""

import math

import numpy as np
import pytest
from PIL import Image

from im2hands.data.format import read_exif_focal_35mm
from im2hands.geometry.placement import FULL_FRAME_DIAGONAL_MM, focal_from_35mm


def _jpeg(path, focal=None, size=(64, 48)):
    im = Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8))
    if focal is None:
        im.save(path)
    else:
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0xA405] = focal
        im.save(path, exif=exif)
    return path


def test_reads_the_35mm_equivalent_focal_length(tmp_path):
    assert read_exif_focal_35mm(_jpeg(tmp_path / "a.jpg", 26)) == 26.0
    assert read_exif_focal_35mm(_jpeg(tmp_path / "b.jpg")) is None  # no EXIF
    assert read_exif_focal_35mm(_jpeg(tmp_path / "c.jpg", 0)) is None  # "unknown"
    assert read_exif_focal_35mm(_jpeg(tmp_path / "d.png")) is None
    (tmp_path / "e.jpg").write_bytes(b"not an image")
    assert read_exif_focal_35mm(tmp_path / "e.jpg") is None
    assert read_exif_focal_35mm(tmp_path / "missing.jpg") is None


def test_focal_from_35mm_on_a_full_frame_shaped_image():
    """A 3600 x 2400 image has the full frame's shape at 100 px per mm: f_px = 100 x f35."""
    assert FULL_FRAME_DIAGONAL_MM == pytest.approx(43.2666, abs=1e-4)
    assert focal_from_35mm(50.0, 2400, 3600) == pytest.approx(5000.0)
    # the diagonal decides: a portrait image of the same pixels gets the same focal length
    assert focal_from_35mm(26.0, 4032, 3024) == pytest.approx(focal_from_35mm(26.0, 3024, 4032))
    # horizontal field of view of a 26 mm lens on a 4:3 image: about 65 degrees, as phones state
    fov = 2 * math.degrees(math.atan(4032 / 2 / focal_from_35mm(26.0, 3024, 4032)))
    assert 64.0 < fov < 68.0
