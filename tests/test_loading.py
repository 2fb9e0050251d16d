"""im2hands.loading: the one module that reads checkpoints and rebuilds models (below models,
engine and extraction)."""

import pytest
import torch

from im2hands.config import load_config
from im2hands.loading import (
    build_from_stored_config,
    find_checkpoint,
    load_checkpoint,
    load_frozen,
    load_model,
    shipped_path,
)
from im2hands.models.base import HandsModel, KeypointEstimator, KeypointRefinement
from im2hands.models.encoder import ImageEncoder
from im2hands.utils.errors import Im2HandsError


def test_shipped_models_rebuild_with_their_declared_interfaces():
    est, cfg = load_model(shipped_path("estimator"))
    assert isinstance(est, KeypointEstimator) and cfg.model.type == "kpts_est" and not est.training
    assert est.image_size == cfg.model.encoder.image_size and not est.decodes_occupancy
    ref, _ = load_model(shipped_path("refiner"))
    assert isinstance(ref, KeypointRefinement) and ref.uses_image
    halo, cfg = load_model(shipped_path("keypoint_only"), occupancy=True)
    assert isinstance(halo, HandsModel) and halo.decodes_occupancy and not halo.uses_image and halo.image_size is None


def test_requirements_are_checked_with_one_message():
    with pytest.raises(Im2HandsError, match="does not decode occupancy"):
        load_model(shipped_path("estimator"), occupancy=True)
    with pytest.raises(Im2HandsError, match="model.ref_occ.init_occ=.*kpts_est.*init_occ one is needed"):
        load_model(shipped_path("estimator"), stage="init_occ", source="model.ref_occ.init_occ")
    with pytest.raises(Im2HandsError, match="kpts_ref.*init_occ one is needed"):
        load_frozen(shipped_path("refiner"), source="x", stage="init_occ")


def test_missing_paths_name_the_source(tmp_path):
    with pytest.raises(Im2HandsError, match="no run folder or checkpoint file at .*nowhere"):
        find_checkpoint(tmp_path / "nowhere")
    with pytest.raises(Im2HandsError, match="model.init_occ.init_decoders: .*not found: .*nowhere"):
        find_checkpoint(tmp_path / "nowhere", source="model.init_occ.init_decoders")


def test_frozen_model_equals_the_loaded_one():
    """load_frozen (config rebuilt without encoder weights, weights strict) gives the same
    tensors as load_model; build_from_stored_config gives the same architecture untrained."""
    path = shipped_path("init_occ")
    model, _ = load_model(path)
    frozen, config_yaml = load_frozen(path, source="test", stage="init_occ")
    assert "weights: null" in config_yaml and not frozen.training
    a, b = model.state_dict(), frozen.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    fresh, again = build_from_stored_config(config_yaml, source="test", stage="init_occ")
    assert again == config_yaml and fresh.state_dict().keys() == a.keys()
    assert all(fresh.state_dict()[k].shape == v.shape for k, v in a.items())
    stored = load_checkpoint(path)["config"]  # a plain dict works as well as YAML text
    assert build_from_stored_config(stored, source="test")[1] == config_yaml


def test_encoder_from_config_is_the_constructor():
    enc = load_config(None, ["model.encoder.width=8", "model.encoder.head_channels=8", "model.encoder.depth=10",
                             "model.encoder.image_size=64", "model.encoder.skips=true"]).model.encoder  # fmt: skip
    torch.manual_seed(0)
    a = ImageEncoder.from_config(enc, with_global=True)
    torch.manual_seed(0)
    b = ImageEncoder(depth=10, width=8, head_channels=8, feature_channels=enc.feature_channels, image_size=64,
                     with_global=True, skips=True)  # fmt: skip
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert a.image_size == 64 and a.global_conv is not None
