"""Editing and interpolation: closed forms on the sphere and in W, GIFs, the edit launcher."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from gaussjax import editing
from gaussjax.files import images


def _rows(seed, shape=(3, 16)):
    return np.random.RandomState(seed).randn(*shape).astype(np.float32)


def test_sphere_walk_closed_form_and_stays_on_the_sphere():
    z = editing.to_sphere_np(_rows(0))
    tangent = (
        _rows(1) - np.sum(_rows(1) * z, axis=-1, keepdims=True) / 16 * z
    )  # orthogonal to each row
    tangent /= np.linalg.norm(tangent, axis=-1, keepdims=True)
    path = editing.sphere_walk(z, tangent, [0.0, 1.0, -2.0], num_substeps=2000)
    np.testing.assert_allclose(np.linalg.norm(path, axis=-1), 4.0, rtol=1e-5)  # sqrt(16)
    np.testing.assert_allclose(path[0], z, atol=1e-6)
    for k, d in ((1, 1.0), (2, -2.0)):
        angle = np.arccos(np.clip(np.sum(path[k] * z, axis=-1) / 16, -1, 1))
        # A fixed ambient direction turns the row at rate cos(angle) / R: the angle after distance d is
        # the Gudermannian gd(d / R) = 2 arctan(tanh(d / 2R)).
        np.testing.assert_allclose(angle, 2 * np.arctan(np.tanh(abs(d) / 8.0)), rtol=1e-3)


def test_slerp_rows_endpoints_midpoint_and_norm():
    a, b = _rows(2), _rows(3)
    path = editing.slerp_rows(a, b, np.linspace(0, 1, 5))
    np.testing.assert_allclose(path[0], editing.to_sphere_np(a), atol=1e-5)
    np.testing.assert_allclose(path[-1], editing.to_sphere_np(b), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(path, axis=-1), 4.0, rtol=1e-5)
    angle = lambda x, y: np.arccos(np.clip(np.sum(x * y, -1) / 16, -1, 1))  # noqa: E731
    np.testing.assert_allclose(angle(path[2], path[0]), angle(path[2], path[-1]), rtol=1e-4)
    same = editing.slerp_rows(a, a, [0.3])  # parallel rows: no division by zero
    np.testing.assert_allclose(same[0], editing.to_sphere_np(a), atol=1e-5)


def test_linear_paths_and_interpolation():
    w, d = _rows(4, (2, 8)), _rows(5, (8,))
    np.testing.assert_allclose(editing.linear_path(w, d, [0.5])[0], w + 0.5 * d, rtol=1e-6)
    np.testing.assert_allclose(editing.lerp(w, 3 * w, [0.5])[0], 2 * w, rtol=1e-6)
    path = editing.interpolation_path(
        {"wplus": w, "f": np.zeros(4)}, {"wplus": -w, "f": np.ones(4)}, [0.25]
    )
    np.testing.assert_allclose(path[0]["wplus"], 0.5 * w, rtol=1e-6)
    np.testing.assert_allclose(path[0]["f"], 0.25)


def test_zspace_principal_directions_recover_a_planted_map():
    """w = z A with one dominant direction u in Z: the first Z direction is ±u."""
    rs = np.random.RandomState(0)
    u = np.zeros(6)
    u[2] = 1.0
    a = 0.05 * rs.randn(6, 5)
    a[2] = [10.0, 0, 0, 0, 0]  # z along u drives w's largest variance
    z = rs.randn(5000, 6)
    directions, stds, components = editing.zspace_principal_directions(z, z @ a, 2)
    assert abs(directions[0] @ u) > 0.99
    assert stds[0] > 5 * stds[1] and abs(components[0, 0]) > 0.99


def test_bad_edit_inputs_are_refused():
    with pytest.raises(ValueError, match="does not fit"):
        editing.sphere_walk(_rows(0), np.zeros(5), [1.0])
    with pytest.raises(ValueError, match="finite"):
        editing.linear_path(_rows(0), np.full(16, np.nan), [1.0])
    with pytest.raises(ValueError, match="k must be"):
        editing.zspace_principal_directions(_rows(0, (10, 4)), _rows(1, (10, 4)), 9)
    with pytest.raises(ValueError, match="expected one of"):
        editing.edit_path(None, {"f": np.zeros(3)}, np.zeros(3), [1.0])


@pytest.mark.parametrize("channels", [1, 3])
def test_gif_round_trip(tmp_path, channels):
    frames = np.random.RandomState(0).randint(0, 256, (4, 8, 10, channels)).astype(np.uint8)
    images.save_gif(tmp_path / "a.gif", frames)
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == 4 and gif.size == (10, 8)


def test_edit_launcher_walks_a_zplus_result_and_interpolates(tmp_path):
    run = lambda *a: subprocess.run(
        [sys.executable, "-m", *a], capture_output=True, text=True, timeout=600
    )  # noqa: E731
    inv = run(
        "experiments.invert",
        f"--outdir={tmp_path / 'inv'}",
        "--space=f_zplus",
        "--steps=3",
        "--num_generated=2",
        "--prior_samples=500",
    )
    assert inv.returncode == 0, inv.stderr[-2000:]
    edit = run(
        "experiments.edit",
        f"--result={tmp_path / 'inv' / 'generated0000.npz'}",
        "--component=0",
        "--distances=-1:1:3",
        f"--outdir={tmp_path / 'edit'}",
    )
    assert edit.returncode == 0, edit.stderr[-2000:]
    with Image.open(tmp_path / "edit" / "generated0000_edit.gif") as gif:
        assert gif.n_frames == 3
    strip = np.asarray(Image.open(tmp_path / "edit" / "generated0000_edit.png"))
    assert strip.shape == (32, 96, 3)
    middle = strip[:, 32:64]  # distance 0: the inversion result itself
    np.testing.assert_array_equal(
        middle, np.asarray(Image.open(tmp_path / "inv" / "generated0000.png"))
    )
    interp = run(
        "experiments.edit",
        f"--result={tmp_path / 'inv' / 'generated0000.npz'}",
        "--frames=4",
        f"--interpolate_to={tmp_path / 'inv' / 'generated0001.npz'}",
        f"--outdir={tmp_path / 'edit'}",
    )
    assert interp.returncode == 0, interp.stderr[-2000:]
    strip = np.asarray(Image.open(tmp_path / "edit" / "generated0000_interp.png"))
    np.testing.assert_array_equal(
        strip[:, -32:], np.asarray(Image.open(tmp_path / "inv" / "generated0001.png"))
    )
    render = run(
        "experiments.generate",
        f"--latents={tmp_path / 'inv' / 'generated0001.npz'}",
        f"--outdir={tmp_path / 'gen'}",
    )  # F/Z+ result re-rendered from its F and Z+ rows
    assert render.returncode == 0, render.stderr[-2000:]
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "gen" / "latent0000.png")),
        np.asarray(Image.open(tmp_path / "inv" / "generated0001.png")),
    )
    bad = run(
        "experiments.edit",
        f"--result={tmp_path / 'missing.npz'}",
        "--component=0",
        f"--outdir={tmp_path}",
    )
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith("error: ")
