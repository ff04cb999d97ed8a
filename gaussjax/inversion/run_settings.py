"""run.json: what determines a run's results, so that a resumed run never mixes two experiments.

settings = run_settings(config, fingerprint, prior_cov, seed=0, images="photos/*.png")
check_run_settings(outdir, settings, has_results=bool(finished))   # before any work
record_run_settings(outdir, settings)                              # when work starts
"""

import json
import pathlib

import jax

from gaussjax.analysis.prior import covariance_id
from gaussjax.files.safe_io import read_json, write_bytes_atomic
from gaussjax.inversion.config import InversionConfig

RUN_FILE = "run.json"
# Settings that change how the work is cut, not what is computed.
NOT_RECORDED = ("steps_per_dispatch", "microbatch")


def run_settings(
    config,
    fingerprint: str,
    prior_cov,
    *,
    seed: int,
    images: str | None,
    num_generated: int,
    encoder: str | None = None,
    operator: dict | None = None,
) -> dict:
    """The flat settings of `config` (an InversionConfig) but NOT_RECORDED, the generator's
    fingerprint, a hash of the prior's covariance [D, D], what the targets are, the encoder's
    fingerprint (None: each space's own start) and the task's resolved operator
    (tasks.describe: which compressed-sensing operator `auto` chose, and M)."""
    settings = {k: v for k, v in config.to_dict().items() if k not in NOT_RECORDED}
    return {
        **settings,
        "generator": fingerprint,
        "prior": covariance_id(prior_cov),
        "seed": seed,
        "images": images,
        "num_generated": None if images else num_generated,
        "encoder": encoder,
        "operator": operator,
    }


def check_run_settings(outdir: pathlib.Path, settings: dict, has_results: bool) -> None:
    """Refuses an output folder holding results of a run with other settings (finished images
    would otherwise silently mix two experiments). Reads only: `record_run_settings` writes.

    A folder without finished results (`has_results` False, e.g. left by a run that failed or was
    stopped early) is never refused: its run.json is replaced when work starts.
    """
    path = outdir / RUN_FILE
    if not has_results or not path.exists():
        return
    previous = read_json(path)
    added_since = InversionConfig().to_dict()  # a setting an older run.json lacks had its default
    changed = sorted(
        k
        for k in set(previous) | set(settings)
        if previous.get(k, added_since.get(k)) != settings.get(k)
    )
    if changed:
        raise ValueError(
            f"{outdir} holds results of a run with other settings ({', '.join(changed)}); "
            "use a new output folder or the same settings"
        )


def record_run_settings(outdir: pathlib.Path, settings: dict) -> None:
    """Creates OUTDIR (every process) and writes run.json (process 0): called when work starts,
    after every check."""
    outdir.mkdir(parents=True, exist_ok=True)
    if jax.process_index() == 0:
        text = json.dumps(settings, indent=2, sort_keys=True) + "\n"
        write_bytes_atomic(outdir / RUN_FILE, text.encode())
