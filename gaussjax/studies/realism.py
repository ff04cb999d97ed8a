"""Realism judges of rendered images, a stand-in for the paper's user study.

Two judges, each optional: the generator's realism judge (a discriminator trained against it,
`training.judge`; an image passes at the mark 90 % of held-out real images reach) and, for a
digits generator, the digit classifier's confident fraction (`training.digits.DigitJudge`).
`judge_images` gives both fractions for a set of images; `ratio` compares two sets.
"""

import dataclasses

import numpy as np

from gaussjax.training import digits
from gaussjax.training import judge as judge_lib

BUILTIN = judge_lib.BUILTIN
NONE = "none"
# Report columns (gaussjax.reports.markdown.Report.table) of `judge_images` numbers.
COLUMNS = [
    ("realistic", "judged realistic (D)"),
    ("confident_digit", "confident digit"),
]


@dataclasses.dataclass(frozen=True)
class Judges:
    """discriminator: a training.judge.Judge or None; digit: a DigitJudge or None."""

    discriminator: object = None
    digit: object = None

    def describe(self) -> str:
        parts = []
        if self.discriminator is not None:
            rate = self.discriminator.record["training"]["real_pass_rate"]
            parts.append(
                f"a discriminator trained against the frozen generator (pass mark: the score "
                f"{rate:.0%} of held-out real images reach)"
            )
        if self.digit is not None:
            parts.append(
                f"the digit classifier (top-class probability >= {digits.CONFIDENT}; held-out "
                f"real digits: {self.digit.real_confident_rate:.2f})"
            )
        return " and ".join(parts) if parts else "no judge"


def load_judges(judge: str | None, fingerprint: str, resolution: int, builtin: bool) -> Judges:
    """The judges for a study's generator. judge: a judge directory, `builtin`, `none`, or None
    (the built-in generator's own judge for the built-in generator, none otherwise). The digit
    classifier joins for the built-in generator.

    Raises:
      ValueError: the judge was trained against another generator. FileNotFoundError: no judge.
    """
    name = judge if judge is not None else (BUILTIN if builtin else NONE)
    discriminator = None
    if name != NONE:
        discriminator = judge_lib.load_judge(name)
        discriminator.check_generator(fingerprint)
    digit = digits.DigitJudge.fit(resolution) if builtin else None
    return Judges(discriminator, digit)


def judge_images(judges: Judges, images) -> dict:
    """Fractions of images [N, R, R, C] in [-1, 1] each judge passes (NaN without that judge)."""
    out = {"realistic": float("nan"), "confident_digit": float("nan")}
    if judges.discriminator is not None:
        out["realistic"] = float(np.mean(judges.discriminator.realistic(images)))
    if judges.digit is not None:
        out["confident_digit"] = float(judges.digit.judge(images)["confident_rate"])
    return out


def ratio(better: float, worse: float) -> float:
    """better / worse, inf when only `worse` is 0, NaN when both are."""
    if worse > 0:
        return better / worse
    return float("inf") if better > 0 else float("nan")
