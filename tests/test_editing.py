"""Editing and interpolation: closed forms on the sphere and in W, PCA directions, GIFs, the edit
launcher (end to end, the one slow test here: four CLI processes)."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageSequence

from gaussjax import editing
from gaussjax.files import images

D = 16
RADIUS = 4.0  # sqrt(D)


def _rows(seed, shape=(3, D)):
    return np.random.RandomState(seed).randn(*shape)


def _angle(x, y):
    """Per-row angle between rows, from the chord (arccos loses precision at small angles)."""
    unit = lambda r: r / np.linalg.norm(r, axis=-1, keepdims=True)  # noqa: E731
    return 2 * np.arcsin(np.linalg.norm(unit(x) - unit(y), axis=-1) / 2)


def _unit_tangent(z_on_sphere, seed):
    """Unit vectors orthogonal to each row."""
    v = _rows(seed, z_on_sphere.shape)
    v -= np.sum(v * z_on_sphere, axis=-1, keepdims=True) / RADIUS**2 * z_on_sphere
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_to_sphere_is_pixel_norm_over_any_leading_dims():
    z = 3.0 * _rows(0, (2, 3, D))
    expected = z / np.sqrt(np.mean(z**2, axis=-1, keepdims=True) + 1e-8)
    np.testing.assert_allclose(editing.to_sphere(z), expected, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(editing.to_sphere(z), axis=-1), RADIUS, rtol=1e-6)
    assert np.all(editing.to_sphere(np.zeros(D)) == 0)  # eps: no NaN for a zero row


def test_sphere_walk_follows_the_closed_form_of_a_fixed_direction_walk():
    """A fixed unit direction v, tangent at the start, turns a row at rate cos(θ)/R within the plane
    of z and v, so after distance d: θ = gd(d/R) = 2 arctan(tanh(d/2R)) and
    z(d) = cos(θ) z + R sin(θ) v. (A true geodesic would give θ = d/R; both agree to first order.)"""
    z = editing.to_sphere(_rows(0)).astype(np.float64)
    v = _unit_tangent(z, 1)
    distances = np.array([0.0, 1.0, -2.0, 3.0])
    path = editing.sphere_walk(2.5 * z, v, distances)  # from an off-sphere start: normalised first
    assert path.shape == (4, 3, D) and path.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(path, axis=-1), RADIUS, rtol=1e-5)
    np.testing.assert_allclose(path[0], z, atol=1e-6)
    theta = 2 * np.arctan(np.tanh(distances / (2 * RADIUS)))[:, None, None]
    expected = np.cos(theta) * z + RADIUS * np.sin(theta) * v
    # Sub-steps of d/1000 are first order: the error is ~1e-5 R per unit distance.
    np.testing.assert_allclose(path, expected, atol=1e-4 * RADIUS)
    coarse = editing.sphere_walk(z, v, distances, num_substeps=200)  # 5x the sub-step error
    np.testing.assert_allclose(coarse, expected, atol=5e-4 * RADIUS)
    assert np.abs(coarse - expected).max() > 2 * np.abs(path - expected).max()
    small = editing.sphere_walk(z, v, [0.04])[0]
    np.testing.assert_allclose(_angle(small, z), 0.04 / RADIUS, rtol=1e-4)  # ≈ d / sqrt(D)


def test_sphere_walk_broadcasts_one_direction_and_walks_distances_independently():
    z, direction = _rows(2), _rows(3, (D,))
    together = editing.sphere_walk(z, direction, [-1.5, 0.5], num_substeps=50)
    tiled = editing.sphere_walk(z, np.tile(direction, (3, 1)), [-1.5, 0.5], num_substeps=50)
    alone = editing.sphere_walk(z, direction, [0.5], num_substeps=50)
    np.testing.assert_array_equal(together, tiled)
    np.testing.assert_allclose(together[1], alone[0], atol=1e-7)


def test_sphere_shift_is_one_step_then_reprojection():
    z = editing.to_sphere(_rows(4)).astype(np.float64)
    v = _unit_tangent(z, 5)
    path = editing.sphere_shift(0.5 * z, v, [0.0, 2.0, -1.0], scale=1.5)  # normalised first
    np.testing.assert_allclose(path[0], z, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(path, axis=-1), RADIUS, rtol=1e-6)
    # One tangent step of length s: tan θ = s / R exactly.
    for k, step in ((1, 3.0), (2, -1.5)):
        np.testing.assert_allclose(_angle(path[k], z), np.arctan(abs(step) / RADIUS), rtol=1e-5)
        expected = (z + step * v) * RADIUS / np.sqrt(RADIUS**2 + step**2)
        np.testing.assert_allclose(path[k], expected, atol=1e-5)


def test_slerp_rows_endpoints_constant_speed_and_norm():
    a, b = 2.0 * _rows(6), 0.5 * _rows(7)
    ts = np.linspace(0, 1, 5)
    path = editing.slerp_rows(a, b, ts).astype(np.float64)
    a_hat, b_hat = editing.to_sphere(a), editing.to_sphere(b)
    np.testing.assert_allclose(path[0], a_hat, atol=1e-5)
    np.testing.assert_allclose(path[-1], b_hat, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(path, axis=-1), RADIUS, rtol=1e-5)
    total = _angle(a_hat, b_hat)
    for t, row in zip(ts, path):  # on the great circle, at angle t Ω from a and (1 - t) Ω from b
        np.testing.assert_allclose(_angle(row, a_hat), t * total, atol=1e-5)
        np.testing.assert_allclose(_angle(row, b_hat), (1 - t) * total, atol=1e-5)


def test_slerp_rows_handles_parallel_rows_and_refuses_opposite_ones():
    a = _rows(8)
    same = editing.slerp_rows(a, 3 * a, [0.0, 0.3, 1.0])  # no division by sin(0)
    np.testing.assert_allclose(same, np.broadcast_to(editing.to_sphere(a), same.shape), atol=1e-5)
    nearly = editing.slerp_rows(a, a + 1e-9 * _rows(9), [0.5])
    assert np.all(np.isfinite(nearly))
    with pytest.raises(ValueError, match="opposite rows"):
        editing.slerp_rows(a, -a, [0.5])


def test_linear_paths_and_interpolation():
    w, d = _rows(10, (2, 8)), _rows(11, (8,))
    path = editing.linear_path(w, d, [-1.0, 0.5])
    np.testing.assert_allclose(path, np.stack([w - d, w + 0.5 * d]), rtol=1e-6, atol=1e-6)
    per_row = _rows(12, (2, 8))
    np.testing.assert_allclose(editing.linear_path(w, per_row, 2.0)[0], w + 2 * per_row, rtol=1e-6)
    np.testing.assert_allclose(
        editing.lerp(w, 3 * w, [0.0, 0.5, 1.0]), np.stack([w, 2 * w, 3 * w]), rtol=1e-6
    )
    path = editing.interpolation_path(
        {"wplus": w, "f": np.zeros(4)}, {"wplus": -w, "f": np.ones(4)}, [0.25]
    )
    np.testing.assert_allclose(path[0]["wplus"], 0.5 * w, rtol=1e-6)
    np.testing.assert_allclose(path[0]["f"], 0.25)


def test_edit_and_interpolation_paths_use_the_sphere_for_z_spaces():
    zplus, f = _rows(13, (2, D)), _rows(14, (5,))
    direction = _rows(15, (D,))
    path = editing.edit_path(None, {"zplus": zplus, "f": f}, direction, [0.0, 1.0], 100)
    expected = editing.sphere_walk(zplus, direction, [0.0, 1.0], 100)
    np.testing.assert_array_equal(np.stack([p["zplus"] for p in path]), expected)
    assert all(p["f"] is f for p in path)  # F held fixed
    w_path = editing.edit_path(None, {"w": _rows(16, (8,))}, np.ones(8), [2.0])
    np.testing.assert_allclose(w_path[0]["w"], _rows(16, (8,)) + 2.0, rtol=1e-6)
    z_a, z_b = _rows(17, (D,)), _rows(18, (D,))
    interp = editing.interpolation_path({"z": z_a}, {"z": z_b}, [0.5])
    np.testing.assert_allclose(interp[0]["z"], editing.slerp_rows(z_a, z_b, [0.5])[0])


def test_zspace_principal_directions_invert_a_planted_full_rank_map():
    """w = z A + b, A [5, 8] of rank 5, k = 5: the coordinates are c = (z - z̄) A V exactly, so the
    regression z - z̄ = c B has the exact solution B = (A V)^-1, whatever the samples."""
    rs = np.random.RandomState(0)
    a = rs.randn(5, 8) * np.array([5.0, 3.0, 2.0, 1.0, 0.5])[:, None]
    z = rs.randn(400, 5)
    directions, stds, components = editing.zspace_principal_directions(z, z @ a + 7.0, 5)
    components64 = components.astype(np.float64)
    np.testing.assert_allclose(components64 @ components64.T, np.eye(5), atol=1e-6)
    coords = (z - z.mean(0)) @ a @ components64.T
    np.testing.assert_allclose(stds, coords.std(axis=0), rtol=1e-5)
    assert np.all(np.diff(stds) <= 0)
    inverse = np.linalg.inv(a @ components64.T)
    expected = inverse / np.linalg.norm(inverse, axis=1, keepdims=True)
    np.testing.assert_allclose(directions, expected, atol=1e-5)
    # So moving z along direction i moves w along W component i only.
    moved = directions.astype(np.float64) @ a @ components64.T
    np.testing.assert_allclose(moved - np.diag(np.diag(moved)), 0, atol=1e-4 * np.abs(moved).max())


def test_zspace_principal_directions_find_a_dominant_z_direction():
    """w = z A with one dominant direction u in Z: the first Z direction is ±u."""
    rs = np.random.RandomState(0)
    a = 0.05 * rs.randn(6, 5)
    a[2] = [10.0, 0, 0, 0, 0]  # z along u = e_2 drives w's largest variance
    z = rs.randn(5000, 6)
    directions, stds, components = editing.zspace_principal_directions(z, z @ a, 2)
    assert abs(directions[0, 2]) > 0.99
    assert stds[0] > 5 * stds[1] and components[0, 0] > 0.99  # sign fixed: largest entry > 0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: editing.sphere_walk(_rows(0), np.zeros(5), [1.0]), "does not fit"),
        (lambda: editing.sphere_walk(_rows(0), np.zeros(D), [1.0], 0), "num_substeps"),
        (lambda: editing.sphere_shift(_rows(0), np.zeros(D), [[1.0]]), "1-D"),
        (lambda: editing.linear_path(_rows(0), np.full(D, np.nan), [1.0]), "must be finite"),
        (lambda: editing.sphere_walk(_rows(0), np.zeros(D), [np.inf]), "must be finite"),
        (lambda: editing.slerp_rows(_rows(0), _rows(0, (2, D)), [0.5]), "shapes"),
        (lambda: editing.lerp(np.zeros(3), np.zeros(4), [0.5]), "shapes"),
        (lambda: editing.to_sphere([np.nan]), "must be finite"),
        (
            lambda: editing.zspace_principal_directions(_rows(0, (10, 4)), _rows(1, (10, 4)), 9),
            "k must be",
        ),
        (
            lambda: editing.zspace_principal_directions(_rows(0, (10, 4)), _rows(1, (9, 4)), 1),
            "same N",
        ),
        (  # w of rank 2 has no third principal component
            lambda: editing.zspace_principal_directions(
                _rows(0, (50, 4)), _rows(1, (50, 2)) @ _rows(2, (2, 6)), 3
            ),
            "non-degenerate",
        ),
        (lambda: editing.edit_path(None, {"f": np.zeros(3)}, np.zeros(3), [1.0]), "expected one"),
        (
            lambda: editing.interpolation_path({"w": np.zeros(2)}, {"z": np.zeros(2)}, [0.5]),
            "different spaces",
        ),
    ],
)
def test_bad_edit_inputs_are_refused_with_one_line_errors(call, message):
    with pytest.raises(ValueError, match=message) as error:
        call()
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("channels", [1, 3])
def test_gif_round_trip(tmp_path, channels):
    rs = np.random.RandomState(0)
    if channels == 1:
        frames = rs.randint(0, 256, (4, 8, 10, 1)).astype(np.uint8)
    else:  # few colours: the GIF palette holds them exactly
        palette = rs.randint(0, 256, (6, 3)).astype(np.uint8)
        frames = palette[rs.randint(0, 6, (4, 8, 10))]
    images.save_gif(tmp_path / "a.gif", frames, duration_ms=70)
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == 4 and gif.size == (10, 8) and gif.mode == "P"
        assert gif.info["duration"] == 70 and gif.info["loop"] == 0
        mode = "L" if channels == 1 else "RGB"
        read = [np.asarray(f.convert(mode)) for f in ImageSequence.Iterator(gif)]
    np.testing.assert_array_equal(np.stack(read).reshape(frames.shape), frames)


def test_gif_refuses_bad_frames(tmp_path):
    with pytest.raises(ValueError, match=r"\[K, H, W, 1\|3\]"):
        images.save_gif(tmp_path / "a.gif", np.zeros((8, 8, 3), np.uint8))


@pytest.mark.slow
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
    strip = np.asarray(Image.open(tmp_path / "edit" / "sheets" / "generated0000_edit.png"))
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
    strip = np.asarray(Image.open(tmp_path / "edit" / "sheets" / "generated0000_interp.png"))
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
