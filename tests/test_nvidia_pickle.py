"""Tests for the safe, torch-free NVIDIA network pickle reader."""

import collections
import io
import json
import pickle
import re
import subprocess
import sys
import time
import types

import numpy as np
import pytest
from fixtures_path import stylegan2_fixture_dir

from converters.errors import ConversionError
from converters.nvidia_pickle import read_network_pickle
from converters.safe_pickle import KNOWN_GLOBALS, _NetworkUnpickler
from converters.torch_storage import (
    KNOWN_STORAGE_GLOBALS,
    Storage,
    _StorageUnpickler,
    parse_storage_bytes,
)

FIXTURE_NAMES = ["skip32", "cond64_resnet", "orig16_gray"]


# --------------------------------------------------------------------------------------
# Helpers to craft pickles that reference torch_utils.persistence without having it.


@pytest.fixture
def persistence(monkeypatch):
    """Installs a fake ``torch_utils.persistence`` so pickle can name its global.

    The fake loader fails loudly if anything ever calls it in this process.
    """

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("the real persistence loader must never be reached")

    package = types.ModuleType("torch_utils")
    module = types.ModuleType("torch_utils.persistence")
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    package.persistence = module
    monkeypatch.setitem(sys.modules, "torch_utils", package)
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", module)
    return _reconstruct_persistent_obj


class _Record:
    """Pickles exactly like a ``@persistent_class`` object (a version-6 meta dict)."""

    def __init__(self, loader, class_name, state, module_src="# withheld\n", version=6):
        self.meta = dict(
            type="class", version=version, module_src=module_src, class_name=class_name, state=state
        )
        self.loader = loader

    def __reduce__(self):
        return self.loader, (self.meta,)


def _module_state(params=(), buffers=(), modules=(), non_persistent=(), **attrs):
    """Returns a minimal nn.Module ``__dict__`` with the given entries."""
    return dict(
        training=False,
        _parameters=collections.OrderedDict(params),
        _buffers=collections.OrderedDict(buffers),
        _non_persistent_buffers_set=set(non_persistent),
        _modules=collections.OrderedDict(modules),
        **attrs,
    )


def _generator(loader, modules=(), module_src="# withheld\n", **kwargs):
    """Returns a ``_Record`` of a Generator with recorded constructor kwargs."""
    state = _module_state(modules=modules, _init_args=(), _init_kwargs=dict(kwargs, z_dim=4))
    return _Record(loader, "Generator", state, module_src=module_src)


def _global_call_pickle(module, name, argument):
    """Hand-writes a protocol-2 pickle that calls ``module.name(argument)`` on load."""
    body = pickle.dumps(argument, protocol=2)[2:-1]  # drop PROTO header and STOP
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + body + b"\x85R."


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


class _LateStateRecord(_Record):
    """A ``_Record`` whose module state arrives by BUILD once the record exists.

    That is how a crafted file can put a record inside its own state: the arguments of a
    REDUCE are built before its result, but a BUILD (slot state) may reference the result.
    """

    def __reduce__(self):
        return self.loader, (dict(self.meta, state=None),), (None, {"state": self.meta["state"]})


def _expect_error(path, *fragments, network="G_ema"):
    """Asserts read_network_pickle fails with a one-line message containing fragments."""
    with pytest.raises(ConversionError) as info:
        read_network_pickle(path, network)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --------------------------------------------------------------------------------------
# 1-2. Real fixture pickles.


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_g_ema_matches_reference_state_dict(name):
    fixtures = stylegan2_fixture_dir()
    init_kwargs, state_dict = read_network_pickle(str(fixtures / f"{name}.pkl"))
    reference = np.load(fixtures / f"{name}_G_ema_state.npz")
    assert list(state_dict) == list(reference.files)
    for key in reference.files:
        assert state_dict[key].dtype == np.float32, key
        assert state_dict[key].shape == reference[key].shape, key
        assert np.array_equal(state_dict[key], reference[key]), key
    expected = json.loads((fixtures / f"{name}.json").read_text())["G_kwargs"]
    assert init_kwargs == expected
    assert type(init_kwargs["synthesis_kwargs"]) is dict  # EasyDict -> plain dict


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_g_differs_from_g_ema_with_same_keys(name):
    path = str(stylegan2_fixture_dir() / f"{name}.pkl")
    _, g_ema = read_network_pickle(path)
    kwargs, g = read_network_pickle(path, network="G")
    assert list(g) == list(g_ema)
    assert any(not np.array_equal(g[key], g_ema[key]) for key in g)
    assert kwargs == read_network_pickle(path)[0]


def test_missing_network_lists_available_keys():
    path = str(stylegan2_fixture_dir() / "skip32.pkl")
    _expect_error(path, "no network 'nope'", path, "it holds: D, G, G_ema", network="nope")


def test_discriminator_and_empty_entries_are_refused():
    fixtures = stylegan2_fixture_dir()
    _expect_error(str(fixtures / "skip32.pkl"), "Discriminator, not a Generator", network="D")
    _expect_error(str(fixtures / "cond64_resnet.pkl"), "'D'", "None", network="D")
    _expect_error(str(fixtures / "skip32.pkl"), "not a persistent", network="training_set_kwargs")


# --------------------------------------------------------------------------------------
# 3. Tensor storages, cross-checked against torch.


_DTYPE_NAMES = [
    "float32",
    "float16",
    "bfloat16",
    "float64",
    "int64",
    "int32",
    "int16",
    "uint8",
    "int8",
    "bool",
]


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("dtype_name", _DTYPE_NAMES)
def test_typed_storage_bytes_match_torch(dtype_name, zip_format):
    torch = pytest.importorskip("torch")
    tensor = (torch.arange(-3, 9) % 5).to(getattr(torch, dtype_name))
    buffer = io.BytesIO()
    torch.save(tensor._typed_storage(), buffer, _use_new_zipfile_serialization=zip_format)
    array = parse_storage_bytes(buffer.getvalue())
    expected = tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()
    assert array.dtype == expected.dtype
    assert np.array_equal(array, expected)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_untyped_storage_bytes_are_raw(zip_format):
    torch = pytest.importorskip("torch")
    tensor = torch.arange(6, dtype=torch.float32)
    buffer = io.BytesIO()
    torch.save(tensor.untyped_storage(), buffer, _use_new_zipfile_serialization=zip_format)
    assert buffer.getvalue().startswith(b"PK\x03\x04") == zip_format
    array = parse_storage_bytes(buffer.getvalue())
    assert array.dtype == np.uint8
    assert np.array_equal(array.view(np.float32), np.arange(6, dtype=np.float32))


def test_pickled_torch_tensors_honour_offset_and_stride():
    torch = pytest.importorskip("torch")
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tensors = {
        "transposed": base.t(),
        "offset": base[1:, 2:],
        "strided": base[::2, ::3],
        "parameter": torch.nn.Parameter(base.clone()),
        "half": base.half(),
        "scalar": torch.tensor(2.5),
        "long": torch.arange(5),
        "empty": torch.zeros(0, 3),
    }
    data = pickle.dumps(tensors, protocol=4)
    loaded = _NetworkUnpickler(io.BytesIO(data), "<memory>").load()
    for key, tensor in tensors.items():
        expected = tensor.detach().float() if tensor.is_floating_point() else tensor
        assert loaded[key].shape == tuple(tensor.shape), key
        assert np.array_equal(loaded[key], expected.detach().numpy()), key


@pytest.mark.parametrize(
    "offset, size, stride",
    [
        (0, (3, 3), (3, 1)),  # one element past the end
        (7, (2,), (1,)),  # offset pushes the last element out
        (0, (2, 2), (7, 1)),  # stride jumps outside
        (0, (1000, 1000), (0, 0)),  # stride-0 expansion far larger than the storage
        (-1, (2,), (1,)),  # negative offset
        (0, (2,), (-1,)),  # negative stride
        (0, (2, 2), (1,)),  # rank mismatch
        (0, [2], [1]),  # not tuples
    ],
)
def test_tensor_views_outside_their_storage_are_refused(offset, size, stride):
    unpickler = _NetworkUnpickler(io.BytesIO(b""), "<memory>")
    storage = Storage(np.arange(8, dtype=np.float32))
    with pytest.raises(ConversionError):
        unpickler._rebuild_tensor_v2(storage, offset, size, stride, False, None)


def test_storage_stream_with_foreign_global_is_refused():
    payload = _global_call_pickle("os", "system", "true")
    legacy_like = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + payload
    with pytest.raises(ConversionError, match="os.system"):
        parse_storage_bytes(legacy_like)


# --------------------------------------------------------------------------------------
# 4. Malicious pickles never execute anything.


def test_os_system_reduce_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = _write(tmp_path, "evil.pkl", _global_call_pickle("os", "system", f"touch {marker}"))
    _expect_error(path, "'os.system'", "whitelist", path)
    assert not marker.exists()


def test_real_reduce_of_os_system_is_refused(tmp_path):
    import os  # pickle writes os.system under its defining module (posix / nt)

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = _write(tmp_path, "evil.pkl", pickle.dumps({"G_ema": Evil()}, protocol=4))
    _expect_error(path, f"'{os.system.__module__}.system'")
    assert not marker.exists()


@pytest.mark.parametrize(
    "module, name, argument",
    [
        ("builtins", "eval", "open({marker!r}, 'w').close()"),
        ("builtins", "exec", "open({marker!r}, 'w').close()"),
        ("__builtin__", "eval", "open({marker!r}, 'w').close()"),
        ("subprocess", "Popen", ["touch", "{marker}"]),
        ("posix", "system", "touch {marker}"),
        ("builtins", "getattr", "x"),
        ("torch", "load", "{marker}"),
        ("dnnlib.util", "open_url", "{marker}"),
    ],
)
def test_dangerous_globals_are_refused(tmp_path, module, name, argument):
    marker = str(tmp_path / "pwned")
    if isinstance(argument, list):
        argument = [part.format(marker=marker) for part in argument]
    else:
        argument = argument.format(marker=marker)
    path = _write(tmp_path, "evil.pkl", _global_call_pickle(module, name, argument))
    _expect_error(path, f"'{module}.{name}'", "refusing to load")
    assert not (tmp_path / "pwned").exists()


def test_module_src_is_never_executed(tmp_path, persistence):
    marker = tmp_path / "pwned"
    source = f"open({str(marker)!r}, 'w').close()\nclass Generator:\n    pass\n"
    compile(source, "<module_src>", "exec")  # the payload is valid, runnable Python
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    mapping = _Record(
        persistence, "MappingNetwork", _module_state(params=[("weight", weight)]), module_src=source
    )
    record = _generator(persistence, modules=[("mapping", mapping)], module_src=source)
    path = _write(tmp_path, "evil.pkl", pickle.dumps({"G_ema": record}, protocol=4))
    _, state_dict = read_network_pickle(path)
    assert not marker.exists()
    assert list(state_dict) == ["mapping.weight"]


def test_crafted_record_follows_state_dict_rules(tmp_path, persistence):
    """Params before buffers before children; None and non-persistent entries skipped."""
    layer = _Record(
        persistence,
        "FullyConnectedLayer",
        _module_state(
            params=[("weight", np.ones((2, 2))), ("bias", None)],
            buffers=[("kept", np.arange(3)), ("cache", np.zeros(1)), ("gone", None)],
            non_persistent=["cache"],
        ),
    )
    mapping = _Record(
        persistence,
        "MappingNetwork",
        _module_state(
            buffers=[("w_avg", np.zeros(2, np.float16))], modules=[("fc0", layer), ("fc1", None)]
        ),
    )
    generator = _generator(
        persistence,
        modules=[("mapping", mapping)],
        mapping_kwargs=collections.OrderedDict(num_layers=1),
    )
    generator.meta["state"]["_parameters"]["top"] = np.float64(1.5) * np.ones(1)
    path = _write(tmp_path, "g.pkl", pickle.dumps({"G_ema": generator}, protocol=4))
    init_kwargs, state_dict = read_network_pickle(path)
    assert list(state_dict) == ["top", "mapping.w_avg", "mapping.fc0.weight", "mapping.fc0.kept"]
    assert state_dict["top"].dtype == np.float32  # float64 -> float32
    assert state_dict["mapping.w_avg"].dtype == np.float32  # float16 -> float32
    assert state_dict["mapping.fc0.kept"].dtype == np.arange(3).dtype  # integers kept
    assert init_kwargs == {"mapping_kwargs": {"num_layers": 1}, "z_dim": 4}


# --------------------------------------------------------------------------------------
# 5. Bad files.


def test_missing_directory_and_empty_files(tmp_path):
    _expect_error(str(tmp_path / "absent.pkl"), "no such file", "absent.pkl")
    _expect_error(str(tmp_path), "directory")
    _expect_error(_write(tmp_path, "empty.pkl", b""), "empty", "0 bytes")


def test_truncated_snapshot(tmp_path):
    data = (stylegan2_fixture_dir() / "skip32.pkl").read_bytes()
    path = _write(tmp_path, "half.pkl", data[: len(data) // 2])
    _expect_error(path, "truncated", "half.pkl")


def test_not_a_pickle(tmp_path):
    random_bytes = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    _expect_error(_write(tmp_path, "random.pkl", random_bytes), "not a network pickle")
    _expect_error(_write(tmp_path, "text.pkl", b"hello, world\n" * 10), "not a network pickle")
    _expect_error(_write(tmp_path, "junk.pkl", b"\x80\x04" + random_bytes), "junk.pkl")
    _expect_error(_write(tmp_path, "ckpt.pt", b"PK\x03\x04" + random_bytes), "zip archive")


def test_pickle_of_a_list(tmp_path):
    path = _write(tmp_path, "list.pkl", pickle.dumps([1, 2, 3], protocol=4))
    _expect_error(path, "top level is a list", "not a dict")


def test_stylegan3_generator_is_refused(tmp_path, persistence):
    synthesis_input = _Record(
        persistence, "SynthesisInput", _module_state(params=[("weight", np.ones((4, 4)))])
    )
    layer = _Record(persistence, "SynthesisLayer", _module_state())
    synthesis = _Record(
        persistence,
        "SynthesisNetwork",
        _module_state(modules=[("input", synthesis_input), ("L0_36_512", layer)]),
    )
    record = _generator(persistence, modules=[("synthesis", synthesis)])
    path = _write(tmp_path, "sg3.pkl", pickle.dumps({"G_ema": record}, protocol=4))
    _expect_error(path, "StyleGAN3 alias-free", "SynthesisInput", "only StyleGAN2 generators")


def test_unknown_class_and_bad_version_are_refused(tmp_path, persistence):
    odd = _Record(persistence, "FancyAttention", _module_state())
    record = _generator(persistence, modules=[("attn", odd)])
    path = _write(tmp_path, "odd.pkl", pickle.dumps({"G_ema": record}, protocol=4))
    _expect_error(path, "'FancyAttention'", "attn")
    old = _Record(persistence, "Generator", _module_state(), version=5)
    path = _write(tmp_path, "old.pkl", pickle.dumps({"G_ema": old}, protocol=4))
    _expect_error(path, "version 5", "only version 6")


def test_known_globals_are_documented():
    assert "torch_utils.persistence._reconstruct_persistent_obj" in KNOWN_GLOBALS
    assert "dnnlib.util.EasyDict" in KNOWN_GLOBALS
    assert {"torch.FloatStorage", "torch.UntypedStorage", "torch.storage.UntypedStorage"} <= (
        KNOWN_STORAGE_GLOBALS
    )
    assert not any(name.startswith(("os.", "builtins.e", "subprocess.")) for name in KNOWN_GLOBALS)


# Each unpickler with the whitelist it documents; find_class must enforce exactly that list.
_WHITELISTS = {
    "outer": (_NetworkUnpickler, KNOWN_GLOBALS),
    "storage": (_StorageUnpickler, KNOWN_STORAGE_GLOBALS),
}
_NEVER_ALLOWED = [
    "os.system",
    "builtins.eval",
    "builtins.exec",
    "posix.system",
    "subprocess.Popen",
    "builtins.getattr",
    # near misses of whitelisted names
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v3",
    "torch_utils.persistence._reconstruct_persistent_obj_",
    "collections.OrderedDic",
    "numpy.core.multiarray.scalars",
    "dnnlib.util.EasyDictionary",
    "torch.FloatStorag",
    "torch.storage.FloatStorage",
    "torch.Storage",
    "Torch.FloatStorage",
]


def _find_class(unpickler_class, dotted):
    module, name = dotted.rsplit(".", 1)
    return unpickler_class(io.BytesIO(b""), "<memory>").find_class(module, name)


@pytest.mark.parametrize("which", sorted(_WHITELISTS))
def test_find_class_accepts_every_whitelisted_global(which):
    unpickler_class, whitelist = _WHITELISTS[which]
    for dotted in sorted(whitelist):
        resolved = _find_class(unpickler_class, dotted)
        # The outer pickle gets code-free callables; a storage stream gets inert type markers.
        assert callable(resolved) if which == "outer" else resolved.name == dotted.split(".")[-1]


@pytest.mark.parametrize("which", sorted(_WHITELISTS))
def test_find_class_refuses_everything_else(which):
    unpickler_class, whitelist = _WHITELISTS[which]
    others = {dotted for _, names in _WHITELISTS.values() for dotted in names} - whitelist
    for dotted in _NEVER_ALLOWED + sorted(others):
        assert dotted not in whitelist
        with pytest.raises(ConversionError, match=re.escape(f"the global '{dotted}'")):
            _find_class(unpickler_class, dotted)


# --------------------------------------------------------------------------------------
# 6. Shared references and cycles: pickle memoises objects, so a file can reference one
# object from many places. Walks must stay linear (or refuse), never follow 2**n paths.

_DAG_LEVELS = 40  # each level references the next twice: 2**40 paths through 40 objects
_QUICK_SECONDS = 2.0  # the refusal takes milliseconds; following every path would take months


def _doubling_dag_of_submodules(loader):
    block = _Record(loader, "SynthesisLayer", _module_state())
    for _ in range(_DAG_LEVELS):
        modules = [("a", block), ("b", block)]
        block = _Record(loader, "SynthesisBlock", _module_state(modules=modules))
    return _generator(loader, modules=[("synthesis", block)])


def _doubling_dag_in_kwargs(loader):
    taps = 0
    for _ in range(_DAG_LEVELS):
        taps = [taps, taps]
    return _generator(loader, mapping_kwargs=dict(taps=taps))


def _kwargs_containing_themselves(loader):
    taps = []
    taps.append(taps)
    return _generator(loader, mapping_kwargs=dict(taps=taps))


def _generator_containing_itself(loader):
    state = _module_state(_init_args=(), _init_kwargs=dict(z_dim=4))
    generator = _LateStateRecord(loader, "Generator", state)
    state["_modules"]["loop"] = generator
    return generator


def _write_snapshot(tmp_path, generator):
    return _write(tmp_path, "hostile.pkl", pickle.dumps({"G_ema": generator}, protocol=4))


def _expect_quick_error(path, *fragments):
    """``_expect_error``, failing as well when the refusal takes more than a moment."""
    start = time.perf_counter()
    message = _expect_error(path, *fragments)
    assert time.perf_counter() - start < _QUICK_SECONDS, message
    return message


def test_shared_references_without_a_cycle_are_read(tmp_path, persistence):
    """Sharing alone is legal: torch's state_dict lists a shared submodule under each name."""
    weight = [("weight", np.ones(2, np.float32))]
    layer = _Record(persistence, "FullyConnectedLayer", _module_state(params=weight))
    modules = [("fc0", layer), ("fc1", layer)]
    mapping = _Record(persistence, "MappingNetwork", _module_state(modules=modules))
    taps = [1, 3, 3, 1]
    generator = _generator(
        persistence, modules=[("mapping", mapping)], mapping_kwargs=dict(a=taps, b=taps)
    )
    init_kwargs, state_dict = read_network_pickle(_write_snapshot(tmp_path, generator))
    assert list(state_dict) == ["mapping.fc0.weight", "mapping.fc1.weight"]
    assert init_kwargs["mapping_kwargs"] == dict(a=taps, b=taps)


@pytest.mark.parametrize("build", [_doubling_dag_of_submodules, _doubling_dag_in_kwargs])
def test_doubling_dag_is_refused_quickly(tmp_path, persistence, build):
    path = _write_snapshot(tmp_path, build(persistence))
    _expect_quick_error(path, path, "implausibly large", "shared references")


@pytest.mark.parametrize("build", [_generator_containing_itself, _kwargs_containing_themselves])
def test_self_referential_container_is_refused(tmp_path, persistence, build):
    path = _write_snapshot(tmp_path, build(persistence))
    _expect_quick_error(path, path, "not a plain tree", "contains itself")


def test_doubling_dag_in_an_error_message_is_not_printed(tmp_path):
    """A refused value is shown in the message only when printing it is cheap."""
    version = 0
    for _ in range(_DAG_LEVELS):
        version = [version, version]
    meta = dict(type="class", version=version, class_name="Generator", state={})
    data = _global_call_pickle("torch_utils.persistence", "_reconstruct_persistent_obj", meta)
    path = _write(tmp_path, "version.pkl", data)
    _expect_quick_error(path, "format version <list>")


def _run_convert_cli(src, dst):
    return subprocess.run(
        [sys.executable, "-m", "converters.convert", f"--src={src}", f"--dst={dst}"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_refuses_a_doubling_dag_with_one_error_line(tmp_path, persistence):
    path = _write_snapshot(tmp_path, _doubling_dag_of_submodules(persistence))
    result = _run_convert_cli(path, tmp_path / "out")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [result.stderr.strip().splitlines()[-1]], result.stderr
    assert "implausibly large" in errors[0] and path in errors[0]
    assert not (tmp_path / "out").exists()
