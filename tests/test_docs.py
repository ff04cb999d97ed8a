"""The front door stays true: README's length, links that resolve, commands that name real
launchers and flags, docs/cli.md current, and README's quick commands running verbatim."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Flags every launcher takes: absl's own and JAX's (jax.config.config_with_absl).
COMMON_FLAG = re.compile(r"(helpfull|helpshort|verbosity|flagfile|jax_\w+|xla_\w+)$")


def code_blocks(path: pathlib.Path) -> list[tuple[str, str]]:
    """(the line before the fence, the block's text) of every fenced block of a markdown file."""
    return re.findall(r"([^\n]*)\n```[a-z]*\n(.*?)```", path.read_text(), flags=re.S)


def commands(text: str) -> list[tuple[str, str]]:
    """(module, arguments) of every `python -m MODULE ...` in a block, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return re.findall(r"python -m ([\w.]+)([^\n;&]*)", joined)


def documented_flags() -> dict[str, set[str]]:
    """{launcher: its flag names} from docs/cli.md (kept current by test_cli_reference_is_current)."""
    launchers, current = {}, None
    for line in (REPO / "docs" / "cli.md").read_text().splitlines():
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


def test_every_command_names_a_launcher_and_its_flags():
    launchers = documented_flags()
    assert "experiments.invert" in launchers and "steps" in launchers["experiments.invert"]
    seen = 0
    for path in DOCS:
        for _, block in code_blocks(path):
            for module, args in commands(block):
                if module in ("pytest", "pip", "venv", "experiments.cli_reference"):
                    continue
                assert module in launchers, f"{path.name}: no launcher {module}"
                for flag in re.findall(r"--(\w+)", args):
                    assert flag in launchers[module] or COMMON_FLAG.match(flag), (
                        f"{path.name}: {module} has no flag --{flag}"
                    )
                seen += 1
    assert seen > 30  # the docs are full of commands: a parsing slip would show as none


def test_cli_reference_is_current():
    """docs/cli.md equals what the launchers' flags generate now (a fresh process: importing every
    launcher defines flags that would clash with those of tests that import launchers)."""
    check = subprocess.run(
        [sys.executable, "-m", "experiments.cli_reference", "--cli_doc_check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert check.returncode == 0, check.stderr[-2000:]


@pytest.mark.slow
def test_quick_readme_commands_run_verbatim(tmp_path):
    """Blocks marked `<!-- quick -->` run as written, with `out/` moved under a temporary folder."""
    blocks = [block for before, block in code_blocks(REPO / "README.md") if "quick" in before]
    assert blocks
    for block in blocks:
        script = block.replace("out/", f"{tmp_path}/out/")
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=REPO,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "skip32_inverted" / "summary.jsonl").exists()
