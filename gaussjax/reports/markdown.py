"""report.md + results.json written from the same numbers, so the two always agree.

report = Report("Artifacts")
report.table("methods", rows, [("method", "method"), ("diversity", "per-pixel std")])
report.image("grid.png", "the most extreme samples")
report.write(outdir, {"settings": {...}})   # report.md, results.json (tables included)
"""

import json
import math
import pathlib

import numpy as np

from gaussjax.files.safe_io import write_bytes_atomic


def format_number(value) -> str:
    """Four significant digits ('-' for None or NaN); how every number appears in a report."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    return f"{float(value):.4g}"


def _cell(row: dict, key) -> str:
    """A table cell: row[key], or 'mean ± std' for a (mean_key, std_key) pair."""
    if isinstance(key, tuple):
        return f"{format_number(row.get(key[0]))} ± {format_number(row.get(key[1]))}"
    return format_number(row.get(key))


def to_jsonable(value):
    """numpy scalars/arrays -> Python numbers/lists; NaN/inf -> None (JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Report:
    """A markdown report built section by section; its tables are kept for results.json."""

    def __init__(self, title: str):
        self.lines = [f"# {title}", ""]
        self.tables: dict[str, list[dict]] = {}

    def text(self, paragraph: str) -> None:
        self.lines += [paragraph, ""]

    def heading(self, title: str) -> None:
        self.lines += [f"## {title}", ""]

    def image(self, filename: str, caption: str) -> None:
        """Embeds a PNG written next to report.md."""
        self.lines += [f"![{caption}]({filename})", "", f"*{caption}*", ""]

    def table(self, name: str, rows: list[dict], columns: list[tuple]) -> None:
        """A markdown table of `rows`; columns are (key or (mean_key, std_key), header)."""
        rows = [to_jsonable(r) for r in rows]
        self.tables[name] = rows
        self.lines.append("| " + " | ".join(header for _, header in columns) + " |")
        self.lines.append("|" + "---|" * len(columns))
        for row in rows:
            self.lines.append("| " + " | ".join(_cell(row, key) for key, _ in columns) + " |")
        self.lines.append("")

    def markdown(self) -> str:
        return "\n".join(self.lines).rstrip() + "\n"

    def write(self, outdir: pathlib.Path, data: dict) -> None:
        """Writes outdir/report.md and outdir/results.json ({"tables": ..., **data}), atomically."""
        write_bytes_atomic(outdir / "report.md", self.markdown().encode())
        payload = json.dumps(to_jsonable({"tables": self.tables, **data}), indent=2) + "\n"
        write_bytes_atomic(outdir / "results.json", payload.encode())
