"""Imports follow the layers: the library never reaches into the tools built on it, and inside
gaussjax no package imports one of a higher layer. Every import is read from the source (ast),
including imports inside functions, so nothing has to be imported to check it.

The failure lists each violation as `module -> imported`.
"""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
TOP_PACKAGES = ("gaussjax", "converters", "experiments")

TOOLS_ABOVE_THE_LIBRARY = {
    "gaussjax": ("converters", "experiments"),  # the library never imports the tools
    "converters": ("experiments",),  # the conversion tool never imports the launchers
}
"""Top-level package -> the top-level packages it must never import."""

GAUSSJAX_LAYERS = (
    ("settings",),  # documented config fields and the absl flags generated from them
    ("interrupts",),  # Ctrl-C held until a loop's safe point (any loop may check it)
    ("networks",),  # the StyleGAN2 generator and LPIPS modules and their numerics; no file I/O
    ("files",),  # every file format: generator directories, weights, images, results
    ("analysis", "editing", "reports"),  # priors and PCA, latent edits, tables and plots
    ("inversion",),  # the inversion engine, its latent spaces and the run pipeline
    ("training", "perf"),  # GAN training (shares the inversion's sharding), timings
    ("encoding",),  # the image -> W+ encoder, its self-supervised training and files
    ("studies",),  # the paper's experiments, built on inversion and editing
    ("runtime",),  # process setup: XLA flags, the compilation cache
    ("cli",),  # what every launcher shares
    ("gaussjax",),  # the public API re-exported by gaussjax/__init__.py
)
"""The layers inside gaussjax, lowest first; a package (or top-level module) of gaussjax may
import its own modules and those of lower layers only, not those of its own layer or above."""

LAYER_OF = {package: rank for rank, layer in enumerate(GAUSSJAX_LAYERS) for package in layer}


def module_name(path: pathlib.Path, root: pathlib.Path = REPO) -> str:
    """'gaussjax/files/safe_io.py' -> 'gaussjax.files.safe_io' (a package is its __init__)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, pathlib.Path]:
    """Module name -> source file, for every module of the checked packages."""
    return {module_name(path): path for top in TOP_PACKAGES for path in (REPO / top).rglob("*.py")}


def _absolute(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of a relative import (`from ..x import y` inside `module`)."""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _literal_import_module(node: ast.Call) -> str | None:
    """The name in `importlib.import_module("name")` / `__import__("name")` when it is a literal."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name in ("import_module", "__import__") and node.args:
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
    return None


def imported_modules(source: str, module: str, known: set[str], is_package=False) -> set[str]:
    """Every project module `source` imports, anywhere in it (functions included).

    `from a import b` counts as importing `a.b` when that is a known module, else `a`.
    """
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = _absolute(module, is_package, node.level, node.module)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        elif isinstance(node, ast.Call) and (name := _literal_import_module(node)):
            found.add(name)
    return {name for name in found if name.split(".")[0] in TOP_PACKAGES}


def _gaussjax_package(module: str) -> str:
    """'gaussjax.files.safe_io' -> 'files', 'gaussjax.cli' -> 'cli', 'gaussjax' -> 'gaussjax'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "gaussjax"


def violation(importer: str, imported: str) -> bool:
    """True when `importer` may not import `imported` (see the two tables above)."""
    top, imported_top = importer.split(".")[0], imported.split(".")[0]
    if imported_top in TOOLS_ABOVE_THE_LIBRARY.get(top, ()):
        return True
    if top != "gaussjax" or imported_top != "gaussjax":
        return False
    package, imported_package = _gaussjax_package(importer), _gaussjax_package(imported)
    if package == imported_package:
        return False
    return LAYER_OF[imported_package] >= LAYER_OF[package]


def violations(graph: dict[str, set[str]]) -> list[str]:
    """'module -> imported' for every forbidden import of `graph` (module -> imported modules)."""
    return sorted(
        f"{module} -> {imported}"
        for module, imports in graph.items()
        for imported in imports
        if violation(module, imported)
    )


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, for every module of the checked packages."""
    modules = all_modules()
    known = set(modules)
    return {
        name: imported_modules(path.read_text(), name, known, path.name == "__init__.py")
        for name, path in modules.items()
    }


def test_every_gaussjax_package_has_a_layer():
    packages = {_gaussjax_package(name) for name in all_modules() if name.startswith("gaussjax")}
    assert packages - set(LAYER_OF) == set(), "add new packages to GAUSSJAX_LAYERS"
    assert set(LAYER_OF) - packages == set(), "GAUSSJAX_LAYERS names a package that is gone"


def test_imports_follow_the_layers():
    graph = import_graph()
    assert {"gaussjax.networks.stylegan2", "converters.convert", "experiments.invert"} <= set(graph)
    found = violations(graph)
    assert not found, "imports against the layers:\n" + "\n".join(found)


KNOWN = {"gaussjax.networks.ops", "gaussjax.files.checkpoints", "gaussjax.editing"}


@pytest.mark.parametrize(
    "module, source, expected",
    [
        (  # an upward import hidden inside a function
            "gaussjax.networks.builtin",
            "def f():\n    from gaussjax.files import checkpoints\n",
            ["gaussjax.networks.builtin -> gaussjax.files.checkpoints"],
        ),
        (  # the library reaching into the conversion tool
            "gaussjax.inversion.pipeline",
            "import numpy\nfrom converters import vgg\n",
            ["gaussjax.inversion.pipeline -> converters"],
        ),
        (  # a converter importing a launcher, through importlib
            "converters.convert",
            "import importlib\nimportlib.import_module('experiments.invert')\n",
            ["converters.convert -> experiments.invert"],
        ),
        (  # a package of the same layer counts as higher; relative imports are resolved
            "gaussjax.analysis.prior",
            "from ..editing import x\nfrom . import pca\nfrom gaussjax.networks import ops\n",
            ["gaussjax.analysis.prior -> gaussjax.editing"],
        ),
        (  # the public facade `gaussjax` is the top layer
            "gaussjax.files.results",
            "from gaussjax import load_generator\nfrom gaussjax.networks import ops\n",
            ["gaussjax.files.results -> gaussjax"],
        ),
        (  # allowed: downward, within a package, and anything from the launchers
            "experiments.invert",
            "from converters import convert\nfrom gaussjax import cli\n",
            [],
        ),
    ],
)
def test_checker_catches_planted_violations(module, source, expected):
    graph = {module: imported_modules(source, module, KNOWN)}
    assert violations(graph) == expected
