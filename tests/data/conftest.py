import pytest

from im2hands.config.schema import SynthConfig
from im2hands.data.synthetic import synthesize


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """A tiny synthetic dataset (6 samples, 96 x 96) shared by the data tests."""
    root = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig(image_size=96, test_every=3, val_every=3)
    summary = synthesize(root, 6, seed=7, workers=1, settings=cfg, progress=False)
    assert summary["written"] == 6 and not summary["failed"]
    return root
