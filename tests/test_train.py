"""StyleGAN2 training (gaussjax/training): the discriminator's pieces against closed forms, the
losses' directions, EMA and style mixing, one compile, bit-exact resume, sharded = unsharded, and
the launcher's files."""

import dataclasses
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gaussjax.files import checkpoints
from gaussjax.inversion import sharding
from gaussjax.networks.config import GeneratorConfig
from gaussjax.networks.stylegan2 import Generator
from gaussjax.training import augment, gan, loop
from gaussjax.training.discriminator import (
    Discriminator,
    downsample2d,
    minibatch_stddev,
    pack_images,
)

TINY = GeneratorConfig(
    z_dim=8, w_dim=8, img_resolution=16, mapping_layers=2, channel_base=128, channel_max=16
)
REPO = pathlib.Path(__file__).resolve().parents[1]
CFG = gan.TrainConfig(batch_size=8, steps_per_dispatch=3, r1_interval=2)


def tiny_setup(cfg=CFG, seed=0):
    G = Generator(TINY, rngs=nnx.Rngs(seed))
    D = Discriminator(TINY, rngs=nnx.Rngs(seed + 1), mbstd_group=cfg.mbstd_group)
    return gan.init_state(G, D, cfg)


def tiny_dataset(n=16, seed=0):
    """Smooth blobs in [-1, 1], [n, 16, 16, 3]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:16, :16] / 15.0
    centers = rng.uniform(0.2, 0.8, (n, 2))
    d2 = (yy[None] - centers[:, :1, None]) ** 2 + (xx[None] - centers[:, 1:, None]) ** 2
    blob = 2 * np.exp(-d2 / 0.02) - 1
    return np.repeat(blob[..., None], 3, axis=-1).astype(np.float32)


def test_minibatch_stddev_closed_form():
    """Groups are images i, i + N/g, ...: the feature is the mean over features of their std."""
    x = np.zeros((4, 2, 2, 3), np.float32)
    x[2] = 2.0  # group {0, 2} (N/g = 2 groups of g = 2): std 1 everywhere; group {1, 3}: 0
    out = np.asarray(minibatch_stddev(jnp.asarray(x), group_size=2))
    assert out.shape == (4, 2, 2, 4)
    np.testing.assert_allclose(out[[0, 2], ..., 3], 1.0, atol=1e-4)
    np.testing.assert_allclose(out[[1, 3], ..., 3], 1e-4, atol=1e-4)  # sqrt(eps)
    np.testing.assert_array_equal(out[..., :3], x)
    with pytest.raises(ValueError, match="not a multiple"):
        minibatch_stddev(jnp.zeros((6, 2, 2, 1)), 4)


def test_downsample2d_halves_and_keeps_a_constant():
    x = jnp.full((1, 8, 8, 2), 3.0)
    f = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float32) / 64
    y = np.asarray(downsample2d(x, f))
    assert y.shape == (1, 4, 4, 2)
    np.testing.assert_allclose(y[:, 1:-1, 1:-1], 3.0, rtol=1e-6)  # interior: the filter sums to 1


def test_translation_augment_moves_a_dot_by_at_most_the_shift():
    x = np.zeros((64, 16, 16, 1), np.float32)
    x[:, 8, 8] = 1.0
    y = np.asarray(augment.translate(jnp.asarray(x), jax.random.key(0), p=0.5, max_fraction=0.125))
    assert np.all(y.sum(axis=(1, 2, 3)) == 1)  # the dot moves, intact (2 px from any edge)
    rows, cols = np.nonzero(y[..., 0])[1:]
    moved = (rows != 8) | (cols != 8)
    assert np.abs(rows - 8).max() <= 2 and np.abs(cols - 8).max() <= 2
    assert 0.25 < moved.mean() < 0.75  # about half the images, p = 0.5 (minus zero shifts)
    np.testing.assert_array_equal(
        augment.translate(jnp.asarray(x), jax.random.key(0), 0.0, 0.125), x
    )


def test_warp_is_exact_at_the_identity_and_moves_a_dot_by_its_shift():
    x = np.zeros((2, 16, 16, 1), np.float32)
    x[:, 5, 9] = 1.0
    identity = jnp.tile(jnp.asarray([[1.0, 0, 0], [0, 1, 0]]), (2, 1, 1))
    np.testing.assert_array_equal(augment.warp(jnp.asarray(x), identity), x)
    # Output -> input map: sampling at x + 2/16 (one pixel right) moves the content one pixel left;
    # y + 1/16 (half a pixel down) splits the dot over two rows.
    shifted = identity.at[0, 0, 2].set(2 / 16).at[1, 1, 2].set(1 / 16)
    y = np.asarray(augment.warp(jnp.asarray(x), shifted))[..., 0]
    assert y[0, 5, 8] == 1.0 and y[0].sum() == 1.0
    np.testing.assert_allclose(y[1, 4:6, 9], [0.5, 0.5])
    quarter_turn = jnp.asarray([[[0.0, -1, 0], [1, 0, 0]]])  # input (x, y) = (-y, x) of output
    z = np.asarray(augment.warp(jnp.asarray(x[:1]), quarter_turn))[0, ..., 0]
    np.testing.assert_allclose(z, np.rot90(x[0, ..., 0], k=1), atol=1e-6)


@pytest.mark.slow
def test_augment_pipeline_draws_each_transformation_with_probability_p():
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (400, 16, 16, 1)).astype(np.float32))
    key = jax.random.key(3)
    cfg = augment.AugmentConfig(p=0.3)
    np.testing.assert_array_equal(
        augment.augment(x, key, cfg), augment.translate(x, key, 0.3, 0.125)
    )
    np.testing.assert_array_equal(augment.augment(x, key, augment.AugmentConfig(p=0.0)), x)
    full = augment.AugmentConfig(p=0.3, geometric=True, color=True)
    changed = np.any(np.abs(np.asarray(augment.augment(x, key, full) - x)) > 1e-6, axis=(1, 2, 3))
    # Nine coins of p = 0.3 per image (translation, 4 geometric, 2 color; a zero integer shift
    # leaves the image as it was): about 1 - 0.7**8 .. 1 - 0.7**10 of them change.
    assert 1 - 0.7**8 - 0.08 < changed.mean() < 1 - 0.7**10 + 0.05
    grad = jax.grad(lambda im: jnp.sum(augment.augment(im, key, full) ** 2))(x)
    assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0


def test_color_augment_adds_brightness_then_scales_contrast_about_zero():
    x = jnp.tile(jnp.asarray([0.2, 0.6]).reshape(1, 1, 2, 1), (4000, 1, 1, 1))
    y = np.asarray(augment.adjust_color(x, jax.random.key(0), p=0.5))[:, 0, :, 0]
    contrast = (y[:, 1] - y[:, 0]) / 0.4  # y = (x + b) * c, so both follow from two pixels
    brightness = y[:, 0] / contrast - 0.2
    scaled, shifted = np.abs(contrast - 1) > 1e-6, np.abs(brightness) > 1e-6
    assert abs(scaled.mean() - 0.5) < 0.03 and abs(shifted.mean() - 0.5) < 0.03
    assert abs(np.std(np.log2(contrast[scaled])) - 0.5) < 0.03
    assert abs(np.std(brightness[shifted]) - 0.2) < 0.01


@pytest.mark.slow
def test_discriminator_shapes_and_parameter_count():
    D = Discriminator(TINY, rngs=nnx.Rngs(0))
    assert D(jnp.zeros((4, 16, 16, 3))).shape == (4,)
    # from_rgb 3->8 (1x1); blocks 16->8 (8->16) and 8->4 (16->16): conv0, conv1, skip; epilogue.
    expected = (3 * 8 + 8) + (9 * 8 * 8 + 8 + 9 * 8 * 16 + 16 + 8 * 16)
    expected += 9 * 16 * 16 + 16 + 9 * 16 * 16 + 16 + 16 * 16
    expected += 9 * 17 * 16 + 16 + 256 * 16 + 16 + 16 + 1
    assert sum(p.size for p in jax.tree.leaves(nnx.state(D, nnx.Param))) == expected
    wide = Discriminator(TINY, rngs=nnx.Rngs(0), width=1.5)  # 12 channels at 16 px, 24 below
    assert wide(jnp.zeros((4, 16, 16, 3))).shape == (4,)
    assert wide.from_rgb.weight.shape == (1, 1, 3, 12)
    assert wide.blocks[0].conv1.weight.shape == (3, 3, 12, 24)
    assert wide.out.weight.shape == (24, 1)


def test_packed_discriminator_judges_consecutive_images_side_by_side():
    x = jnp.arange(4 * 2 * 2 * 3, dtype=jnp.float32).reshape(4, 2, 2, 3)
    packed = np.asarray(pack_images(x, 2))
    assert packed.shape == (2, 2, 2, 6)
    np.testing.assert_array_equal(packed[1, ..., :3], x[2])
    np.testing.assert_array_equal(packed[1, ..., 3:], x[3])
    D = Discriminator(TINY, rngs=nnx.Rngs(0), mbstd_group=2, pack=2)
    images = jax.random.normal(jax.random.key(0), (8, 16, 16, 3))
    logits = D(images)
    assert logits.shape == (4,)
    swapped = images.at[2:4].set(images[2:4][::-1])  # a pack is an ordered pair
    assert np.asarray(D(swapped))[1] != np.asarray(logits)[1]
    with pytest.raises(ValueError, match="multiple of the discriminator's pack"):
        D(images[:7])


@pytest.mark.slow
def test_style_mixing_takes_rows_from_a_second_z():
    nets, state = tiny_setup()
    G = nets.generator(state)
    key = jax.random.key(3)
    never, w = gan.mixed_ws(G, key, 4, mixing_prob=0.0)
    assert np.allclose(never, never[:, :1]) and np.allclose(w, never[:, 0])
    always, w = gan.mixed_ws(G, key, 4, mixing_prob=1.0)
    same_as_first = np.all(np.isclose(always, w[:, None]), axis=(0, 2))
    cutoff = int(np.argmin(same_as_first))
    assert 1 <= cutoff < TINY.num_ws and same_as_first[:cutoff].all()
    assert not same_as_first[cutoff:].any()
    assert np.allclose(always[:, cutoff:], always[:, cutoff : cutoff + 1])  # one second z


def test_ema_closed_form():
    cfg = dataclasses.replace(CFG, ema_kimg=0.1, ema_rampup=None)
    nets, state = tiny_setup(cfg)
    moved = state._replace(g=jax.tree.map(lambda p: p + 1.0, state.g))
    after = gan.ema_update(cfg, moved)
    beta = 0.5 ** (8 / 100)  # batch / ema_nimg
    for e, p, new in zip(*map(jax.tree.leaves, (state.g_ema, moved.g, after.g_ema))):
        np.testing.assert_allclose(new, p + beta * (e - p), rtol=1e-6, atol=1e-6)
    ramped = gan.ema_update(dataclasses.replace(cfg, ema_rampup=0.05), moved)
    beta = 0.5 ** (8 / (8 * 0.05))  # first iteration: ema_nimg = seen * rampup
    leaf = jax.tree.leaves
    np.testing.assert_allclose(
        leaf(ramped.g_ema)[0],
        leaf(moved.g)[0] + beta * (leaf(state.g_ema)[0] - leaf(moved.g)[0]),
        rtol=1e-6,
        atol=1e-6,
    )


@pytest.mark.slow
def test_discriminator_step_separates_and_generator_step_fools():
    """The losses point the right way: D steps raise D(real) - D(fake); G steps raise D(G(z))."""
    cfg = dataclasses.replace(CFG, learning_rate=0.01)
    nets, state = tiny_setup(cfg)
    reals = jnp.asarray(tiny_dataset(8))
    key = jax.random.key(0)
    fakes, _ = jax.jit(lambda s: gan.fake_images(nets.generator(s), key, 8, 0.0))(state)

    @jax.jit
    def gap(s):
        return jnp.mean(nets.discriminate(s.d, reals) - nets.discriminate(s.d, fakes))

    d_trained = state
    step = jax.jit(lambda s: gan.discriminator_step(nets, cfg, s, key, reals)[0])
    for _ in range(10):
        d_trained = step(d_trained)
    assert gap(d_trained) > gap(state) + 0.5

    @jax.jit
    def fooled(s):
        images, _ = gan.fake_images(nets.generator(s), key, 8, 0.0)
        return jnp.mean(nets.discriminate(d_trained.d, images))

    g_step = jax.jit(lambda s: gan.generator_step(nets, cfg, s, key)[0])
    g_trained = d_trained
    for _ in range(10):
        g_trained = g_step(g_trained)
    assert fooled(g_trained) > fooled(d_trained) + 0.5


@pytest.mark.slow
def test_discriminator_loss_sees_reals_and_fakes_in_separate_minibatch_std_groups():
    """D loss = mean softplus(D(fakes)) + mean softplus(-D(reals)), each batch its own D pass."""
    nets, state = tiny_setup()
    reals, key = jnp.asarray(tiny_dataset(8)), jax.random.key(5)
    state = state._replace(iteration=jnp.ones((), jnp.int32))  # not an R1 iteration
    _, loss, r1 = jax.jit(gan.discriminator_step, static_argnums=(0, 1))(
        nets, CFG, state, key, reals
    )

    @jax.jit  # one program: op by op this test took 2.4x as long
    def expected_loss(state):
        k_fake, _ = jax.random.split(key)  # as discriminator_step draws them (augment_p = 0)
        fakes, _ = gan.fake_images(nets.generator(state), k_fake, 8, CFG.style_mixing_prob)
        expected = jnp.mean(jax.nn.softplus(nets.discriminate(state.d, fakes)))
        return expected + jnp.mean(jax.nn.softplus(-nets.discriminate(state.d, reals)))

    np.testing.assert_allclose(loss, expected_loss(state), rtol=1e-5)
    assert float(r1) == 0


@pytest.mark.slow
def test_dispatches_compile_once_and_report_lazy_r1():
    nets, state = tiny_setup()
    data, key = jnp.asarray(tiny_dataset()), jax.random.key(0)
    gan.train_dispatch.clear_cache()
    state, losses = gan.train_dispatch(nets, CFG, state, data, key, None, 3)
    state, losses_short = gan.train_dispatch(nets, CFG, state, data, key, None, 1)
    assert gan.train_dispatch._cache_size() == 1
    assert int(state.iteration) == 4
    assert np.all(np.isfinite(np.asarray(losses))) and float(losses[2]) > 0
    assert float(losses_short[2]) == 0  # iteration 3 is not an R1 iteration (interval 2)


def _run(outdir, kimg, **kw):
    run = loop.Run(str(outdir), total_kimg=kimg, snapshot_kimg=0.016, log=lambda _: None, **kw)
    return loop.train(run, TINY, CFG, tiny_dataset())


@pytest.mark.slow
def test_resume_continues_bit_for_bit_and_refuses_other_settings(tmp_path):
    """4 iterations in one go (sharded over the 4 test devices) equal 2, a restart, and 2 more."""
    _run(tmp_path / "straight", 0.032)
    _run(tmp_path / "resumed", 0.016)
    record = _run(tmp_path / "resumed", 0.032)
    assert record["kimg"] == 0.032
    a = checkpoints.load_generator_module(tmp_path / "straight" / loop.GENERATOR_DIR)
    b = checkpoints.load_generator_module(tmp_path / "resumed" / loop.GENERATOR_DIR)
    for x, y in zip(jax.tree.leaves(nnx.state(a)), jax.tree.leaves(nnx.state(b))):
        np.testing.assert_array_equal(x, y)
    progress = [json.loads(line) for line in (tmp_path / "resumed" / loop.PROGRESS_FILE).open()]
    assert [p["kimg"] for p in progress] == [0.016, 0.032]
    samples = sorted(p.name for p in (tmp_path / "resumed" / loop.SAMPLES_DIR).iterdir())
    assert samples == ["kimg00000.016.png", "kimg00000.032.png"]
    with pytest.raises(ValueError, match=r"other settings \(seed\)"):
        _run(tmp_path / "resumed", 0.048, seed=1)
    # A run written before a setting existed resumes while the setting stays at its default.
    run_file = tmp_path / "resumed" / loop.RUN_FILE
    written = json.loads(run_file.read_text())
    del written["training"]["d_width"], written["training"]["augment"]["color"]
    run_file.write_text(json.dumps(written))
    assert _run(tmp_path / "resumed", 0.048)["kimg"] == 0.048
    wider = loop.run_record(TINY, dataclasses.replace(CFG, d_width=2.0), seed=0)
    with pytest.raises(ValueError, match=r"other settings \(training\.d_width\)"):
        loop.start_or_resume(tmp_path / "resumed", wider)


@pytest.mark.slow
def test_sharded_iterations_equal_unsharded():
    nets, state = tiny_setup()
    data, key = jnp.asarray(tiny_dataset()), jax.random.key(0)
    single, _ = gan.train_dispatch(nets, CFG, jax.tree.map(jnp.copy, state), data, key, None, 2)
    mesh = sharding.data_mesh()
    assert mesh.size == 4
    sharded_state, sharded_data = sharding.replicate(mesh, (state, data))
    batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(sharding.DATA_AXIS))
    sharded, _ = gan.train_dispatch(nets, CFG, sharded_state, sharded_data, key, batch, 2)
    for x, y in zip(jax.tree.leaves(single.g_ema), jax.tree.leaves(sharded.g_ema)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_launcher_trains_on_a_folder_and_writes_a_generator(tmp_path):
    from gaussjax.files import images

    for i, image in enumerate(images.to_uint8(tiny_dataset(8))):
        images.save_png(tmp_path / f"img{i}.png", image)
    flags = [
        f"--outdir={tmp_path / 'run'}",
        f"--dataset={tmp_path}",
        "--resolution=16",
        "--z_dim=8",
        "--mapping_layers=2",
        "--channel_base=128",
        "--channel_max=16",
        "--batch_size=8",
        "--kimg=0.016",
        "--snapshot_kimg=0.016",
        "--ema_kimg=0.5",
        "--ema_rampup=0",
    ]
    cmd = [sys.executable, "-m", "experiments.train"]
    done = subprocess.run(cmd + flags, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "8 training images" in done.stdout and "snapshot at 0.016 kimg" in done.stdout
    G = checkpoints.load_generator_module(tmp_path / "run" / loop.GENERATOR_DIR)
    assert G.cfg.img_resolution == 16 and G.cfg.z_dim == 8
    assert (tmp_path / "run" / loop.SAMPLES_DIR).is_dir()
    training = json.loads((tmp_path / "run" / loop.RUN_FILE).read_text())["training"]
    assert training["ema_kimg"] == 0.5 and training["ema_rampup"] is None  # 0: no ramp
    other = subprocess.run(
        cmd + flags + ["--lr=0.001"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert other.returncode != 0
    last = other.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "training.learning_rate" in last
