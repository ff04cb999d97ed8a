"""Locates the shared reference fixtures (kept outside the repository)."""

import os
import pathlib

import pytest

_DEFAULT_ROOT = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


def stylegan2_fixture_dir() -> pathlib.Path:
    """Returns the StyleGAN2 fixture directory, or skips/fails the calling test.

    The root is ``$GAUSSJAX_FIXTURES`` if set, else ``../shared/fixtures`` relative
    to the repository root.

    Returns:
        The ``stylegan2`` fixture directory.

    Raises:
        pytest.fail.Exception: if missing and ``CI=true`` (fixtures must exist in CI).
        pytest.skip.Exception: if missing elsewhere.
    """
    root = pathlib.Path(os.environ.get("GAUSSJAX_FIXTURES", _DEFAULT_ROOT))
    directory = root / "stylegan2"
    if not directory.is_dir():
        message = (
            f"StyleGAN2 reference fixtures not found at {directory} "
            "(set GAUSSJAX_FIXTURES to the shared fixtures root)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return directory
