"""The front door stays true: README's length, links that resolve, commands that name real
launchers and flags and only read files that exist, docs/cli.md current, and README's quick
commands running verbatim."""

import os
import pathlib
import re
import subprocess

import pytest
from absl import flags

from experiments import cli_reference
from tests.fixtures_path import stylegan2_fixture_dir

REPO = pathlib.Path(__file__).resolve().parents[1]
CLI_DOC = REPO / "docs" / "cli.md"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Flags every launcher takes: absl's own and JAX's (jax.config.config_with_absl).
COMMON_FLAG = re.compile(r"(helpfull|helpshort|verbosity|flagfile|jax_\w+|xla_\w+)$")
# Flags naming files a command reads, and those naming what it writes.
INPUT_FLAGS = ("src", "images", "generator", "prior", "result", "latents", "interpolate_to")
INPUT_FLAGS += ("image", "vgg", "lpips_lin", "inpaint_mask", "ood_images", "official_code")
OUTPUT_FLAGS = ("outdir", "dst", "out")
# Values of input flags that name no file.
NOT_A_PATH = {"none", "digits"}


def code_blocks(path: pathlib.Path) -> list[tuple[str, str]]:
    """(the line before the fence, the block's text) of every fenced block of a markdown file."""
    return re.findall(r"([^\n]*)\n```[a-z]*\n(.*?)```", path.read_text(), flags=re.S)


def commands(text: str) -> list[tuple[str, str]]:
    """(module, arguments) of every `python -m MODULE ...` in a block, continuation lines joined
    and README's results folder `$out` read as its default, `out`."""
    joined = re.sub(r"\\\n\s*", " ", text).replace("$out", "out")
    return re.findall(r"python -m ([\w.]+)([^\n;&#]*)", joined)


def launcher_commands(path: pathlib.Path) -> list[tuple[str, str]]:
    """The launcher commands of one document, in order (not pip, pytest or the generator)."""
    return [
        (module, args)
        for _, block in code_blocks(path)
        for module, args in commands(block)
        if module.split(".")[0] in cli_reference.LAUNCHER_DIRS
        and module != "experiments.cli_reference"
    ]


def flag_values(args: str) -> list[tuple[str, str]]:
    """(name, value) of every `--name[=value]` in a command's arguments."""
    return [(name, value.strip("'\"")) for name, value in re.findall(r"--(\w+)=?(\S*)", args)]


def documented_flags() -> dict[str, set[str]]:
    """{launcher: its flag names} from docs/cli.md (kept current by test_cli_reference_is_current)."""
    launchers, current = {}, None
    for line in CLI_DOC.read_text().splitlines():
        if heading := re.match(r"## `python -m ([\w.]+)`", line):
            current = launchers.setdefault(heading.group(1), set())
        elif current is not None and (row := re.match(r"\| `--(\w+)` \|", line)):
            current.add(row.group(1))
    return launchers


def test_readme_is_short_and_states_both_test_tiers():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert 'python -m pytest -q -n 2 -m "not slow"' in text and "python -m pytest -q -n 2 " in text


def test_every_relative_link_resolves():
    for path in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if not re.match(r"[a-z]+://", target):
                assert (path.parent / target).exists(), f"{path.name}: broken link {target}"


def test_readme_links_every_doc():
    readme = (REPO / "README.md").read_text()
    for path in DOCS[1:]:
        assert f"](docs/{path.name})" in readme, f"README does not link docs/{path.name}"


def test_every_command_names_a_launcher_and_its_flags():
    launchers = documented_flags()
    assert "experiments.invert" in launchers and "steps" in launchers["experiments.invert"]
    seen = 0
    for path in DOCS:
        for module, args in launcher_commands(path):
            assert module in launchers, f"{path.name}: no launcher {module}"
            for flag, _ in flag_values(args):
                assert flag in launchers[module] or COMMON_FLAG.match(flag), (
                    f"{path.name}: {module} has no flag --{flag}"
                )
            seen += 1
    assert seen > 30  # the docs are full of commands: a parsing slip would show as none


def test_every_command_runs_on_a_fresh_clone():
    """No optional `[--flag]` syntax (docs/cli.md's synopses aside), and every file a command reads
    exists in the repository or ../shared, or an earlier command of the same document writes it."""
    for path in DOCS:
        if path == CLI_DOC:
            continue
        written = []
        for module, args in launcher_commands(path):
            where = f"{path.name}: python -m {module}{args}"
            assert "[" not in args, f"{where}: optional parts do not run verbatim"
            for flag, value in flag_values(args):
                made = any(value == w or value.startswith(w + "/") for w in written)
                if flag in INPUT_FLAGS and value not in NOT_A_PATH and not made:
                    assert (REPO / value).exists(), f"{where}: nothing makes {value}"
            written += [value for flag, value in flag_values(args) if flag in OUTPUT_FLAGS]


def test_cli_reference_is_current():
    """docs/cli.md equals what the launchers' flags generate now (`--check` does the same), and
    generating it leaves this process's flags as they were."""
    flags_before = set(flags.FLAGS)
    assert cli_reference.reference() == CLI_DOC.read_text(), (
        "docs/cli.md is stale: python -m experiments.cli_reference --out=docs/cli.md"
    )
    assert set(flags.FLAGS) == flags_before


@pytest.mark.slow
def test_quick_readme_commands_run_verbatim(tmp_path):
    """Blocks marked `<!-- quick -->` run as written, with their results folder OUT temporary."""
    stylegan2_fixture_dir()  # the conversion block reads ../shared/fixtures
    blocks = [block for before, block in code_blocks(REPO / "README.md") if "quick" in before]
    assert len(blocks) == 2
    for block in blocks:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=REPO,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO), "OUT": str(tmp_path)},
        )
        assert done.returncode == 0, done.stderr[-3000:]
    for folder in ("digits_inverted", "skip32_inverted"):
        assert (tmp_path / folder / "summary.jsonl").exists()
