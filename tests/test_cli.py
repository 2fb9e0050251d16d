import subprocess
import sys

from pathlib import Path

from im2hands.cli import main

SYNTH = str(Path(__file__).resolve().parents[1] / "configs" / "synth.yaml")


def test_config_prints_resolved_yaml(capsys):
    assert main(["config", SYNTH, "data.num_points=77"]) == 0
    out = capsys.readouterr().out
    assert "num_points: 77" in out and "name: synth" in out


def test_bad_override_is_one_clear_line(capsys):
    assert main(["config", SYNTH, "data.bogus=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.bogus" in err[0]


def test_python_dash_m_works():
    res = subprocess.run([sys.executable, "-m", "im2hands", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and "im2hands" in res.stdout


def test_data_synth_then_show(tmp_path, capsys):
    """``im2hands data synth --out DIR --num 3 --seed 0 --workers 1`` writes a complete dataset
    (about 3 s), and ``im2hands data show`` draws one of its samples (about 4 s)."""
    import numpy as np
    from PIL import Image

    from im2hands.config import load_config
    from im2hands.data import format as fmt

    root = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(root), "--num", "3", "--seed", "0", "--workers", "1"]) == 0
    ids = ["0000000", "0000001", "0000002"]
    assert fmt.list_samples(root) == ids
    meta = fmt.read_meta(root)
    assert meta["num_samples"] == 3 and meta["seed"] == 0 and meta["source"] == "synthetic"
    assert sorted(sum((fmt.list_samples(root, s) for s in ("train", "val", "test")), [])) == ids
    cfg = load_config(root / "config.yaml")  # the resolved config, written into the output folder
    assert cfg.synth.image_size == 256
    for sid in ids:
        ann = fmt.read_annotation(root, sid)
        image = fmt.read_image(root / ann.image)
        masks = fmt.read_masks(root / ann.mask)
        depth = fmt.read_depth(root / ann.depth)
        assert image.shape == (256, 256, 3) and depth.shape == (256, 256)
        for side in ("left", "right"):
            visible, amodal = masks[f"{side}_visible"], masks[f"{side}_amodal"]
            assert amodal.any() and not (visible & ~amodal).any(), (sid, side)
        seen = masks["left_visible"] | masks["right_visible"]
        assert (depth[seen] > 0).all() and (depth[~seen] == 0).all(), sid
    assert not [p for p in root.rglob("*") if ".tmp" in p.name]  # atomic writes left nothing behind

    picture = tmp_path / "show.png"
    assert main(["data", "show", str(root), "--index", "2", "--out", str(picture)]) == 0
    with Image.open(picture) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.shape[0] > 256 and pixels.shape[1] > 256 and pixels.std() > 10
    capsys.readouterr()
    assert main(["data", "show", str(root), "--index", "3", "--out", str(tmp_path / "bad.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--index 3" in err[0] and str(root) in err[0]
    assert not (tmp_path / "bad.png").exists()


def test_negative_grad_clip_and_minutes_fail_in_config_with_exit_2(capsys):
    for override in ("train.grad_clip=-1", "train.max_minutes=-1"):
        assert main(["config", SYNTH, override]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and override.split("=")[0] in err[0] and "out of range" in err[0]


def _all_options(parser, name="im2hands"):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _all_options(sub, f"{name} {sub_name}")
        elif action.option_strings:
            yield name, parser, action


def test_help_gives_every_default():
    """Every option with a default says it in --help (checked on the formatted help text)."""
    import argparse

    from im2hands.cli import build_parser

    checked = 0
    for name, parser, action in _all_options(build_parser()):
        if action.default in (None, False, argparse.SUPPRESS):
            continue
        formatter = parser._get_formatter()
        formatter.add_argument(action)
        text = " ".join(formatter.format_help().split())
        assert "default" in text.lower(), f"{name} {action.option_strings[-1]}: {text}"
        if "(default:" in text:
            assert f"(default: {action.default})" in text
        checked += 1
    assert checked >= 15


def test_pair_scale_choices_are_the_pipelines():
    """``extract --pair-scale`` lists exactly the values the crop pipeline accepts (the CLI spells
    them out so that --help imports no torch)."""
    from im2hands.cli import build_parser
    from im2hands.extraction.hand_crops import PAIR_SCALES

    found = [a for name, _, a in _all_options(build_parser()) if name == "im2hands extract" and "--pair-scale" in a.option_strings]
    assert len(found) == 1 and set(found[0].choices) == set(PAIR_SCALES)


def test_unusable_output_paths_are_one_message_and_exit_2(tmp_path, capsys):
    """``--out`` that is a file, or lies under a file: one line naming it, exit 2, no traceback."""
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    kp = tmp_path / "kp"
    kp.mkdir()
    for out in (a_file, a_file / "sub"):
        for argv in (["extract", "--keypoints", str(kp), "--out", str(out)],
                     ["data", "synth", "--out", str(out), "--num", "1"],
                     ["eval", "--pred", str(kp), "--gt", str(kp), "--out", str(out)]):
            assert main(argv) == 2, argv
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and f"--out {out}" in err[0] and "Traceback" not in err[0], (argv, err)


def test_bad_global_extract_options_fail_once_with_exit_2(tmp_path, capsys):
    kp = tmp_path / "kp"
    kp.mkdir()
    (kp / "a.json").write_text("{}")
    for option, value, words in (("--threshold", "2", "between 0 and 1"), ("--focal", "-5", "positive")):
        assert main(["extract", "--keypoints", str(kp), "--out", str(tmp_path / "o"), option, value]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and option in err[0] and words in err[0]
    assert not (tmp_path / "o").exists()  # refused before anything was written
