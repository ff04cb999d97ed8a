"""Tests for networks.lpips (LPIPS-VGG16 v0.1) and files.lpips_weights (reading its weights).

Reference checks, strongest first:
* `test_matches_lpips_package`: the `lpips` package itself, `LPIPS(net='vgg', pnet_rand=True)` with
  its random backbone and its own v0.1 lin weights copied over. PyPI's torchvision wheels link
  CUDA torch libraries and do not import beside the CPU torch build, so when torchvision fails to
  import, a stand-in that builds the same `vgg16().features` layer list from plain torch.nn is
  put in `sys.modules` for the duration of the test (lpips only calls `tv.vgg16(...).features`).
* `test_matches_torch_restatement`: an independent torch.nn.functional statement of LPIPS (needs
  torch only), using the lpips package's `weights/v0.1/vgg.pth` when it is installed.
"""

import importlib.util
import re
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gaussjax.files import lpips_weights
from gaussjax.files.lpips_weights import LPIPSWeightsError
from gaussjax.networks import lpips as gl

# Odd sizes on purpose: 50 -> 25 -> 12 -> 6 -> 3 and 36 -> 18 -> 9 -> 4 -> 2 exercise the
# max-pool flooring, and H != W catches transposed spatial axes.
SHAPE = (2, 50, 36, 3)
# torchvision vgg16 `features` indices of the conv layers, 'M' = max-pool (restated, not imported).
TV_FEATURES = (0, 2, "M", 5, 7, "M", 10, 12, 14, "M", 17, 19, 21, "M", 24, 26, 28)
TV_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)


def _lpips_lin_file() -> Path | None:
    """The lpips package's v0.1 VGG lin weights, located without importing lpips."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "weights" / "v0.1" / "vgg.pth"
    return path if path.is_file() else None


def _random_torch_state(seed: int = 0) -> tuple[dict, dict]:
    """A torchvision-format vgg16 state dict (random, non-zero biases) and lpips lin weights."""
    rng = np.random.default_rng(seed)
    vgg_state, c_in = {}, 3
    for idx, c_out in zip([i for i in TV_FEATURES if i != "M"], TV_WIDTHS):
        std = np.sqrt(2.0 / (9 * c_in))
        weight = rng.standard_normal((c_out, c_in, 3, 3)) * std
        vgg_state[f"features.{idx}.weight"] = weight.astype(np.float32)
        vgg_state[f"features.{idx}.bias"] = (0.1 * rng.standard_normal(c_out)).astype(np.float32)
        c_in = c_out
    # A full torchvision state dict also carries the classifier head (ignored; tiny stand-ins here).
    for i in (0, 3, 6):
        vgg_state[f"classifier.{i}.weight"] = np.zeros((2, 2), np.float32)
        vgg_state[f"classifier.{i}.bias"] = np.zeros((2,), np.float32)
    lin_state = {
        f"lin{k}.model.1.weight": np.abs(rng.standard_normal((1, c, 1, 1)))
        for k, c in enumerate(gl.LPIPS_CHANNELS)
    }
    lin_state = {k: v.astype(np.float32) for k, v in lin_state.items()}
    return vgg_state, lin_state


def _same_params(a: gl.LPIPS, b: gl.LPIPS):
    leaves_a, leaves_b = jax.tree.leaves(nnx.state(a)), jax.tree.leaves(nnx.state(b))
    assert len(leaves_a) == len(leaves_b) == 13 * 2 + 5
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def torch_state():
    vgg_state, lin_state = _random_torch_state()
    lin_file = _lpips_lin_file()
    if lin_file is not None and importlib.util.find_spec("torch") is not None:
        lin_state = lpips_weights.read_state_dict(lin_file)  # the real v0.1 weights when available
    return vgg_state, lin_state


@pytest.fixture(scope="module")
def model(torch_state):
    return lpips_weights.lpips_from_params(lpips_weights.lpips_params_from_torch(*torch_state))


@pytest.fixture(scope="module")
def images():
    kx, ky = jax.random.split(jax.random.key(0))
    x = jax.random.uniform(kx, SHAPE, minval=-1.0, maxval=1.0)
    y = jax.random.uniform(ky, SHAPE, minval=-1.0, maxval=1.0)
    return x, y


@pytest.fixture(scope="module")
def fns(model):
    """Jitted distance and features over the split state (the functional-loop pattern)."""
    graphdef, params = nnx.split(model)
    dist = jax.jit(lambda p, x, y: nnx.merge(graphdef, p)(x, y))
    feats = jax.jit(lambda p, x: nnx.merge(graphdef, p).features(x))
    return params, dist, feats


# ----------------------------------------------------------------------------- reference checks


def _torch_lpips(vgg_state, lin_state, x, y):
    """LPIPS v0.1 'net-lin' restated in torch.nn.functional (NCHW), independent of gaussjax."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def taps(img):
        h = (torch.from_numpy(np.array(img)).permute(0, 3, 1, 2) - shift) / scale
        out = []
        for item in TV_FEATURES:
            if item == "M":
                out.append(h)
                h = F.max_pool2d(h, 2, 2)
            else:
                w = torch.from_numpy(vgg_state[f"features.{item}.weight"])
                b = torch.from_numpy(vgg_state[f"features.{item}.bias"])
                h = F.relu(F.conv2d(h, w, b, padding=1))
        return out + [h]

    total = 0.0
    for k, (a, b) in enumerate(zip(taps(x), taps(y))):
        a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        lin = torch.from_numpy(np.array(lin_state[f"lin{k}.model.1.weight"]))
        total = total + F.conv2d((a - b) ** 2, lin).mean(dim=(2, 3))
    return total.reshape(-1).numpy()


@pytest.mark.slow
def test_matches_torch_restatement(torch_state, fns, images):
    params, dist, _ = fns
    expected = _torch_lpips(*torch_state, *images)
    np.testing.assert_allclose(np.asarray(dist(params, *images)), expected, rtol=0, atol=1e-5)


def _install_torchvision_standin(monkeypatch):
    """Puts a minimal `torchvision.models.vgg16` (features only, random init) in sys.modules."""
    import torch

    def vgg16(pretrained=False, weights=None, **_):
        if pretrained or weights is not None:
            raise RuntimeError("the torchvision stand-in has no pretrained weights")
        # torchvision's list: conv + ReLU(inplace) pairs and max-pools, the last pool at index 30.
        layers, c_in, widths = [], 3, iter(TV_WIDTHS)
        for item in TV_FEATURES + ("M",):
            if item == "M":
                layers.append(torch.nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                c_out = next(widths)
                layers += [torch.nn.Conv2d(c_in, c_out, 3, padding=1), torch.nn.ReLU(inplace=True)]
                c_in = c_out
        return types.SimpleNamespace(features=torch.nn.Sequential(*layers))

    models = types.ModuleType("torchvision.models")
    models.vgg16 = vgg16
    package = types.ModuleType("torchvision")
    package.models = models
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)


@pytest.fixture
def lpips_package(monkeypatch):
    """The `lpips` package, imported with a torchvision stand-in if torchvision cannot import."""
    if importlib.util.find_spec("lpips") is None:
        pytest.skip("lpips is not installed")
    pytest.importorskip("torch")
    before = set(sys.modules)
    try:
        import torchvision  # noqa: F401
    except Exception:  # PyPI wheels need CUDA torch: "operator torchvision::nms does not exist".
        _install_torchvision_standin(monkeypatch)
    import lpips

    yield lpips
    # lpips holds a reference to whatever torchvision it saw; drop it so nothing else reuses it.
    for name in set(sys.modules) - before:
        if name == "lpips" or name.startswith("lpips."):
            del sys.modules[name]


@pytest.mark.slow
def test_matches_lpips_package(lpips_package, images):
    import torch

    ref = lpips_package.LPIPS(net="vgg", pnet_rand=True, verbose=False)
    # lpips keeps torchvision's indices inside its slices: net.slice{s}.{idx}.* == features.{idx}.*
    sd = {k: v.numpy() for k, v in ref.state_dict().items()}
    vgg_state = {"features." + k.split(".", 2)[2]: v for k, v in sd.items() if k.startswith("net.")}
    # `lins.{k}` is a ModuleList alias of `lin{k}`: the same tensors under a second name.
    lin_state = {k: v for k, v in sd.items() if re.match(r"lin\d\.", k)}
    converted = lpips_weights.lpips_from_params(
        lpips_weights.lpips_params_from_torch(vgg_state, lin_state)
    )
    graphdef, params = nnx.split(converted)

    @jax.jit
    def ours(p, x, y):
        m = nnx.merge(graphdef, p)
        return m(x, y), jnp.sum((m.features(x) - m.features(y)) ** 2, -1)

    x, y = images
    with torch.no_grad():
        expected = ref(*(torch.from_numpy(np.array(a)).permute(0, 3, 1, 2) for a in (x, y)))
    expected = expected.reshape(-1).numpy()
    dist, feat_dist = ours(params, x, y)
    np.testing.assert_allclose(np.asarray(dist), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(feat_dist), expected, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- properties


def test_self_distance_is_zero(fns, images):
    params, dist, _ = fns
    x, _ = images
    np.testing.assert_array_equal(np.asarray(dist(params, x, x)), np.zeros(SHAPE[0]))


def test_symmetric(fns, images):
    params, dist, _ = fns
    x, y = images
    d_xy, d_yx = dist(params, x, y), dist(params, y, x)
    assert d_xy.shape == (SHAPE[0],) and bool(jnp.all(d_xy > 0))
    np.testing.assert_allclose(np.asarray(d_xy), np.asarray(d_yx), rtol=1e-6)


@pytest.mark.slow
def test_features_distance_equals_call(fns, images):
    params, dist, feats = fns
    x, y = images
    fx, fy = feats(params, x), feats(params, y)
    sizes = [(50 >> s) * (36 >> s) for s in range(5)]
    assert fx.shape == (SHAPE[0], sum(c * n for c, n in zip(gl.LPIPS_CHANNELS, sizes)))
    feat_dist = jnp.sum((fx - fy) ** 2, -1)
    np.testing.assert_allclose(
        np.asarray(feat_dist), np.asarray(dist(params, x, y)), rtol=0, atol=1e-5
    )


def test_grayscale_is_tiled(fns):
    params, dist, _ = fns
    g = jax.random.uniform(jax.random.key(1), (1, 16, 16, 1), minval=-1.0, maxval=1.0)
    h = jnp.flip(g, axis=1)
    rgb = [jnp.broadcast_to(a, a.shape[:-1] + (3,)) for a in (g, h)]
    np.testing.assert_allclose(
        np.asarray(dist(params, g, h)), np.asarray(dist(params, *rgb)), rtol=1e-6
    )
    with pytest.raises(ValueError, match="1 or 3 channels"):
        gl.ensure_rgb(jnp.zeros((1, 8, 8, 2)))
    with pytest.raises(ValueError, match="equal shapes"):
        dist(params, g, g[:, :8])


@pytest.mark.slow
def test_grad_through_distance_and_features(fns, images):
    params, dist, feats = fns
    x, y = images
    target = feats(params, y)  # a target's features are computed once

    @jax.jit
    def grads(a):
        g_dist = jax.grad(lambda b: jnp.sum(dist(params, b, y)))(a)
        g_feat = jax.grad(lambda b: jnp.sum((feats(params, b) - target) ** 2))(a)
        return g_dist, g_feat

    grad_x, grad_f = grads(x)
    assert grad_x.shape == SHAPE and bool(jnp.all(jnp.isfinite(grad_x)))
    assert float(jnp.max(jnp.abs(grad_x))) > 0
    np.testing.assert_allclose(np.asarray(grad_f), np.asarray(grad_x), rtol=1e-3, atol=1e-7)


def test_normalize_channels_zero_pixel_has_finite_grad():
    f = jnp.zeros((1, 2, 2, 4)).at[0, 0, 0].set(jnp.array([3.0, 4.0, 0.0, 0.0]))
    out = gl.normalize_channels(f)
    np.testing.assert_allclose(np.asarray(out[0, 0, 0]), [0.6, 0.8, 0.0, 0.0], rtol=1e-6)
    assert bool(jnp.all(out[0, 1] == 0))
    grad = jax.grad(lambda a: jnp.sum(gl.normalize_channels(a) * jnp.arange(4.0)))(f)
    assert bool(jnp.all(jnp.isfinite(grad)))


@pytest.mark.slow
def test_bfloat16_compute_is_close(fns, images):
    # Same parameters (float32), bfloat16 convolutions: dtype only lives in the graphdef.
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: gl.LPIPS(rngs=nnx.Rngs(0), dtype=jnp.bfloat16)))
    low = jax.jit(lambda p, x, y: nnx.merge(graphdef, p)(x, y))
    params, dist, _ = fns
    x, y = images
    np.testing.assert_allclose(
        np.asarray(low(params, x, y), np.float32), np.asarray(dist(params, x, y)), rtol=5e-2
    )


# ----------------------------------------------------------------------------- converters


def test_converter_ignores_classifier_and_fills_all(torch_state, model):
    vgg_state, lin_state = torch_state
    flat = dict(nnx.to_flat_state(nnx.state(model)))
    assert len(flat) == 13 * 2 + 5
    np.testing.assert_array_equal(
        np.asarray(flat[("vgg", "convs", 2, "kernel")][...]),
        vgg_state["features.5.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(
        np.asarray(flat[("lin", 4)][...]), np.asarray(lin_state["lin4.model.1.weight"]).reshape(-1)
    )


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda v, l: v.pop("features.0.bias"), r"missing \[features\.0\.bias\]"),
        (
            lambda v, l: v.update({"features.30.weight": np.zeros(1)}),
            r"unused \[features\.30\.",
        ),
        (lambda v, l: l.pop("lin3.model.1.weight"), r"missing \[lin3\.model\.1\.weight\]"),
        (lambda v, l: l.update({"lin5.model.1.weight": np.zeros(1)}), r"unused \[lin5"),
        (lambda v, l: v.update({"features.2.weight": np.zeros((64, 64, 1, 1))}), "does not fit"),
        (lambda v, l: l.update({"lin0.model.1.weight": -np.ones((1, 64, 1, 1))}), ">= 0"),
    ],
)
def test_converter_errors(torch_state, edit, match):
    vgg_state, lin_state = (dict(s) for s in torch_state)
    edit(vgg_state, lin_state)
    with pytest.raises(LPIPSWeightsError, match=match):
        lpips_weights.lpips_params_from_torch(vgg_state, lin_state)


def test_nvidia_state_names(torch_state, model):
    vgg_state, lin_state = torch_state
    convs = [i for i in TV_FEATURES if i != "M"]
    nv = {
        f"layers.conv{n + 1}.{p}": vgg_state[f"features.{i}.{p}"]
        for n, i in enumerate(convs)
        for p in ("weight", "bias")
    }
    nv.update(
        {
            f"lpips{k}": np.asarray(lin_state[f"lin{k}.model.1.weight"]).reshape(-1, 1, 1)
            for k in range(5)
        }
    )
    nv.update({f"layers.fc{i}.weight": np.zeros((2, 2), np.float32) for i in (1, 2, 3)})
    nv.update({f"layers.fc{i}.bias": np.zeros((2,), np.float32) for i in (1, 2, 3)})
    _same_params(
        lpips_weights.lpips_from_params(lpips_weights.lpips_params_from_nvidia_state(nv)), model
    )
    nv["layers.conv14.weight"] = np.zeros(1)
    with pytest.raises(LPIPSWeightsError, match=r"assumed naming.*unused \[layers\.conv14\."):
        lpips_weights.lpips_params_from_nvidia_state(nv)


# ----------------------------------------------------------------------------- files


def test_load_lpips_npz(tmp_path, torch_state, model):
    vgg_state, lin_state = torch_state
    np.savez(tmp_path / "vgg16.npz", **vgg_state)
    np.savez(tmp_path / "lin.npz", **{k: np.asarray(v) for k, v in lin_state.items()})
    _same_params(lpips_weights.load_lpips(tmp_path / "vgg16.npz", tmp_path / "lin.npz"), model)


def test_load_lpips_pth(tmp_path, torch_state, model):
    torch = pytest.importorskip("torch")
    for name, state in zip(("vgg16.pth", "vgg.pth"), torch_state):
        torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, tmp_path / name)
    _same_params(lpips_weights.load_lpips(tmp_path / "vgg16.pth", tmp_path / "vgg.pth"), model)


def test_load_lpips_nvidia_torchscript(tmp_path, torch_state, model):
    """A TorchScript module with the assumed vgg16.pt names loads like the torchvision files."""
    torch = pytest.importorskip("torch")
    vgg_state, lin_state = torch_state
    convs = [i for i in TV_FEATURES if i != "M"]

    class Layers(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for n, (i, c_out) in enumerate(zip(convs, TV_WIDTHS)):
                c_in = vgg_state[f"features.{i}.weight"].shape[1]
                conv = torch.nn.Conv2d(c_in, c_out, 3, padding=1)
                conv.weight.data = torch.from_numpy(vgg_state[f"features.{i}.weight"])
                conv.bias.data = torch.from_numpy(vgg_state[f"features.{i}.bias"])
                setattr(self, f"conv{n + 1}", conv)
            for n in (1, 2, 3):
                setattr(self, f"fc{n}", torch.nn.Linear(2, 2))

    class NvidiaLike(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = Layers()
            for k in range(5):
                w = np.asarray(lin_state[f"lin{k}.model.1.weight"]).reshape(-1, 1, 1)
                setattr(self, f"lpips{k}", torch.nn.Parameter(torch.from_numpy(w.copy())))

        def forward(self, x):
            return x

    torch.jit.script(NvidiaLike()).save(str(tmp_path / "vgg16.pt"))
    _same_params(lpips_weights.load_lpips(tmp_path / "vgg16.pt"), model)


def test_load_errors_are_one_line(tmp_path, torch_state):
    pytest.importorskip("torch")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    np.savez(tmp_path / "lin.npz", **{k: np.asarray(v) for k, v in torch_state[1].items()})
    cases = [
        (
            lambda: lpips_weights.load_lpips(tmp_path / "absent.pth", tmp_path / "lin.npz"),
            "no such file",
        ),
        (
            lambda: lpips_weights.load_lpips(tmp_path / "junk.pth", tmp_path / "lin.npz"),
            "cannot read",
        ),
        (lambda: lpips_weights.load_lpips(tmp_path / "absent.pt"), "no such file"),
        (
            lambda: lpips_weights.load_lpips(tmp_path / "junk.pth"),
            "not NVIDIA's TorchScript vgg16.pt",
        ),
    ]
    for call, match in cases:
        with pytest.raises(LPIPSWeightsError, match=match) as info:
            call()
        assert "\n" not in str(info.value)
