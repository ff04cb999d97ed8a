"""The official PyTorch projector step, timed from a checkout of NVlabs/stylegan2-ada-pytorch that
the user provides (never part of this project), on the same weights as ours.

Its `training.networks.Generator` is built with the shape of a GeneratorConfig and a seed; its
`state_dict()` goes to our converter, so both sides run identical numbers. The timed step is the
official projector's (W+, MSE, Adam, `force_fp32`, const noise), at batch 1 like projector.py.
"""

import importlib
import pathlib
import statistics
import sys
import time

import numpy as np

from gaussjax.networks.config import GeneratorConfig


def official_generator(code_dir, cfg: GeneratorConfig, seed: int = 0):
    """(torch Generator in eval mode, its state dict as numpy arrays) of the official code.

    Raises:
      ValueError: no official checkout at `code_dir`, or it cannot be imported (one line).
    """
    torch = _import("torch", "torch (pip install -e '.[torch]')")
    root = pathlib.Path(code_dir).expanduser().resolve()
    if not (root / "training" / "networks.py").is_file():
        raise ValueError(
            f"{code_dir}: no training/networks.py (need a checkout of NVlabs/stylegan2-ada-pytorch)"
        )
    sys.path.insert(0, str(root))
    try:
        networks = _import("training.networks", f"the official code in {root}")
    finally:
        sys.path.remove(str(root))
    torch.manual_seed(seed)
    G = networks.Generator(
        z_dim=cfg.z_dim,
        c_dim=cfg.c_dim,
        w_dim=cfg.w_dim,
        img_resolution=cfg.img_resolution,
        img_channels=cfg.img_channels,
        mapping_kwargs={"num_layers": cfg.mapping_layers},
        synthesis_kwargs={
            "channel_base": cfg.channel_base,
            "channel_max": cfg.channel_max,
            "conv_clamp": cfg.conv_clamp,
            "architecture": cfg.architecture,
            "num_fp16_res": 0,
        },
    ).eval()
    state = {k: v.detach().cpu().numpy() for k, v in G.state_dict().items()}
    return G, state


def time_official_step(G, steps: int = 3, batch: int = 1) -> float:
    """Median seconds of one official W+ MSE Adam step (after one warm-up step)."""
    import torch

    ws = torch.zeros(batch, G.num_ws, G.w_dim, requires_grad=True)
    optimizer = torch.optim.Adam([ws], lr=0.1, betas=(0.9, 0.999))
    res, ch = G.img_resolution, G.img_channels
    target = torch.from_numpy(
        np.random.RandomState(0).uniform(-1, 1, (batch, ch, res, res)).astype(np.float32)
    )

    def step():
        image = G.synthesis(ws, noise_mode="const", force_fp32=True)
        loss = (image - target).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    durations = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations)


def _import(module: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"cannot import {what}: {e}") from e
