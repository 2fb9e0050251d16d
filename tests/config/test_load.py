from pathlib import Path

import pytest
import yaml

from im2hands.config import ExperimentConfig, config_to_yaml, load_config, save_config
from im2hands.utils.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_without_file():
    cfg = load_config()
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.data.num_points == 2048
    assert cfg.hand_model.mano_dir is None


def test_inherit_relative_to_file_and_precedence(tmp_path, monkeypatch):
    _write(tmp_path / "bases" / "a.yaml", {"name": "a", "data": {"num_points": 10, "seed": 1}})
    _write(tmp_path / "bases" / "b.yaml", {"data": {"num_points": 20}})
    cfg_path = _write(
        tmp_path / "exp" / "c.yaml",
        {"inherit_from": ["../bases/a.yaml", "../bases/b.yaml"], "data": {"seed": 3}},
    )
    monkeypatch.chdir(REPO)  # resolution must not depend on the working directory
    cfg = load_config(cfg_path)
    assert cfg.name == "a"  # from the first base
    assert cfg.data.num_points == 20  # the later base wins
    assert cfg.data.seed == 3  # the file wins over bases
    cfg = load_config(cfg_path, ["data.seed=7", "name=x"])
    assert cfg.data.seed == 7 and cfg.name == "x"  # overrides win over everything


def test_inherit_single_string_and_nested(tmp_path):
    _write(tmp_path / "root.yaml", {"seed": 5})
    _write(tmp_path / "sub" / "mid.yaml", {"inherit_from": "../root.yaml", "name": "mid"})
    leaf = _write(tmp_path / "sub" / "deeper" / "leaf.yaml", {"inherit_from": "../mid.yaml"})
    cfg = load_config(leaf)
    assert (cfg.seed, cfg.name) == (5, "mid")


def test_unknown_key_names_file_and_key(tmp_path):
    bad = _write(tmp_path / "bad.yaml", {"data": {"num_pointz": 3}})
    with pytest.raises(ConfigError, match=r"bad\.yaml.*data\.num_pointz"):
        load_config(bad)


def test_unknown_key_in_base_names_the_base(tmp_path):
    _write(tmp_path / "base.yaml", {"synth": {"colour": 1}})
    top = _write(tmp_path / "top.yaml", {"inherit_from": "base.yaml"})
    with pytest.raises(ConfigError, match=r"base\.yaml.*synth\.colour"):
        load_config(top)


def test_wrong_type_and_range_and_override_errors(tmp_path):
    bad = _write(tmp_path / "t.yaml", {"data": {"num_points": "many"}})
    with pytest.raises(ConfigError, match=r"t\.yaml.*data\.num_points"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"data\.uniform_ratio.*out of range"):
        load_config(None, ["data.uniform_ratio=1.5"])
    with pytest.raises(ConfigError, match=r"model\.ref_occ\.loss' = 'l1' is not one of mse, bce"):
        load_config(None, ["model.ref_occ.loss=l1"])
    with pytest.raises(ConfigError, match=r"model\.init_occ\.loss' = 'MSE' is not one of mse, bce"):
        load_config(None, ["model.init_occ.loss=MSE"])
    assert load_config(None, ["model.ref_occ.loss=bce"]).model.ref_occ.loss == "bce"
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(None, ["data.seed"])
    with pytest.raises(ConfigError, match=r"data\.nope"):
        load_config(None, ["data.nope=1"])


def test_cycle_and_missing_files(tmp_path):
    _write(tmp_path / "x.yaml", {"inherit_from": "y.yaml"})
    _write(tmp_path / "y.yaml", {"inherit_from": "x.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "x.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nothere.yaml")
    (tmp_path / "broken.yaml").write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")


def test_save_round_trip(tmp_path):
    cfg = load_config(None, ["data.num_points=33", "synth.focal_range=[100.0, 200.0]"])
    path = save_config(cfg, tmp_path / "run")
    again = load_config(path)
    assert again == cfg
    assert config_to_yaml(again) == config_to_yaml(cfg)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left


def _numeric_fields(cls, prefix=""):
    """(key, field) for every int/float/list-of-numbers field in the schema tree."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _numeric_fields(tp, f"{prefix}{f.name}.")
            continue
        args = typing.get_args(tp)
        base = {t for t in (args or (tp,)) if t is not type(None)}
        if base & {int, float} or any(typing.get_args(t) in ((int,), (float,)) for t in base):
            yield f"{prefix}{f.name}", f


def test_every_numeric_key_declares_a_range():
    missing = [k for k, f in _numeric_fields(ExperimentConfig) if "range" not in f.metadata and "choices" not in f.metadata]
    assert missing == []
    assert len(list(_numeric_fields(ExperimentConfig))) > 60


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.grad_clip=-1", r"train\.grad_clip' = -1\.0 is out of range"),
        ("train.grad_clip=0", r"train\.grad_clip' = 0\.0 is out of range"),
        ("train.max_minutes=-1", r"train\.max_minutes' = -1\.0 is out of range"),
        ("seed=-1", r"'seed' = -1 is out of range"),
        ("model.encoder.depth=19", r"model\.encoder\.depth' = 19 is not one of"),
        ("train.betas=[0.9,1.5]", r"train\.betas' = \[0\.9, 1\.5\] has a value out of range"),
        ("synth.focal_range=[650,450]", r"synth\.focal_range.*low <= high"),
        ("synth.fill_range=[0.7]", r"synth\.fill_range.*pair"),
        ("model.kpts_est.aug_blur_sigma=[-1,1]", r"aug_blur_sigma.*out of range"),
    ],
)
def test_out_of_range_values_fail_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_in_range_values_still_load():
    cfg = load_config(None, ["train.grad_clip=1.0", "train.max_minutes=0.5", "model.encoder.depth=34"])
    assert (cfg.train.grad_clip, cfg.train.max_minutes, cfg.model.encoder.depth) == (1.0, 0.5, 34)


def test_missing_inherited_file_names_the_file_that_inherits_it(tmp_path):
    child = _write(tmp_path / "sub" / "child.yaml", {"inherit_from": "../base_gone.yaml", "seed": 3})
    with pytest.raises(ConfigError, match=r"child\.yaml: inherit_from '\.\./base_gone\.yaml' not found.*base_gone\.yaml"):
        load_config(child)
