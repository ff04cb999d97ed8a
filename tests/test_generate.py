"""experiments.generate: seeds and saved latents -> PNGs equal to the official outputs."""

import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import load_io, nhwc
from PIL import Image

from converters.convert import convert
from gaussjax import load_generator
from gaussjax.files import images, results
from gaussjax.networks.stylegan2 import PureGenerator


def generate(*flags):
    return subprocess.run(
        [sys.executable, "-m", "experiments.generate", *flags],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_latents_render_to_the_official_images_and_seeds_write_a_grid(fixture_dir, tmp_path):
    convert(fixture_dir / "skip32.pkl", tmp_path / "gen")
    ref = load_io(fixture_dir, "skip32")
    np.savez(tmp_path / "projected_w.npz", w=ref["wplus"])
    result = generate(
        f"--generator={tmp_path / 'gen'}",
        f"--latents={tmp_path / 'projected_w.npz'}",
        f"--outdir={tmp_path / 'lat'}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    expected = images.to_uint8(nhwc(ref["img_wplus_const"]))
    for i in range(4):
        png = np.asarray(Image.open(tmp_path / "lat" / f"latent{i:04d}.png"))
        assert np.abs(png.astype(int) - expected[i].astype(int)).max() <= 1  # rounding at .5 only
    result = generate(
        f"--generator={tmp_path / 'gen'}",
        "--seeds=0-1,2",
        "--truncation_psi=0.7",
        f"--outdir={tmp_path / 'seeds'}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # The grid sits in sheets/, so a folder of generated images holds only them (invert --images).
    names = ["seed0000.png", "seed0001.png", "seed0002.png"]
    assert [p.name for p in images.image_files(str(tmp_path / "seeds"))] == names
    grid = np.asarray(Image.open(tmp_path / "seeds" / "sheets" / "grid.png"))
    seeds = [np.asarray(Image.open(tmp_path / "seeds" / n)) for n in names]
    np.testing.assert_array_equal(grid[:32, :64], np.concatenate(seeds[:2], axis=1))
    bad = generate(
        f"--generator={tmp_path / 'gen'}",
        f"--latents={fixture_dir / 'cond64_resnet_io.npz'}",
        f"--outdir={tmp_path / 'bad'}",
    )
    assert bad.returncode != 0 and "has no key 'w'" in bad.stderr
    bad = generate(f"--generator={tmp_path / 'gen'}", "--seeds=a-b", f"--outdir={tmp_path / 'bad'}")
    assert bad.returncode != 0 and "bad seed range" in bad.stderr


@pytest.mark.slow
def test_optimised_noise_maps_in_a_latents_file_are_used(fixture_dir, tmp_path):
    convert(fixture_dir / "orig16_gray.pkl", tmp_path / "gen")
    G = load_generator(tmp_path / "gen")
    fns, params = PureGenerator.split(G)
    ref = load_io(fixture_dir, "orig16_gray")
    noise = {
        f"noise_{j:02d}": np.full((r, r), 0.5, np.float32)
        for j, r in enumerate(G.cfg.noise_resolutions)
    }
    np.savez(tmp_path / "w.npz", w=ref["ws"][:1], **noise)
    ws, maps = results.read_latents(tmp_path / "w.npz", G.cfg)
    rendered = images.render_uint8(fns, params, ws, "const", jax.random.key(0), maps)
    expected = images.to_uint8(G.synthesis(ref["ws"][:1], noise=list(noise.values())))
    np.testing.assert_array_equal(rendered, expected)
    assert not np.array_equal(rendered, images.to_uint8(nhwc(ref["img_const"][:1])))
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04junk")
    with pytest.raises(ValueError, match="cannot read as .npz"):
        results.read_latents(tmp_path / "broken.npz", G.cfg)
