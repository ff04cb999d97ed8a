"""scikit-learn's handwritten digits as a training set, and a classifier that judges generated ones.

The 1,797 digits are 8x8 with values 0..16. For the generator they are upsampled (bicubic) to the
training resolution and written as gray RGB in [-1, 1] (ink bright on black). The judge works at
8x8: a logistic regression fitted on a seeded training split of the real digits; images are
brought back to 8x8 by averaging blocks. A generator passes (README, tests) when its samples get a
confident prediction (top-class probability >= 0.8) at least 90 % as often as the held-out real
digits after the same round trip, and every class is predicted within a factor of 2 of uniform.

scikit-learn is needed here only (the `train` extra); nothing else imports this module.
"""

import dataclasses

import numpy as np
from PIL import Image

NUM_CLASSES = 10
CONFIDENT = 0.8  # top-class probability that counts as a confident prediction
MIN_RATE_RATIO = 0.9  # generated confident rate / held-out real confident rate, at least
MAX_CLASS_FACTOR = 2.0  # every class frequency within [1/f, f] of uniform


def _sklearn_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError("the digits need scikit-learn: pip install -e '.[train]'") from e
    data = load_digits()
    return data.images.astype(np.float32), data.target.astype(np.int64)


def upsample(digits_8x8, resolution: int, channels: int = 3) -> np.ndarray:
    """[N, 8, 8] values 0..16 -> [N, R, R, channels] float32 in [-1, 1], bicubic."""
    out = []
    for d in digits_8x8:
        pil = Image.fromarray(np.asarray(d, np.float32) / 16.0 * 255.0, mode="F")
        out.append(np.asarray(pil.resize((resolution, resolution), Image.BICUBIC)))
    gray = np.clip(np.stack(out) / 127.5 - 1.0, -1.0, 1.0).astype(np.float32)
    return np.repeat(gray[..., None], channels, axis=-1)


def to_8x8(images) -> np.ndarray:
    """[N, R, R, C] in [-1, 1] -> [N, 64] features on the digits' 0..16 scale (channel mean, then
    the mean of every (R/8) x (R/8) block)."""
    images = np.asarray(images, np.float32)
    n, r = images.shape[:2]
    gray = images.mean(axis=-1)
    blocks = gray.reshape(n, 8, r // 8, 8, r // 8).mean(axis=(2, 4))
    return ((np.clip(blocks, -1, 1) + 1.0) * 8.0).reshape(n, 64)


def training_images(resolution: int, channels: int = 3) -> np.ndarray:
    """All 1,797 digits, [1797, R, R, channels] float32 in [-1, 1]."""
    digits, _ = _sklearn_digits()
    return upsample(digits, resolution, channels)


@dataclasses.dataclass
class DigitJudge:
    """The classifier and its held-out reference numbers (`fit`)."""

    classifier: object
    real_confident_rate: float  # held-out real digits after the round trip at `resolution`
    resolution: int

    @classmethod
    def fit(cls, resolution: int, train_fraction: float = 0.5, seed: int = 0) -> "DigitJudge":
        from sklearn.linear_model import LogisticRegression

        digits, labels = _sklearn_digits()
        order = np.random.default_rng(seed).permutation(len(digits))
        cut = int(train_fraction * len(digits))
        train, held_out = order[:cut], order[cut:]
        classifier = LogisticRegression(max_iter=5000).fit(
            digits[train].reshape(cut, 64), labels[train]
        )
        round_trip = to_8x8(upsample(digits[held_out], resolution))
        top = classifier.predict_proba(round_trip).max(axis=1)
        return cls(classifier, float(np.mean(top >= CONFIDENT)), resolution)

    def judge(self, images) -> dict:
        """Scores generated images [N, R, R, C] in [-1, 1]: the numbers README and tests check."""
        proba = self.classifier.predict_proba(to_8x8(images))
        counts = np.bincount(proba.argmax(axis=1), minlength=NUM_CLASSES)
        frequencies = counts / counts.sum()
        rate = float(np.mean(proba.max(axis=1) >= CONFIDENT))
        ratio = rate / self.real_confident_rate
        spread = float(frequencies.max() * NUM_CLASSES), float(frequencies.min() * NUM_CLASSES)
        return {
            "samples": int(len(proba)),
            "confident_rate": rate,
            "real_confident_rate": self.real_confident_rate,
            "rate_ratio": ratio,
            "class_counts": counts.tolist(),
            "max_class_vs_uniform": spread[0],
            "min_class_vs_uniform": spread[1],
            "passes": bool(
                ratio >= MIN_RATE_RATIO
                and spread[0] <= MAX_CLASS_FACTOR
                and spread[1] >= 1.0 / MAX_CLASS_FACTOR
            ),
        }
