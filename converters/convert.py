"""Converts a PyTorch StyleGAN2 generator into a gaussjax generator directory.

    python -m converters.convert --src=network-snapshot.pkl --dst=out/ffhq [--network=G_ema|G] [--overwrite]

Sources:
  * NVIDIA persistence pickles (stylegan2-ada-pytorch, StyleGAN2 nets of the stylegan3 repository),
    read by a restricted unpickler that never runs the code embedded in the file;
  * NVIDIA TensorFlow pickles (stylegan2, stylegan2-ada TF: a (G, D, Gs) tuple; Gs = G_ema is the
    default), read by the same unpickler without TensorFlow and mapped as the official legacy.py does;
  * official state dicts as `.pt`/`.pth` (torch.load(weights_only=True)) or `.npz`; the config is read
    off the shapes, and --conv_clamp / --mapping_lr_multiplier give what shapes cannot tell;
  * rosinality/stylegan2-pytorch checkpoints ({'g_ema': ..., 'latent_avg': ...}).

Output: DST/config.json (human readable, with the source's sha256 and the generator fingerprint) and
DST/weights/ (Orbax). Written under a temporary name and renamed, so a partial DST never exists.
"""

import hashlib
import pathlib
import sys

from absl import flags, logging

from converters import (
    files,
    nvidia_pickle,
    pytorch_keys,
    rosinality,
    safe_pickle,
    tf_keys,
    tf_pickle,
)
from converters.errors import ConversionError
from gaussjax import cli
from gaussjax.files import checkpoints
from gaussjax.networks.config import GeneratorConfig

_SRC = flags.DEFINE_string("src", None, "Source file: .pkl, .pt/.pth or .npz.")
_DST = flags.DEFINE_string("dst", None, "Destination generator directory.")
_NETWORK = flags.DEFINE_enum(
    "network",
    "G_ema",
    ["G_ema", "G", "Gs"],
    "Which network of a snapshot to convert (TF pickles: G_ema and Gs both name Gs).",
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --dst.")
_CONV_CLAMP = flags.DEFINE_float(
    "conv_clamp",
    None,
    "State dicts only: conv_clamp of the network "
    "(256 for stylegan2-ada-pytorch training runs; unset = none).",
)
_MAPPING_LR = flags.DEFINE_float(
    "mapping_lr_multiplier", 0.01, "State dicts only: mapping lr multiplier."
)

_PICKLE_MAGIC = b"\x80"
_ZIP_MAGIC = b"PK\x03\x04"


def _head(path: pathlib.Path) -> bytes:
    """The first bytes of `path` for sniffing its format; b"" when it cannot be read (each format's
    reader checks the file once and says what is wrong with it)."""
    try:
        with path.open("rb") as f:
            return f.read(8)
    except OSError:
        return b""


def read_source(path: pathlib.Path, network: str, conv_clamp, mapping_lr_multiplier):
    """Reads any supported source. Returns (config, official state dict, source format name)."""
    head = _head(path)
    if path.suffix == ".npz":
        sd = files.read_npz(path)
        return (
            pytorch_keys.infer_config(
                sd, conv_clamp=conv_clamp, mapping_lr_multiplier=mapping_lr_multiplier
            ),
            sd,
            "state-dict-npz",
        )
    if head.startswith(_ZIP_MAGIC) or path.suffix in (".pt", ".pth"):
        return _from_torch_file(path, network, conv_clamp, mapping_lr_multiplier)
    if not head.startswith(_PICKLE_MAGIC) and path.suffix != ".pkl":
        files.require_file(path)  # missing, empty, a directory: say that
        raise ConversionError(f"{path}: not a pickle, .pt/.pth or .npz file")
    return _from_pickle(str(path), network)


def _from_pickle(path: str, network: str):
    """A PyTorch snapshot pickle or a TF (G, D, Gs) pickle, told apart after the safe unpickling."""
    top = safe_pickle.load_network_pickle(path)
    if tf_pickle.is_tf_pickle(top):
        generator = tf_pickle.select_generator(top, network, path)
        return *tf_keys.convert_tf_generator(generator, path), "tensorflow-pickle"
    kwargs, sd = nvidia_pickle.snapshot_generator(top, network, path)
    try:
        cfg = GeneratorConfig.from_official_kwargs(kwargs)
    except ValueError as e:
        raise ConversionError(f"{path}: {e}") from e
    return cfg, sd, "nvidia-pickle"


def _from_torch_file(path, network, conv_clamp, mapping_lr_multiplier):
    obj = files.read_torch(path)
    if not isinstance(obj, dict):
        raise ConversionError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    if "g_ema" in obj or "g" in obj:  # rosinality checkpoint
        key = {"G_ema": "g_ema", "G": "g"}[network]
        if key not in obj:
            raise ConversionError(
                f"{path}: no network '{key}' in this rosinality checkpoint (it holds: {', '.join(obj)})"
            )
        if obj.get("latent_avg") is None:
            logging.warning(
                "%s has no latent_avg: w_avg is set to zero, so truncation is meaningless", path
            )
        sd = rosinality.official_state_dict(obj[key], obj.get("latent_avg"))
        fmt = "rosinality"
    else:
        sd = obj[network] if isinstance(obj.get(network), dict) else obj
        if "mapping.fc0.weight" not in sd:
            raise ConversionError(
                f"{path}: not a StyleGAN2 generator state dict (no mapping.fc0.weight)"
            )
        fmt = "state-dict-pt"
    cfg = pytorch_keys.infer_config(
        sd, conv_clamp=conv_clamp, mapping_lr_multiplier=mapping_lr_multiplier
    )
    return cfg, sd, fmt


def convert(
    src,
    dst,
    network="G_ema",
    overwrite=False,
    conv_clamp=None,
    mapping_lr_multiplier=0.01,
    log=print,
):
    """Converts `src` into the generator directory `dst`. Returns the Generator.

    With `overwrite`, a prior cached in the old `dst` is kept (see checkpoints.carry_over_prior);
    `log` gets the message saying so.

    Raises:
      ConversionError: unreadable, unsafe or unsupported input; FileExistsError for an existing dst.
    """
    src, dst = pathlib.Path(src), pathlib.Path(dst)
    checkpoints.check_destination(dst, overwrite)  # before the (possibly long) conversion
    cfg, sd, fmt = read_source(src, network, conv_clamp, mapping_lr_multiplier)
    generator = pytorch_keys.generator_from_state_dict(sd, cfg)
    source = {
        "file": src.name,
        "sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
        "format": fmt,
        "network": network,
    }
    checkpoints.save_generator(
        dst, generator, metadata={"source": source}, overwrite=overwrite, log=log
    )
    return generator


def main(argv):
    del argv
    if not _SRC.value or not _DST.value:
        sys.exit("error: --src and --dst are required")
    try:
        generator = convert(
            _SRC.value,
            _DST.value,
            _NETWORK.value,
            _OVERWRITE.value,
            _CONV_CLAMP.value,
            _MAPPING_LR.value,
        )
    except (ConversionError, FileExistsError) as e:
        sys.exit(f"error: {e}")
    cfg = generator.cfg
    print(
        f"wrote {_DST.value}: {cfg.img_resolution}px {cfg.architecture}, z {cfg.z_dim} / w {cfg.w_dim} / "
        f"c {cfg.c_dim}, {cfg.num_ws} ws, fingerprint {checkpoints.read_generator_config(_DST.value)[1]['fingerprint']}"
    )


if __name__ == "__main__":
    cli.run(main)
