"""converters.convert end to end: fixture files -> generator directory -> official outputs."""

import pickle
import subprocess
import sys

import numpy as np
import pytest
from conftest import OFFICIAL_FIXTURES, TOL, load_io, nhwc

from converters import convert as convert_lib
from converters import files, pytorch_keys, rosinality
from converters.errors import ConversionError
from gaussjax import load_generator
from gaussjax.files import checkpoints


@pytest.mark.slow
@pytest.mark.parametrize("name", OFFICIAL_FIXTURES)
def test_pickle_and_state_dict_paths_reproduce_official_images(fixture_dir, tmp_path, name):
    convert_lib.convert(fixture_dir / f"{name}.pkl", tmp_path / "from_pkl")
    convert_lib.convert(
        fixture_dir / f"{name}_G_ema_state.npz",
        tmp_path / "from_npz",
        conv_clamp=256 if name != "skip32" else None,
    )
    G = load_generator(tmp_path / "from_pkl")
    io_arrays = load_io(fixture_dir, name)
    np.testing.assert_allclose(
        G.synthesis(io_arrays["ws"]), nhwc(io_arrays["img_const"]), atol=TOL, rtol=0
    )
    # Same weights either way (num_fp16_res is not visible in a state dict, so compare weights only).
    pkl_doc = checkpoints.read_generator_config(tmp_path / "from_pkl")[1]
    npz_G = load_generator(tmp_path / "from_npz")
    np.testing.assert_allclose(
        npz_G.synthesis(io_arrays["ws"]), G.synthesis(io_arrays["ws"]), atol=0, rtol=0
    )
    assert pkl_doc["source"]["format"] == "nvidia-pickle"


@pytest.mark.slow
def test_torch_state_dict_file(fixture_dir, tmp_path):
    torch = pytest.importorskip("torch")
    with np.load(fixture_dir / "skip32_G_ema_state.npz") as data:
        torch.save({k: torch.from_numpy(data[k]) for k in data.files}, tmp_path / "G_ema.pt")
    convert_lib.convert(tmp_path / "G_ema.pt", tmp_path / "gen")
    io_arrays = load_io(fixture_dir, "skip32")
    np.testing.assert_allclose(
        load_generator(tmp_path / "gen").synthesis(io_arrays["ws"]),
        nhwc(io_arrays["img_const"]),
        atol=TOL,
        rtol=0,
    )


@pytest.mark.slow
def test_rosinality_checkpoint(fixture_dir, tmp_path):
    pytest.importorskip("torch")
    convert_lib.convert(fixture_dir / "rosinality32.pt", tmp_path / "ros")
    G = load_generator(tmp_path / "ros")
    ref = load_io(fixture_dir, "rosinality32")
    ws = G.mapping(ref["z"])
    np.testing.assert_allclose(ws[:, 0], ref["w"], atol=TOL, rtol=0)
    np.testing.assert_allclose(G.synthesis(ws), nhwc(ref["img_const"]), atol=TOL, rtol=0)
    np.testing.assert_allclose(
        G(ref["z"], truncation_psi=0.7), nhwc(ref["img_psi07_const"]), atol=TOL, rtol=0
    )
    np.testing.assert_allclose(
        G.synthesis(ref["wplus"]), nhwc(ref["img_wplus_const"]), atol=TOL, rtol=0
    )


def test_key_maps_name_unused_and_missing_keys(fixture_dir):
    """Both state-dict key maps refuse a key too many and one too few, naming both."""
    with np.load(fixture_dir / "skip32_G_ema_state.npz") as data:
        official = dict(data)
    cfg = pytorch_keys.infer_config(official)
    official["mapping.extra"] = official.pop("mapping.fc0.bias")
    with pytest.raises(ConversionError) as info:
        pytorch_keys.generator_from_state_dict(official, cfg)
    assert str(info.value) == (
        "state dict does not match the generator config: "
        "unused [mapping.extra], missing [mapping.fc0.bias]"
    )
    pytest.importorskip("torch")
    g_ema = dict(files.read_torch(fixture_dir / "rosinality32.pt")["g_ema"])
    g_ema["extra"] = g_ema.pop("conv1.conv.weight")
    with pytest.raises(ConversionError) as info:
        rosinality.official_state_dict(g_ema, None)
    assert str(info.value) == (
        "rosinality state dict does not match a 32 px Generator: "
        "unused [extra], missing [conv1.conv.weight]"
    )


def test_network_choice_g_vs_g_ema(fixture_dir, tmp_path):
    ref = load_io(fixture_dir, "skip32")
    convert_lib.convert(fixture_dir / "skip32.pkl", tmp_path / "g", network="G")
    convert_lib.convert(fixture_dir / "skip32.pkl", tmp_path / "g_ema")
    err_g = np.abs(
        load_generator(tmp_path / "g").synthesis(ref["ws"]) - nhwc(ref["img_const"])
    ).max()
    err_ema = np.abs(
        load_generator(tmp_path / "g_ema").synthesis(ref["ws"]) - nhwc(ref["img_const"])
    ).max()
    assert err_ema <= TOL < err_g


def test_converting_twice_is_identical_and_dst_is_protected(fixture_dir, tmp_path):
    src = fixture_dir / "orig16_gray.pkl"
    convert_lib.convert(src, tmp_path / "a")
    convert_lib.convert(src, tmp_path / "b")
    assert (tmp_path / "a" / "config.json").read_bytes() == (
        tmp_path / "b" / "config.json"
    ).read_bytes()
    # The weights read back are identical (weights/ bytes are not: Orbax stores timestamps).
    fingerprints = {
        checkpoints.generator_fingerprint(checkpoints.load_generator_module(tmp_path / d))
        for d in "ab"
    }
    assert fingerprints == {checkpoints.read_generator_config(tmp_path / "a")[1]["fingerprint"]}
    with pytest.raises(FileExistsError, match="overwrite to replace"):
        convert_lib.convert(src, tmp_path / "a")
    convert_lib.convert(fixture_dir / "skip32.pkl", tmp_path / "a", overwrite=True)
    assert checkpoints.read_generator_config(tmp_path / "a")[0].img_resolution == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporaries left behind
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a gaussjax generator directory"):
        convert_lib.convert(src, tmp_path / "data", overwrite=True)
    assert (tmp_path / "data" / "precious.txt").read_text() == "keep me"


def test_failed_write_leaves_no_destination(fixture_dir, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints, "save_tree", fail)
    with pytest.raises(OSError, match="disk full"):
        convert_lib.convert(fixture_dir / "orig16_gray.pkl", tmp_path / "gen")
    assert list(tmp_path.iterdir()) == []


def _write_bad_inputs(directory, fixture_dir):
    pkl = (fixture_dir / "orig16_gray.pkl").read_bytes()
    files = {
        "empty.pkl": b"",
        "truncated.pkl": pkl[: len(pkl) // 2],
        "text.pkl": b"hello, not a pickle\n",
        "list.pkl": pickle.dumps([1, 2, 3]),
        "no_g_ema.pkl": pickle.dumps({"D": None}),
        "corrupt.pt": b"PK\x03\x04garbage",
        "corrupt.npz": b"PK\x03\x04garbage",
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return sorted(files) + ["missing.pkl"]


def test_bad_inputs_raise_one_line_errors_and_write_nothing(fixture_dir, tmp_path):
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    for name in _write_bad_inputs(src_dir, fixture_dir):
        with pytest.raises(ConversionError) as info:
            convert_lib.convert(src_dir / name, tmp_path / "out")
        assert "\n" not in str(info.value) and name in str(info.value)
        assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_cli_exit_code_and_message(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "converters.convert",
            f"--src={tmp_path / 'nope.pkl'}",
            f"--dst={tmp_path / 'out'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "no such file" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_is_quiet_unless_verbosity_is_given(fixture_dir, tmp_path):
    def run(*flags):
        return subprocess.run(
            [sys.executable, "-m", "converters.convert", f"--src={fixture_dir / 'orig16_gray.pkl'}"]
            + list(flags),
            capture_output=True,
            text=True,
            timeout=120,
        )

    quiet = run(f"--dst={tmp_path / 'a'}")
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stderr == "" and len(quiet.stdout.splitlines()) == 1  # "wrote ...": nothing else
    verbose = run(f"--dst={tmp_path / 'b'}", "--verbosity=0")
    assert verbose.returncode == 0 and "checkpoint" in verbose.stderr  # Orbax's INFO lines
