"""experiments.generate: seeds and saved latents -> PNGs equal to the official outputs."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from test_stylegan2 import load_io, nhwc

from converters.convert import convert
from experiments.generate import parse_seeds
from gaussjax import images


def test_parse_seeds():
    assert parse_seeds("0-3,7, 9-10") == [0, 1, 2, 3, 7, 9, 10]
    with pytest.raises(ValueError, match="bad seed range"):
        parse_seeds("a-b")


def generate(*flags):
    return subprocess.run([sys.executable, "-m", "experiments.generate", *flags], capture_output=True, text=True,
                          timeout=300)


def test_latents_render_to_the_official_images_and_seeds_write_a_grid(fixture_dir, tmp_path):
    convert(fixture_dir / "skip32.pkl", tmp_path / "gen")
    ref = load_io(fixture_dir, "skip32")
    np.savez(tmp_path / "projected_w.npz", w=ref["wplus"])
    result = generate(f"--generator={tmp_path / 'gen'}", f"--latents={tmp_path / 'projected_w.npz'}",
                      f"--outdir={tmp_path / 'lat'}")
    assert result.returncode == 0, result.stderr[-2000:]
    expected = images.to_uint8(nhwc(ref["img_wplus_const"]))
    for i in range(4):
        png = np.asarray(Image.open(tmp_path / "lat" / f"latent{i:04d}.png"))
        assert np.abs(png.astype(int) - expected[i].astype(int)).max() <= 1  # rounding at .5 only
    result = generate(f"--generator={tmp_path / 'gen'}", "--seeds=0-2", "--truncation_psi=0.7",
                      f"--outdir={tmp_path / 'seeds'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "seeds").iterdir()) == ["grid.png", "seed0000.png", "seed0001.png",
                                                                      "seed0002.png"]
    bad = generate(f"--generator={tmp_path / 'gen'}", f"--latents={fixture_dir / 'cond64_resnet_io.npz'}",
                   f"--outdir={tmp_path / 'bad'}")
    assert bad.returncode != 0 and "has no key 'w'" in bad.stderr
