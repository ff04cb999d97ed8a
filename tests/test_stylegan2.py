"""The Flax generator against the official implementation's outputs (shared fixtures)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import OFFICIAL_FIXTURES, TOL, labels, load_io, nhwc
from flax import nnx

from gaussjax.networks import ops
from gaussjax.networks.config import GeneratorConfig
from gaussjax.networks.stylegan2 import Generator, PureGenerator

# The fast tier (-m "not slow") checks parity on the smallest fixture only.
PARITY_FIXTURES = [
    pytest.param(name, marks=() if name == "orig16_gray" else pytest.mark.slow)
    for name in OFFICIAL_FIXTURES
]


@pytest.mark.parametrize("name", OFFICIAL_FIXTURES)
def test_mapping_matches_official(fixture_dir, fixture_generator, name):
    G, io = fixture_generator(name), load_io(fixture_dir, name)
    c = labels(io)
    np.testing.assert_allclose(G.mapping(io["z"], c), io["ws"], atol=TOL, rtol=0)
    np.testing.assert_allclose(
        G.mapping(io["z"], c, truncation_psi=0.7), io["ws_psi07"], atol=TOL, rtol=0
    )
    np.testing.assert_allclose(
        G.mapping(io["z"], c, truncation_psi=0.5, truncation_cutoff=2),
        io["ws_psi05_cut2"],
        atol=TOL,
        rtol=0,
    )


@pytest.mark.parametrize("name", PARITY_FIXTURES)
def test_synthesis_matches_official(fixture_dir, fixture_generator, name):
    G, io = fixture_generator(name), load_io(fixture_dir, name)
    fns, params = PureGenerator.split(G)
    synth = jax.jit(fns.synthesis, static_argnames="noise_mode")
    for key, ws, mode in (
        ("img_const", io["ws"], "const"),
        ("img_none", io["ws"], "none"),
        ("img_wplus_const", io["wplus"], "const"),
    ):
        np.testing.assert_allclose(
            synth(params, ws, mode), nhwc(io[key]), atol=TOL, rtol=0, err_msg=key
        )
    full = G(io["z"], labels(io), truncation_psi=0.7, noise_mode="const")
    np.testing.assert_allclose(full, nhwc(io["img_psi07_const"]), atol=TOL, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", OFFICIAL_FIXTURES)
def test_gradient_wrt_wplus_matches_official(fixture_dir, fixture_generator, name):
    G, io = fixture_generator(name), load_io(fixture_dir, name)
    fns, params = PureGenerator.split(G)
    probe = nhwc(io["grad_probe"])
    grad = jax.jit(jax.grad(lambda ws: jnp.sum(fns.synthesis(params, ws) * probe)))(io["wplus"])
    np.testing.assert_allclose(grad, io["grad_wplus"], atol=TOL, rtol=0)


@pytest.mark.slow
def test_vmap_over_single_images_equals_batch(fixture_dir, fixture_generator):
    G, io = fixture_generator("skip32"), load_io(fixture_dir, "skip32")
    fns, params = PureGenerator.split(G)
    per_image = jax.jit(jax.vmap(lambda w: fns.synthesis(params, w[None])[0]))(io["wplus"])
    np.testing.assert_allclose(per_image, nhwc(io["img_wplus_const"]), atol=TOL, rtol=0)


@pytest.mark.slow
def test_explicit_noise_equals_stored_noise_and_gets_gradients(fixture_dir, fixture_generator):
    G, io = fixture_generator("skip32"), load_io(fixture_dir, "skip32")
    stored = [layer.noise_const[...] for layer in G.synthesis.layers()]
    np.testing.assert_allclose(
        G.synthesis(io["ws"], noise=stored), nhwc(io["img_const"]), atol=TOL, rtol=0
    )
    fns, params = PureGenerator.split(G)
    energy = jax.jit(jax.grad(lambda n: jnp.sum(fns.synthesis(params, io["ws"], noise=n) ** 2)))
    grads = energy(stored)
    assert all(float(jnp.abs(g).max()) > 0 for g in grads)


@pytest.mark.slow
def test_random_noise_is_keyed_and_independent_per_layer(fixture_generator):
    G = fixture_generator("skip32")
    ws = G.mapping(np.random.RandomState(0).randn(2, G.z_dim).astype(np.float32))
    fns, params = PureGenerator.split(G)
    synthesis = jax.jit(fns.synthesis, static_argnames="noise_mode")
    a = synthesis(params, ws, noise_mode="random", key=jax.random.key(1))
    b = synthesis(params, ws, noise_mode="random", key=jax.random.key(1))
    c = synthesis(params, ws, noise_mode="random", key=jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert float(jnp.abs(a - c).max()) > 1e-3
    noises = G.synthesis._noise_inputs(2, "random", jax.random.key(3), None)
    assert not np.allclose(noises[1], noises[2])  # both 8x8 layers of one block differ
    with pytest.raises(ValueError, match="PRNG key"):
        G.synthesis(ws, noise_mode="random")


@pytest.mark.slow
def test_bfloat16_synthesis_is_close_to_float32(fixture_dir, fixture_generator):
    G, io = fixture_generator("skip32"), load_io(fixture_dir, "skip32")
    img = G.synthesis(io["ws"], dtype=jnp.bfloat16)
    assert img.dtype == jnp.float32
    rel = float(jnp.abs(img - nhwc(io["img_const"])).max()) / float(np.abs(io["img_const"]).max())
    assert rel < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["skip", "orig", "resnet"])
def test_random_configs_run_and_have_official_num_ws(architecture):
    cfg = GeneratorConfig(
        z_dim=0,
        c_dim=3,
        w_dim=16,
        img_resolution=16,
        channel_base=64,
        channel_max=16,
        architecture=architecture,
        mapping_layers=1,
        use_noise=architecture != "orig",
    )
    G = Generator(cfg, rngs=nnx.Rngs(0))
    ws = G.mapping(np.zeros((2, 0), np.float32), np.eye(3, dtype=np.float32)[:2])
    assert ws.shape == (2, cfg.num_ws, 16) == (2, 6, 16)
    assert G.synthesis(ws).shape == (2, 16, 16, 3)


def test_bad_inputs_raise_clear_errors(fixture_generator):
    G = fixture_generator("cond64_resnet")
    with pytest.raises(ValueError, match="conditional"):
        G.mapping(np.zeros((1, 48), np.float32))
    with pytest.raises(ValueError, match=r"ws must have shape \[N, 10, 64\]"):
        G.synthesis(np.zeros((1, 8, 64), np.float32))
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(np.zeros((1, 10, 64), np.float32), noise_mode="bogus")


@pytest.mark.slow
@pytest.mark.parametrize("name", OFFICIAL_FIXTURES)
def test_running_from_any_layer_equals_the_full_network(fixture_dir, fixture_generator, name):
    """Stop after layer j, start again from that state: the image equals one full pass, for conv0
    and conv1 entries of every architecture (skip, resnet, orig)."""
    G, io = fixture_generator(name), load_io(fixture_dir, name)
    fns, params = PureGenerator.split(G)
    wplus = io["wplus"][:2]
    run = jax.jit(fns.synthesis, static_argnames=("start_layer", "stop_layer"))
    full = np.asarray(run(params, wplus))
    # b4.conv1, the first conv0/conv1 pair, F/Z+'s layer and the last layer but one.
    for layer in sorted({0, 1, 2, min(3, G.cfg.num_layers - 2), G.cfg.num_layers - 2}):
        state = run(params, wplus, stop_layer=layer)
        assert state.x.shape[1] == G.cfg.layer_resolution(layer)
        resumed = run(params, wplus, start_layer=layer, start_state=state)
        np.testing.assert_allclose(resumed, full, atol=1e-5, rtol=0, err_msg=f"layer {layer}")
    const = G.synthesis.blocks[0].const[...]
    given_const = run(params, wplus, const_input=jnp.broadcast_to(const, (2,) + const.shape))
    np.testing.assert_allclose(given_const, full, atol=1e-6, rtol=0)


@pytest.mark.slow
def test_restarted_rgb_accumulator_drops_earlier_blocks(fixture_generator):
    """Entering with img=None (F/Z+'s entry) leaves out the RGB of the blocks before the entry."""
    G = fixture_generator("skip32")
    fns, params = PureGenerator.split(G)
    wplus = np.asarray(G.mapping(np.random.RandomState(0).randn(1, G.cfg.z_dim)))
    run = jax.jit(fns.synthesis, static_argnames=("start_layer", "stop_layer"))
    state = run(params, wplus, stop_layer=3)
    with_rgb = run(params, wplus, start_layer=3, start_state=state)
    restarted = run(params, wplus, start_layer=3, start_state=state._replace(img=None))
    earlier = run(params, wplus, stop_layer=2).img  # 8x8 RGB of b4 + b8
    block16 = np.asarray(with_rgb) - np.asarray(restarted)  # what the earlier blocks contributed
    assert np.abs(block16).max() > 1e-3
    upsampled = jnp.asarray(earlier)
    for _ in range(2):  # 8 -> 16 -> 32 through the official upsampling filter
        upsampled = ops.upsample2d(upsampled, ops.setup_filter(G.cfg.resample_filter))
    np.testing.assert_allclose(block16, upsampled, atol=1e-5)
