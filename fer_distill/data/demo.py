"""A synthetic FER+ look-alike, so the whole package runs on a machine without the real data.

`write_demo_raw(dir, regime=...)` draws 48x48 grey faces and writes them in FER+'s own raw
formats (with 10 crowd votes per image), so the demo enters through the code path real FER+
takes (`fer_distill.data.ferplus`); `prepare_demo(output)` does both steps. Regimes
(`REGIMES`): "classic", and the known-answer sets "privileged" and "control" of issue 9.
One seed fixes every byte, on every machine.
Why (what the faces show, the regimes, determinism): docs/DESIGN.md, "Prepared data" and
"Showing that distillation transfers".
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from fer_distill import atomic
from fer_distill.data import ferplus
from fer_distill.data.classes import CLASS_NAMES

SIZE = 48
_SUPER = 2  # drawn at 96x96, averaged down: cheap anti-aliasing with exact arithmetic
_G = SIZE * _SUPER

DEFAULT_SIZES = {"train": 3000, "validation": 500, "test": 500}
REGIMES = ("classic", "privileged", "control")
LOWER_CUE = 0.5  # how much of the brows' movement the privileged regime's cheek folds show
_VOTES_FILE = Path(__file__).with_name("ferplus_votes.npz")
NUM_IDENTITIES = 200

# FER2013 has 7 emotion codes (0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise,
# 6 Neutral) and no contempt; fer2013.csv's "emotion" column is ignored by FER+ (the votes
# decide), so contempt is written as 6 only to keep the column in range.
_FER2013_CODE = {"neutral": 6, "happiness": 3, "surprise": 5, "sadness": 4, "anger": 0,
                 "disgust": 1, "fear": 2, "contempt": 6}
_USAGE = {"train": "Training", "validation": "PublicTest", "test": "PrivateTest"}
_FOLDER = {"train": "FER2013Train", "validation": "FER2013Valid", "test": "FER2013Test"}

# Roughly FER+'s imbalance, flattened enough that every class is learnable in a few thousand.
CLASS_PROPORTIONS = {"neutral": 0.22, "happiness": 0.18, "surprise": 0.11, "sadness": 0.11,
                     "anger": 0.11, "disgust": 0.08, "fear": 0.10, "contempt": 0.09}

# Expression at full intensity, in 96-grid pixels. brow: raise (up +); inner: inner brow end
# (up +, so + is /\ sadness/fear, - is \/ anger); eye: eye opening factor; curve: mouth corners
# up (+) or down (-); open: mouth opening height; width: mouth width factor; asym: right corner
# raised (contempt). Pairs have nearly the same mouth: (neutral, anger), (sadness, disgust),
# (surprise, fear).
_EXPRESSION_FIELDS = ("brow", "inner", "eye", "curve", "open", "width", "asym")
EXPRESSIONS = {name: dict(zip(_EXPRESSION_FIELDS, values)) for name, values in {
    #            brow  inner   eye  curve  open  width  asym
    "neutral":   (0.0,  0.0, 1.00,  0.0,  0.0, 1.00, 0.0),
    "happiness": (0.5,  0.0, 0.80,  7.0,  2.5, 1.20, 0.0),
    "surprise":  (5.0,  0.0, 1.40,  0.0,  9.0, 0.72, 0.0),
    "sadness":   (1.0,  4.0, 0.85, -5.0,  0.0, 0.95, 0.0),
    "anger":     (-3.0, -4.0, 0.75, 0.0,  0.0, 0.88, 0.0),
    "disgust":   (-2.0, -1.0, 0.65, -4.5, 0.0, 0.95, 2.0),
    "fear":      (4.0,  4.0, 1.40,  0.0,  7.5, 0.90, 0.0),
    "contempt":  (0.0,  0.0, 0.90,  1.0,  0.0, 1.00, 6.0),
}.items()}


def _identities(rng: np.random.Generator, n: int) -> list[dict[str, float]]:
    """Face geometry and appearance that stay fixed for one identity."""
    out = []
    for _ in range(n):
        out.append(dict(
            cx=_G / 2 + rng.uniform(-3.0, 3.0), cy=_G / 2 + 2 + rng.uniform(-2.0, 2.0),
            rx=rng.uniform(33.0, 39.0), ry=rng.uniform(41.0, 46.0),
            skin=rng.uniform(105.0, 205.0), background=rng.uniform(15.0, 235.0),
            hair=rng.uniform(10.0, 90.0), hairline=rng.uniform(0.55, 0.8),
            eye_dx=rng.uniform(0.36, 0.44), eye_y=rng.uniform(-0.27, -0.20),
            eye_w=rng.uniform(5.0, 6.5), eye_h=rng.uniform(2.6, 3.6),
            brow_gap=rng.uniform(6.0, 8.5), brow_t=rng.uniform(1.6, 2.6),
            brow_rest=rng.uniform(-2.5, 2.5), eye_rest=rng.uniform(0.8, 1.2),
            curve_rest=rng.uniform(-1.5, 1.5),
            mouth_y=rng.uniform(0.42, 0.52), mouth_w=rng.uniform(0.34, 0.44),
            light=rng.uniform(-35.0, 35.0),
        ))
    return out


_Y, _X = np.mgrid[0:_G, 0:_G].astype(np.float64) + 0.5


def _segment_distance(x0, y0, x1, y1):
    """Distance of every grid point to the segment (x0, y0)-(x1, y1)."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((_X - x0) * dx + (_Y - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.sqrt((_X - x0 - t * dx) ** 2 + (_Y - y0 - t * dy) ** 2)


def _render(face: dict[str, float], expr: dict[str, float], t: float,
            rng: np.random.Generator, noise: float, lower_cue: float = 0.0) -> np.ndarray:
    """One 48x48 uint8 face: identity `face` showing expression `expr` at intensity t.

    `lower_cue` > 0 adds cheek folds below the nose that follow the brows at that fraction of
    their movement (the privileged regime); 0 draws none (and draws no random numbers for them).
    """
    cx, cy, rx, ry = face["cx"], face["cy"], face["rx"], face["ry"]
    img = face["background"] + face["light"] * 0.5 * (_X - _G / 2) / (_G / 2)
    u, v = (_X - cx) / rx, (_Y - cy) / ry
    head = u * u + v * v <= 1.0
    hair = (u * u / 1.12 + v * v / 1.12 <= 1.0) & (v < -face["hairline"])
    img = np.where(hair, face["hair"], img)
    skin = face["skin"] + face["light"] * u
    skin_region = head & ~(v < -face["hairline"] - 0.05 * (1 - u * u))
    img = np.where(skin_region, skin, img)

    # eyes and brows (upper half)
    # per-sample jitter on top of the identity's resting face: expressions overlap a little
    open_ = (1.0 + t * (expr["eye"] - 1.0)) * face["eye_rest"] * rng.uniform(0.9, 1.1)
    brow_up = t * expr["brow"] + face["brow_rest"] + rng.uniform(-1.5, 1.5)
    inner_up = t * expr["inner"] + rng.uniform(-1.0, 1.0)
    ey = cy + face["eye_y"] * ry
    for side in (-1.0, 1.0):
        ex = cx + side * face["eye_dx"] * rx
        ew, eh = face["eye_w"], face["eye_h"] * open_
        eye = ((_X - ex) / ew) ** 2 + ((_Y - ey) / eh) ** 2 <= 1.0
        img = np.where(eye, np.minimum(skin + 60.0, 250.0), img)
        iris = ((_X - ex) ** 2 + (_Y - ey) ** 2 <= min(eh, 2.6) ** 2) & eye
        img = np.where(iris, 25.0, img)
        by = ey - face["brow_gap"] - brow_up
        inner_x, outer_x = cx + side * 3.5, ex + side * (ew + 2.0)
        brow = _segment_distance(inner_x, by - inner_up, outer_x, by + 0.3 * inner_up) \
            <= face["brow_t"]
        img = np.where(brow, skin - 85.0, img)

    # nose (neutral for every class)
    ny = cy + 0.18 * ry
    for side in (-1.0, 1.0):
        nostril = (_X - (cx + side * 3.0)) ** 2 + (_Y - ny) ** 2 <= 2.0 ** 2
        img = np.where(nostril, skin - 55.0, img)

    # mouth (lower half)
    mw = face["mouth_w"] * rx * (1.0 + t * (expr["width"] - 1.0))
    my = cy + face["mouth_y"] * ry
    if lower_cue > 0.0:  # cheek folds: a weak, noisy trace of the brows in the lower half
        tilt = lower_cue * 1.5 * inner_up + rng.uniform(-1.0, 1.0)
        depth = 40.0 + lower_cue * 10.0 * brow_up + rng.uniform(-8.0, 8.0)
        for side in (-1.0, 1.0):
            fold = _segment_distance(cx + side * 6.0, ny - 2.0 - tilt,
                                     cx + side * (mw + 3.0), my + 2.0 + tilt) <= 1.2
            img = np.where(fold, skin - depth, img)
    m = (_X - cx) / mw
    inside = np.abs(m) <= 1.0
    curve = t * expr["curve"] + face["curve_rest"]
    lip_y = my - curve * (m * m - 0.35) - t * expr["asym"] * np.maximum(m, 0.0) ** 2
    opening = t * expr["open"]
    if opening > 0.5:
        hole = (m * m / 0.7 + ((_Y - lip_y) / (opening / 2 + 0.5)) ** 2 <= 1.0)
        img = np.where(hole, 20.0, img)
        lips = inside & (np.abs(np.abs(_Y - lip_y) - opening / 2 - 1.2) <= 1.3) & ~hole
    else:
        lips = inside & (np.abs(_Y - lip_y) <= 1.8)
    img = np.where(lips, skin - 60.0, img)

    blocks = img.reshape(SIZE, _SUPER, SIZE, _SUPER)
    # the 2x2 average in a fixed order (not np.mean, whose summation order may follow the CPU)
    small = (blocks[:, 0, :, 0] + blocks[:, 0, :, 1] + blocks[:, 1, :, 0]
             + blocks[:, 1, :, 1]) * 0.25
    small = small + (rng.random((SIZE, SIZE)) - 0.5) * (2.0 * noise)
    return np.clip(np.floor(small + 0.5), 0, 255).astype(np.uint8)


def _votes(label: int, rng: np.random.Generator) -> np.ndarray:
    """10 plausible crowd votes for a face drawn as class `label` (FER+ column order + unknown, NF).

    Most images get a clear majority; some are ambiguous (split votes, or an unknown/NF
    majority) and are dropped by FER+'s majority rule: about 5% here, 12% of real FER+.
    """
    votes = np.zeros(10, dtype=np.int64)
    agreement = rng.uniform(0.45, 0.97)
    partner = {0: 4, 4: 0, 3: 5, 5: 3, 2: 6, 6: 2, 1: 7, 7: 1}[label]  # the look-alike class
    for _ in range(10):
        r = rng.random()
        if r < agreement:
            votes[label] += 1
        elif r < agreement + (1 - agreement) * 0.5:
            votes[partner] += 1
        elif r < agreement + (1 - agreement) * 0.85:
            votes[rng.integers(0, 8)] += 1
        else:
            votes[8 + rng.integers(0, 2)] += 1  # unknown or NF
    return votes


def ferplus_votes() -> dict[str, np.ndarray]:
    """The real FER+ crowd votes, (N, 10) uint8 per split (docs/DESIGN.md, "Known answers")."""
    with np.load(_VOTES_FILE) as data:
        return {split: data[split] for split in ("train", "validation", "test")}


def blend(votes: np.ndarray) -> dict[str, float]:
    """The expression shown for a vote vector: EXPRESSIONS weighted by the 8 emotions' votes
    (unknown and NF carry no expression; no emotion vote at all shows neutral)."""
    weights = np.asarray(votes[:len(CLASS_NAMES)], dtype=np.float64)
    if weights.sum() <= 0:
        weights = np.eye(len(CLASS_NAMES))[0]
    weights = weights / weights.sum()
    return {field: float(sum(w * EXPRESSIONS[name][field]
                             for w, name in zip(weights, CLASS_NAMES)))
            for field in _EXPRESSION_FIELDS}


def generate(sizes: dict[str, int] | None = None, seed: int = 0,
             num_identities: int = NUM_IDENTITIES,
             regime: str = "classic") -> dict[str, dict[str, np.ndarray]]:
    """Draws the demo set: per split, `images` uint8 (N, 48, 48), drawn `classes`, `votes` (N, 10).

    `regime`: "classic", "privileged" or "control" (docs/DESIGN.md). Identities are shared by
    all splits (FER2013's splits share no people, but a demo this small needs the test faces to
    look like the training faces to be learnable at all).
    """
    if regime not in REGIMES:
        raise ValueError(f"demo regime must be one of {REGIMES}, got {regime!r}")
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    for split in ("train", "validation", "test"):
        if int(sizes.get(split, 0)) <= 0:
            raise ValueError(f"demo size of split {split!r} must be positive, got "
                             f"{sizes.get(split)}")
    rng = np.random.default_rng(int(seed))
    faces = _identities(rng, int(num_identities))
    names = list(CLASS_NAMES)
    p = np.array([CLASS_PROPORTIONS[c] for c in names])
    p = p / p.sum()
    out = {}
    if regime != "classic":
        pools = ferplus_votes()
        cue = LOWER_CUE if regime == "privileged" else 0.0
    for split in ("train", "validation", "test"):
        n = int(sizes[split])
        if regime != "classic":
            votes = pools[split][rng.integers(0, len(pools[split]), size=n)].astype(np.int64)
            images = np.empty((n, SIZE, SIZE), dtype=np.uint8)
            for i in range(n):
                face = faces[rng.integers(0, len(faces))]
                intensity = rng.uniform(0.55, 1.0)
                noise = rng.uniform(4.0, 14.0)
                images[i] = _render(face, blend(votes[i]), intensity, rng, noise, cue)
            classes = np.argmax(votes[:, :len(names)], axis=1)
            out[split] = {"images": images, "classes": classes.astype(np.int64), "votes": votes}
            continue
        classes = rng.choice(len(names), size=n, p=p)
        images = np.empty((n, SIZE, SIZE), dtype=np.uint8)
        votes = np.empty((n, 10), dtype=np.int64)
        for i, c in enumerate(classes):
            face = faces[rng.integers(0, len(faces))]
            intensity = rng.uniform(0.55, 1.0)
            noise = rng.uniform(4.0, 14.0)
            images[i] = _render(face, EXPRESSIONS[names[c]], intensity, rng, noise)
            votes[i] = _votes(int(c), rng)
        out[split] = {"images": images, "classes": classes.astype(np.int64), "votes": votes}
    return out


def write_demo_raw(raw_dir: str | os.PathLike, sizes: dict[str, int] | None = None,
                   seed: int = 0, num_identities: int = NUM_IDENTITIES,
                   regime: str = "classic") -> dict[str, Any]:
    """Writes the demo set in FER+'s raw formats into `raw_dir`; returns what it wrote.

    Files: `fer2013.csv` (emotion,pixels,Usage), `fer2013new.csv` (Usage,Image name, 10 votes;
    every 50th row has an empty name and 10 NF votes, like the 173 unnamed rows of the real
    file), `FER2013{Train,Valid,Test}/label.csv` (name,"(0, 0, 48, 48)",10 votes; sorted by name,
    no header, like FERPlus's). Each file is written atomically.
    """
    raw_dir = Path(raw_dir)
    data = generate(sizes, seed, num_identities, regime)
    fer = io.StringIO()
    fer.write("emotion,pixels,Usage\n")
    new = io.StringIO()
    new.write("Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,"
              "unknown,NF\n")
    labels = {split: [] for split in data}
    row = 0
    for split, part in data.items():
        for image, c, votes in zip(part["images"], part["classes"], part["votes"]):
            if row % 50 == 49:  # an unnamed row, skipped by FER+ (real file: 173 such rows)
                fer.write(f"6,{' '.join(map(str, image.ravel().tolist()))},{_USAGE[split]}\n")
                new.write(f"{_USAGE[split]},,0,0,0,0,0,0,0,0,0,10\n")
                row += 1
            name = f"fer{row:07d}.png"
            fer.write(f"{_FER2013_CODE[CLASS_NAMES[c]]},"
                      f"{' '.join(map(str, image.ravel().tolist()))},{_USAGE[split]}\n")
            vote_text = ",".join(map(str, votes.tolist()))
            new.write(f"{_USAGE[split]},{name},{vote_text}\n")
            labels[split].append(f'{name},"(0, 0, 48, 48)",{vote_text}\n')
            row += 1
    raw_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_text(raw_dir / "fer2013.csv", fer.getvalue())
    atomic.write_text(raw_dir / "fer2013new.csv", new.getvalue())
    for split, lines in labels.items():
        atomic.write_text(raw_dir / _FOLDER[split] / "label.csv", "".join(sorted(lines)))
    return {"seed": int(seed), "num_identities": int(num_identities), "regime": regime,
            "sizes": {s: len(v["classes"]) for s, v in data.items()}, "rows": row}


def prepare_demo(output: str | os.PathLike, *, raw_dir: str | os.PathLike | None = None,
                 sizes: dict[str, int] | None = None, seed: int = 0,
                 num_identities: int = NUM_IDENTITIES, regime: str = "classic",
                 source: dict[str, Any] | None = None,
                 progress: bool = False) -> dict[str, Any]:
    """Generates the demo raw files (into `raw_dir`, or a temporary directory) and prepares them
    through the FER+ path into `output`; returns summary.json's content."""
    with tempfile.TemporaryDirectory(prefix="fer_distill_demo_") as tmp:
        raw = Path(raw_dir) if raw_dir is not None else Path(tmp)
        written = write_demo_raw(raw, sizes, seed, num_identities, regime)
        info = {"generator": "fer_distill.data.demo", **written,
                  "note": "synthetic faces in FER+'s raw formats, prepared through the FER+ "
                          "csv path (fer2013.csv + fer2013new.csv + label.csv, majority votes)"}
        # ferplus records the raw directory; a temporary one is gone when this returns
        info["raw"] = str(raw) if raw_dir is not None else "a temporary directory, deleted"
        info.update(source or {})
        return ferplus.prepare_ferplus(raw, output, layout="csv", dataset="demo",
                                       source=info, progress=progress)
