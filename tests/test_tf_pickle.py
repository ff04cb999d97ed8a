"""TensorFlow StyleGAN2 pickles: hand-built (G, D, Gs) files -> the official fixtures' outputs.

No TensorFlow here: the pickles are written with a stand-in class that pickles exactly like
`dnnlib.tflib.network.Network` (NEWOBJ + BUILD with the `__getstate__` dict). Their variables are
the shared fixtures' official state dicts put back into the TF layout (legacy.py's mapping, inverted
here independently of the converter), so a correct reader reproduces the official outputs.
"""

import os
import pickle
import subprocess
import sys
import types

import numpy as np
import pytest
from conftest import TOL, fixture_config, labels, load_io, nhwc

from converters import convert as convert_lib
from converters import tf_keys, tf_pickle
from converters.errors import ConversionError
from converters.safe_pickle import load_network_pickle
from gaussjax import load_generator

# fixture -> (flavour, build function of the synthesis network, static kwargs of G and Gs).
# skip32 stands for an original stylegan2 TF network (mapping_fmaps defaults to 512 there), the
# other two for stylegan2-ada TF networks (label_fmaps defaults to latent_size there).
SPECS = {
    "skip32": (
        4,
        "G_synthesis_stylegan2",
        dict(
            num_channels=3,
            resolution=32,
            label_size=0,
            latent_size=64,
            dlatent_size=64,
            mapping_fmaps=64,
            fmap_base=512,
            fmap_max=64,
            truncation_psi=0.5,
        ),
    ),
    "orig16_gray": (
        5,
        "G_synthesis",
        dict(
            num_channels=1,
            resolution=16,
            label_size=0,
            latent_size=32,
            dlatent_size=32,
            architecture="orig",
            fmap_base=256,
            fmap_max=32,
            mapping_layers=8,
            num_fp16_res=0,
            conv_clamp=256,
        ),
    ),
    "cond64_resnet": (
        5,
        "G_synthesis",
        dict(
            num_channels=3,
            resolution=np.int64(64),  # numbers may arrive as numpy scalars
            label_size=5,
            latent_size=48,
            dlatent_size=64,
            label_fmaps=64,
            architecture="resnet",
            fmap_base=1024,
            fmap_max=64,
            mapping_layers=2,
            num_fp16_res=2,
            conv_clamp=256,
            style_mixing_prob=None,
        ),
    ),
}


@pytest.fixture
def network_class(monkeypatch):
    """A class that pickles as `dnnlib.tflib.network.Network`; unpickling it for real fails."""

    class Network:
        def __init__(self, state):
            self.state = state

        def __getstate__(self):
            return self.state

        def __setstate__(self, state):
            raise AssertionError("the real TF Network loader must never be reached")

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    names = ["dnnlib", "dnnlib.tflib", "dnnlib.tflib.network"]
    modules = {name: types.ModuleType(name) for name in names}
    modules["dnnlib"].tflib = modules["dnnlib.tflib"]
    modules["dnnlib.tflib"].network = modules["dnnlib.tflib.network"]
    modules["dnnlib.tflib.network"].Network = Network
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return Network


def _state(version, name, func, variables, kwargs=None, components=None, src="# withheld\n"):
    """The `__getstate__` dict of a TF Network (version 5 adds shape/name records)."""
    state = dict(
        version=version,
        name=name,
        static_kwargs=dict(kwargs or {}),
        components=dict(components or {}),
        build_module_src=src,
        build_func_name=func,
        variables=list(variables),
    )
    if version >= 5:
        state.update(input_shapes=[[None, 4]], output_shapes=[[None, 4]], input_names=["x"])
    return state


def _tf_layer(sd, src, dst, up=False, noise=True):
    """One official modulated layer in TF names and layouts, in TF creation order."""
    weight = sd[f"{src}.weight"].transpose(2, 3, 1, 0)  # [O, I, kh, kw] -> [kh, kw, I, O]
    out = [
        (f"{dst}/weight", weight[::-1, ::-1] if up else weight),
        (f"{dst}/mod_weight", sd[f"{src}.affine.weight"].T),
        (f"{dst}/mod_bias", sd[f"{src}.affine.bias"] - 1),
    ]
    if noise:  # Session.run hands 0-d variables back as numpy scalars
        out.append((f"{dst}/noise_strength", np.float32(sd[f"{src}.noise_strength"])))
    return out + [(f"{dst}/bias", sd[f"{src}.bias"])]


def _tf_synthesis(sd, cfg):
    """Synthesis variables: noise inputs in layer order, then the blocks."""
    layers = ["b4.conv1"] + [f"b{r}.conv{i}" for r in cfg.block_resolutions[1:] for i in (0, 1)]
    out = [
        (f"noise{j}", sd[f"synthesis.{layer}.noise_const"][None, None])
        for j, layer in enumerate(layers)
    ]
    for res in cfg.block_resolutions:
        src, dst = f"synthesis.b{res}", f"{res}x{res}"
        if res == 4:
            out.append(("4x4/Const/const", sd[f"{src}.const"][None]))
            out += _tf_layer(sd, f"{src}.conv1", "4x4/Conv")
        else:
            out += _tf_layer(sd, f"{src}.conv0", f"{dst}/Conv0_up", up=True)
            out += _tf_layer(sd, f"{src}.conv1", f"{dst}/Conv1")
        if f"{src}.skip.weight" in sd:
            out.append((f"{dst}/Skip/weight", sd[f"{src}.skip.weight"].transpose(2, 3, 1, 0)))
        if f"{src}.torgb.weight" in sd:
            out += _tf_layer(sd, f"{src}.torgb", f"{dst}/ToRGB", noise=False)
    return out


def _tf_mapping(sd, cfg):
    out = []
    if cfg.c_dim:
        out += [("LabelEmbed/weight", sd["mapping.embed.weight"].T)]
        out += [("LabelEmbed/bias", sd["mapping.embed.bias"])]
    for i in range(cfg.mapping_layers):
        out += [(f"Dense{i}/weight", sd[f"mapping.fc{i}.weight"].T)]
        out += [(f"Dense{i}/bias", sd[f"mapping.fc{i}.bias"])]
    return out


def _tf_generator(Network, sd, cfg, name, version, synthesis_func, kwargs, src="# withheld\n"):
    """A TF G_main network (with mapping and synthesis components) holding `sd`'s weights."""
    own = [("dlatent_avg", sd["mapping.w_avg"])]
    if version == 4:  # the stylegan2 G_main also owns the progressive-growing level
        own.insert(0, ("lod", np.float32(0)))
    components = {
        "synthesis": Network(
            _state(version, "G_synthesis", synthesis_func, _tf_synthesis(sd, cfg), kwargs, src=src)
        ),
        "mapping": Network(_state(version, "G_mapping", "G_mapping", _tf_mapping(sd, cfg), kwargs)),
    }
    return Network(_state(version, name, "G_main", own, kwargs, components, src=src))


def _fixture_state_dict(fixture_dir, name):
    with np.load(fixture_dir / f"{name}_G_ema_state.npz") as data:
        return {k: data[k] for k in data.files}


def tf_networks(Network, fixture_dir, name, src="# withheld\n"):
    """(G, D, Gs) for fixture `name`: Gs holds its G_ema weights, G a perturbed copy."""
    version, synthesis_func, kwargs = SPECS[name]
    sd, cfg = _fixture_state_dict(fixture_dir, name), fixture_config(fixture_dir, name)
    perturbed = {k: v * np.float32(1.01) for k, v in sd.items()}
    args = (version, synthesis_func, kwargs)
    G = _tf_generator(Network, perturbed, cfg, "G", *args, src=src)
    Gs = _tf_generator(Network, sd, cfg, "Gs", *args, src=src)
    D = Network(_state(version, "D", "D_stylegan2", [("Output/bias", np.zeros(1, np.float32))]))
    return G, D, Gs


def _write(path, obj, protocol=3):  # protocol 3: the default of the Python that wrote them
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def _read(path, network="G_ema"):
    generator = tf_pickle.select_generator(load_network_pickle(str(path)), network, str(path))
    return tf_keys.convert_tf_generator(generator, str(path))


# --------------------------------------------------------------------------------------
# Fixture networks in TF form.


@pytest.mark.parametrize("name", SPECS)
def test_tf_pickle_gives_the_official_config_and_state_dict(
    network_class, fixture_dir, tmp_path, name
):
    path = _write(tmp_path / f"{name}.pkl", tf_networks(network_class, fixture_dir, name))
    cfg, state_dict = _read(path)
    assert cfg == fixture_config(fixture_dir, name)
    reference = _fixture_state_dict(fixture_dir, name)
    expected = {k: v for k, v in reference.items() if not k.endswith("resample_filter")}
    assert sorted(state_dict) == sorted(expected)
    for key, value in expected.items():
        assert state_dict[key].dtype == np.float32 and np.array_equal(state_dict[key], value), key


def test_numpy1_era_pickle_reads_the_same(network_class, fixture_dir, tmp_path):
    """The 2019-2020 files name numpy.core (NumPy 1); protocol 3 writes globals as text lines."""
    data = pickle.dumps(tf_networks(network_class, fixture_dir, "skip32"), protocol=3)
    assert b"cdnnlib.tflib.network\nNetwork\n" in data and b"numpy._core.multiarray\n" in data
    old, new = tmp_path / "old.pkl", tmp_path / "new.pkl"
    old.write_bytes(data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    new.write_bytes(data)
    (cfg, state_dict), (cfg_new, state_dict_new) = _read(old), _read(new)
    assert cfg == cfg_new and sorted(state_dict) == sorted(state_dict_new)
    assert all(np.array_equal(state_dict[k], state_dict_new[k]) for k in state_dict)


@pytest.mark.parametrize("name", SPECS)
def test_converted_tf_pickle_reproduces_official_outputs(
    network_class, fixture_dir, tmp_path, name
):
    path = _write(tmp_path / f"{name}.pkl", tf_networks(network_class, fixture_dir, name))
    convert_lib.convert(path, tmp_path / "gen")
    G, io = load_generator(tmp_path / "gen"), load_io(fixture_dir, name)
    c = labels(io)
    ws = G.mapping(io["z"], c)
    np.testing.assert_allclose(ws, io["ws"], atol=TOL, rtol=0)
    np.testing.assert_allclose(G.synthesis(io["ws"]), nhwc(io["img_const"]), atol=TOL, rtol=0)
    full = G(io["z"], c, truncation_psi=0.7, noise_mode="const")
    np.testing.assert_allclose(full, nhwc(io["img_psi07_const"]), atol=TOL, rtol=0)
    doc = (tmp_path / "gen" / "config.json").read_text()
    assert '"tensorflow-pickle"' in doc


def test_gs_by_default_g_on_request(network_class, fixture_dir, tmp_path):
    path = _write(tmp_path / "net.pkl", tf_networks(network_class, fixture_dir, "orig16_gray"))
    reference = _fixture_state_dict(fixture_dir, "orig16_gray")
    _, gs = _read(path)
    _, gs_alias = _read(path, "Gs")
    _, g = _read(path, "G")
    for key, value in gs.items():
        assert np.array_equal(value, reference[key]) and np.array_equal(gs_alias[key], value)
    assert not np.array_equal(g["mapping.fc0.weight"], gs["mapping.fc0.weight"])
    with pytest.raises(ConversionError, match="choose Gs"):
        _read(path, "D")


def test_build_module_src_is_never_executed(network_class, fixture_dir, tmp_path):
    marker = tmp_path / "pwned"
    source = f"open({str(marker)!r}, 'w').close()\ndef G_main(*args, **kwargs):\n    pass\n"
    compile(source, "<build_module_src>", "exec")  # valid, runnable Python
    networks = tf_networks(network_class, fixture_dir, "orig16_gray", src=source)
    _read(_write(tmp_path / "net.pkl", networks))
    assert not marker.exists()


def test_tf_kwargs_follow_each_code_base(network_class, fixture_dir, tmp_path):
    """fmap_decay/fmap_min give a channel table; stylegan2's mapping_fmaps defaults to 512."""
    cfg = tf_keys.generator_config(
        dict(resolution=64, fmap_base=256, fmap_decay=0.5, fmap_min=40), "stylegan2-ada", "f.pkl"
    )
    assert cfg.channel_table == (181, 128, 90, 64, 45)
    cfg = tf_keys.generator_config(dict(dlatent_size=64, resolution=8), "stylegan2", "f.pkl")
    assert cfg.mapping_layer_features == 512 and cfg.channel_base == 32768
    cfg = tf_keys.generator_config(dict(dlatent_avg_beta=None), "stylegan2", "f.pkl")
    assert cfg.mapping_w_avg_beta == 1.0


def test_key_map_without_noise_inputs():
    cfg = tf_keys.generator_config(dict(resolution=8, use_noise=False), "stylegan2-ada", "f")
    names = {name for name, _ in tf_keys.key_map(cfg).values()}
    assert not any("noise" in name for name in names)
    assert "synthesis/8x8/Conv0_up/weight" in names and "synthesis/8x8/ToRGB/mod_bias" in names


@pytest.mark.slow
def test_cli_converts_a_tf_pickle(network_class, fixture_dir, tmp_path):
    path = _write(tmp_path / "net.pkl", tf_networks(network_class, fixture_dir, "orig16_gray"))
    result = subprocess.run(
        [sys.executable, "-m", "converters.convert", f"--src={path}", f"--dst={tmp_path / 'gen'}"]
        + ["--network=Gs"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "16px orig" in result.stdout
    G, io = load_generator(tmp_path / "gen"), load_io(fixture_dir, "orig16_gray")
    np.testing.assert_allclose(G.synthesis(io["ws"]), nhwc(io["img_const"]), atol=TOL, rtol=0)


# --------------------------------------------------------------------------------------
# Hostile, truncated and unsupported files.


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _gs(nets):
    return nets[2].state


def _synthesis(nets):
    return _gs(nets)["components"]["synthesis"].state


def _replace_first(state, variable):
    state["variables"][0] = variable


def _doubling_components(nets, marker):
    """Adds 40 nested components to the synthesis network, each holding the next one twice."""
    node = nets[1]  # D: a small, valid network
    for level in range(40):
        components = dict(a=node, b=node)
        node = type(node)(_state(5, f"L{level}", "G_synthesis", [], components=components))
    _synthesis(nets)["components"]["shared"] = node


def _edit(change):
    """A mutator that changes the (G, D, Gs) networks in place and pickles the tuple."""

    def mutate(nets, marker):
        change(nets, marker)
        return nets

    return mutate


_REVISED = "G_synthesis_stylegan_revised"

# name -> (mutator of (G, D, Gs) of skip32 -> object to pickle, fragments of the error message).
BAD_TF_PICKLES = {
    "missing_gs": (lambda nets, marker: nets[:2], ["tuple of 2 objects", "(G, D, Gs)"]),
    "gs_none": (lambda nets, marker: (*nets[:2], None), ["Gs", "NoneType", "not a TF network"]),
    "single_network": (lambda nets, marker: nets[2], ["single TF network"]),
    "os_system_variable": (
        _edit(lambda nets, marker: _gs(nets)["variables"].append(("x", _Evil(marker)))),
        ["refusing to load", ".system'"],
    ),
    "os_system_kwarg": (
        _edit(lambda nets, marker: _gs(nets)["static_kwargs"].update(fmap_base=_Evil(marker))),
        ["refusing to load", ".system'"],
    ),
    "no_state": (
        _edit(lambda nets, marker: setattr(nets[2], "state", ["x"])),
        ["TF network Gs has no pickled state dict"],
    ),
    "old_version": (
        _edit(lambda nets, marker: _gs(nets).update(version=3)),
        ["format version 3", "StyleGAN1"],
    ),
    "stylegan1": (
        _edit(lambda nets, marker: _gs(nets).update(build_func_name="G_style")),
        ["'G_style'", "StyleGAN1"],
    ),
    "config_a_to_d": (
        _edit(lambda nets, marker: _synthesis(nets).update(build_func_name=_REVISED)),
        ["configs A-D"],
    ),
    "unknown_kwarg": (
        _edit(lambda nets, marker: _gs(nets)["static_kwargs"].update(use_attention=True)),
        ["unknown static_kwargs", "use_attention"],
    ),
    "array_kwarg": (
        _edit(lambda nets, marker: _gs(nets)["static_kwargs"].update(fmap_base=np.ones(2))),
        ["static_kwargs['fmap_base'] is not a number"],
    ),
    "string_resolution": (
        _edit(lambda nets, marker: _gs(nets)["static_kwargs"].update(resolution="32")),
        ["invalid ['img_resolution']"],
    ),
    "cyclic_components": (
        _edit(lambda nets, marker: _synthesis(nets)["components"].update(loop=nets[2])),
        ["not a plain tree"],
    ),
    "doubling_components": (_edit(_doubling_components), ["implausibly large"]),
    "label_concat": (
        _edit(lambda nets, marker: _gs(nets)["static_kwargs"].update(label_size=3)),
        ["LabelConcat"],
    ),
    "missing_variable": (
        _edit(lambda nets, marker: _synthesis(nets)["variables"].pop()),
        ["missing [synthesis/32x32/ToRGB/bias]", "unused []"],
    ),
    "extra_variable": (
        _edit(lambda nets, marker: _gs(nets)["variables"].append(("Extra/weight", np.ones(2)))),
        ["unused [Extra/weight]"],
    ),
    "duplicate_variable": (
        _edit(lambda nets, marker: _gs(nets)["variables"].append(("dlatent_avg", np.ones(64)))),
        ["dlatent_avg appears twice"],
    ),
    "wrong_rank": (  # noise0 (the first synthesis variable) as [4] instead of [1, 1, 4, 4]
        _edit(lambda nets, marker: _replace_first(_synthesis(nets), ("noise0", np.ones(4)))),
        ["noise0 has shape [4]", "4 dims starting with [1, 1]"],
    ),
}


def _write_bad(network_class, fixture_dir, directory, name, marker):
    mutate, fragments = BAD_TF_PICKLES[name]
    nets = tf_networks(network_class, fixture_dir, "skip32")
    return _write(directory / f"{name}.pkl", mutate(nets, marker)), fragments


@pytest.mark.parametrize("name", BAD_TF_PICKLES)
def test_bad_tf_pickles_get_one_line_errors_and_write_nothing(
    network_class, fixture_dir, tmp_path, name
):
    marker = tmp_path / "pwned"
    path, fragments = _write_bad(network_class, fixture_dir, tmp_path, name, marker)
    with pytest.raises(ConversionError) as info:
        convert_lib.convert(path, tmp_path / "out")
    message = str(info.value)
    assert "\n" not in message and path.name in message
    for fragment in fragments:
        assert fragment in message, message
    assert not (tmp_path / "out").exists() and not marker.exists()


def test_truncated_tf_pickle(network_class, fixture_dir, tmp_path):
    data = pickle.dumps(tf_networks(network_class, fixture_dir, "skip32"), protocol=3)
    for cut in (len(data) // 3, len(data) - 1):
        path = tmp_path / f"cut{cut}.pkl"
        path.write_bytes(data[:cut])
        with pytest.raises(ConversionError, match="truncated"):
            convert_lib.convert(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_hostile_tf_pickle(network_class, fixture_dir, tmp_path):
    marker = tmp_path / "pwned"
    path, _ = _write_bad(network_class, fixture_dir, tmp_path, "os_system_variable", marker)
    result = subprocess.run(
        [sys.executable, "-m", "converters.convert", f"--src={path}", f"--dst={tmp_path / 'out'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: refusing to load") and path.name in last
    assert not (tmp_path / "out").exists() and not marker.exists()
