"""The settings of one training stage, with the paper's values as defaults.

`TrainConfig` holds every setting of one run of `fer_distill.train.run`; hyper-parameters left
at `None` are filled by `resolved()` from `paper_defaults(stage, arch)`, and the resolved
config is written to `RUN/config.json`. Stages (`teacher`, `student`, `eyes`, `kd`, `triplet`,
`fuse`; ours `rkd`, `hint`) and the view each sees: docs/DESIGN.md, "Training". The paper's
values, and why each value it does not give was chosen as it is: "Training defaults".
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from fer_distill.atomic import read_json
from fer_distill.data.occlusion import resolve_view
from fer_distill.distill.mining import DEFAULT_CHUNK_SIZE
from fer_distill.distill.rkd import ANGLE_WEIGHT, DISTANCE_WEIGHT

STAGES = ("teacher", "student", "eyes", "kd", "triplet", "fuse", "rkd", "hint")
ARCHITECTURES = ("vgg_f", "vgg_face", "mini", "resnet50")
# Architectures that take any square input size (the VGG networks are 224x224 only).
SIZED_ARCHITECTURES = ("mini", "resnet50")
FINE_TUNING_STAGES = ("teacher", "student", "eyes")
DISTILLATION_STAGES = ("kd", "triplet", "rkd", "hint")
# Distillers beyond the paper (ours): report rows and flagfiles mark them so.
EXTRA_DISTILLATION_STAGES = ("rkd", "hint")

# The view each stage's model expects at test time (DESIGN: config.json["view"]).
STAGE_VIEWS = {
    "teacher": "full",
    "student": "lower_half_visible",
    "eyes": "upper_half_visible",
    "kd": "lower_half_visible",
    "triplet": "lower_half_visible",
    "fuse": "lower_half_visible",
    "rkd": "lower_half_visible",
    "hint": "lower_half_visible",
}

# Paper: "64 images for VGG-face, 512 for VGG-f, the same in all training stages".
BATCH_SIZES = {"vgg_face": 64, "vgg_f": 512, "mini": 32, "resnet50": 64}

# (epochs, starting learning rate, floor of the plateau rule) per (stage, arch).
SCHEDULES = {
    # paper: 50 / 800 epochs; rates not given, chosen (DESIGN.md, "Training defaults")
    ("teacher", "vgg_face"): (50, 1e-4, 1e-5),
    ("teacher", "vgg_f"): (800, 1e-3, 1e-4),
    # paper: 40 / 80 epochs; rates chosen like the teacher's
    ("student", "vgg_face"): (40, 1e-4, 1e-5),
    ("student", "vgg_f"): (80, 1e-3, 1e-4),
    # not in the paper's training (its [2] row is Hickson et al.'s setting, whose training it
    # does not describe): trained like the student baseline, our choice
    ("eyes", "vgg_face"): (40, 1e-4, 1e-5),
    ("eyes", "vgg_f"): (80, 1e-3, 1e-4),
    # paper: 1e-4 -> 1e-5 in 50 epochs; 1e-3 -> 1e-4 in 200 epochs
    ("kd", "vgg_face"): (50, 1e-4, 1e-5),
    ("kd", "vgg_f"): (200, 1e-3, 1e-4),
    # paper: 10 epochs at one rate
    ("triplet", "vgg_face"): (10, 1e-6, 1e-6),
    ("triplet", "vgg_f"): (10, 1e-5, 1e-5),
    # resnet50: the journal's values are not public; chosen (DESIGN.md, "Training defaults")
    ("teacher", "resnet50"): (50, 1e-3, 1e-4),
    ("student", "resnet50"): (40, 1e-3, 1e-4),
    ("eyes", "resnet50"): (40, 1e-3, 1e-4),
    ("kd", "resnet50"): (50, 1e-3, 1e-4),
    ("triplet", "resnet50"): (10, 1e-5, 1e-5),
    # mini: not in the paper; sized for the synthetic demo set on a CPU
    ("teacher", "mini"): (30, 1e-2, 1e-3),
    ("student", "mini"): (30, 1e-2, 1e-3),
    ("eyes", "mini"): (30, 1e-2, 1e-3),
    ("kd", "mini"): (15, 3e-3, 3e-4),
    ("triplet", "mini"): (5, 1e-7, 1e-7),
}
# rkd and hint (ours): scheduled like kd for every architecture (DESIGN.md, "Training defaults").
SCHEDULES.update({(stage, arch): SCHEDULES[("kd", arch)] for stage in ("rkd", "hint")
                  for arch in ARCHITECTURES})

# MatConvNet's cnn_train default. The paper ran the preliminary fine-tuning in MatConvNet with
# "the same hyperparameters as Georgescu et al. [1]", and the standard T-S stage before it says
# "we switch to TensorFlow" for the triplet loss, so teacher, student and kd ran with it unless
# its authors changed it (the paper does not say); eyes is trained like the student (our
# choice). The triplet stage ran in TensorFlow, which has no default decay: none (our choice).
# mini (not in the paper): none.
MATCONVNET_WEIGHT_DECAY = 5e-4
MATCONVNET_STAGES = ("teacher", "student", "eyes", "kd")


def default_weight_decay(stage: str, arch: str) -> float:
    """The weight decay `resolved()` fills in (see MATCONVNET_WEIGHT_DECAY)."""
    # rkd and hint (ours) take kd's decay, so that only the teacher's term differs from kd
    if arch != "mini" and stage in MATCONVNET_STAGES + EXTRA_DISTILLATION_STAGES:
        return MATCONVNET_WEIGHT_DECAY
    return 0.0


# Settings that control how a run is executed, not what it computes: a resumed run may change
# them (everything else must match the interrupted run's config.json).
RUN_CONTROL_FIELDS = ("resume", "overwrite", "verbose")

MIXED_PRECISION_POLICIES = ("auto", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multi_worker")
TEACHER_MODES = ("cached", "live")
HEAD_RULES = ("auto", "new", "keep")
TRIPLET_REDUCTIONS = ("sum", "mean")


def setting(*, default: Any = dataclasses.MISSING, help: str,  # noqa: A002  (absl's word)
            choices: tuple[str, ...] | None = None) -> Any:
    """A config field with its help text (and allowed values) beside it; the binaries make
    their flags from these (experiments/flagconfig.py), so a default is written only here."""
    metadata = {"help": help} if choices is None else {"help": help, "choices": choices}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of one stage run. `None` hyper-parameters take the paper's defaults.

    Paths (`data`, `workdir`, `init`, `teacher`, `kd_student`, `triplet_student`) are stored as
    given; relative paths are relative to the working directory of the process.
    """

    stage: str = setting(help="Which stage of Table I to train.", choices=STAGES)
    arch: str = setting(help="Network: vgg_f, vgg_face (the paper's), resnet50 (the journal "
                        "extension's), mini (tests and the demo).", choices=ARCHITECTURES)
    data: str = setting(help="Prepared data set directory (experiments/prepare_data.py).")
    workdir: str = setting(help="Run directory to write (created).")
    # Where the weights come from: `init` for teacher/student/eyes/kd/triplet; `teacher` for
    # kd/triplet; the two distilled students for fuse.
    init: str | None = setting(
        default=None, help="Network to start from: .mat or .keras; 'scratch' for random "
        "weights. teacher/student/eyes: the pretrained network; kd/triplet: the student "
        "stage's model.keras.")
    teacher: str | None = setting(
        default=None, help="kd/triplet: the teacher stage's model.keras (frozen).")
    kd_student: str | None = setting(default=None, help="fuse: the kd stage's model.keras.")
    triplet_student: str | None = setting(
        default=None, help="fuse: the triplet stage's model.keras.")
    head: str = setting(
        default="auto", choices=HEAD_RULES,
        help="fc8 of --init: auto = a fresh fc8 when its width differs from the data set's "
        "classes (a pretrained ImageNet/face network), kept otherwise (a fine-tuned 8-way "
        "network continues as it is); new = always fresh; keep = never.")
    image_size: int | None = setting(
        default=None, help="Input size; VGG: 224 (fixed); mini: the --init network's, else 32.")
    view: str | None = setting(
        default=None, help="The view the model is trained and tested on (kd, triplet, fuse: the "
        "students'; the teacher sees full): full, lower_half_visible, upper_half_visible, a mask "
        "shape (headset, surgical_mask, under_headset, under_surgical_mask) or a mask image "
        "file. Default: the stage's paper view (STAGE_VIEWS).")

    # optimisation (None = paper default for the stage and architecture)
    epochs: int | None = setting(
        default=None, help="Default (VGG-face; VGG-f): teacher 50; 800, student and eyes 40; "
        "80, kd 50; 200, triplet 10; 10 (paper).")
    batch_size: int | None = setting(
        default=None, help="Global batch; default 64 (VGG-face), 512 (VGG-f).")
    learning_rate: float | None = setting(
        default=None, help="Starting rate. Default kd 1e-4 (VGG-face), 1e-3 (VGG-f); triplet "
        "1e-6; 1e-5; teacher/student/eyes (paper silent) 1e-4; 1e-3.")
    min_learning_rate: float | None = setting(
        default=None, help="Floor of the plateau rule; default a tenth of the starting rate "
        "(triplet: the rate itself, constant as in the paper).")
    lr_patience: int = setting(
        default=10, help="Divide the rate by 10 after this many epochs without a better "
        "validation error (paper: 10).")
    lr_factor: float = setting(default=0.1, help="Factor of the plateau rule (paper: 0.1).")
    momentum: float = setting(default=0.9, help="SGD momentum (paper: 0.9).")
    weight_decay: float | None = setting(
        default=None, help="L2 weight decay on kernels (not biases), added to the gradient "
        "before momentum as MatConvNet's cnn_train does (default: MATCONVNET_WEIGHT_DECAY 5e-4 "
        "for the stages the paper trained in MatConvNet: teacher, student, eyes, kd; else 0).")

    # kd (eqs. 1-2)
    kd_lambda: float = setting(default=0.7, help="kd: λ of eq. 1 (paper: 0.7).")
    temperature: float = setting(default=20.0, help="kd: τ of eq. 2 (paper: 20).")
    temperature_squared: bool = setting(
        default=False, help="kd: multiply the soft term by τ² (Hinton et al.); eq. 1 has no "
        "such factor, so off.")
    teacher_mode: str = setting(
        default="cached", choices=TEACHER_MODES,
        help="cached: the teacher's outputs computed once per data set (fast); live: the "
        "teacher runs in every step (for input augmentation).")
    # A control, not a method: a seeded permutation of the teacher's cached rows (kd and
    # triplet). If a student taught so beats the baseline, the cache and batches are misaligned.
    shuffle_teacher: bool = setting(
        default=False, help="kd/triplet CONTROL: give each image another image's cached "
        "teacher output; a student taught so must not beat the baseline.")

    # triplet (eqs. 3-4)
    triplet_lambda: float = setting(default=0.5, help="triplet: λ of eq. 4 (paper: 0.5).")
    margin: float = setting(default=0.1, help="triplet: α of eq. 3 (paper: 0.1).")
    triplet_reduction: str = setting(
        default="sum", choices=TRIPLET_REDUCTIONS,
        help="triplet: eq. 3 sums over the batch (paper); mean divides by it.")
    triplet_normalize: bool = setting(
        default=False, help="triplet (ours, not the paper): eq. 3 and the mining on unit-length "
        "embeddings, so the student cannot satisfy the margin by inflating its embedding.")
    mining_fraction: float = setting(
        default=0.1, help="triplet: the per-epoch random subset mined against (paper: a "
        "tenth).")
    mining_chunk_size: int = setting(default=DEFAULT_CHUNK_SIZE,
                                     help="triplet: anchors per distance matmul.")

    # rkd (ours; Park et al. 2019): CE + rkd_lambda * (w_d * L_dist + w_a * L_angle)
    rkd_lambda: float = setting(
        default=1.0, help="rkd (ours): λ of CE + λ·(w_d·L_dist + w_a·L_angle).")
    rkd_distance_weight: float = setting(
        default=DISTANCE_WEIGHT, help="rkd (ours): w_d (25: the RKD image-classification weight RepDistiller and mmrazor use).")
    rkd_angle_weight: float = setting(
        default=ANGLE_WEIGHT, help="rkd (ours): w_a (50: the RKD image-classification weight RepDistiller and mmrazor use).")

    # hint (ours; FitNets, Romero et al. 2015, masked by the student's view); λ chosen on
    # validation accuracy among 1, 0.1, 0.01 in the known-answer benchmark (mini)
    hint_lambda: float = setting(
        default=0.01, help="hint (ours): λ of CE + λ·(hint L2 over the visible positions).")
    hint_layer: str | None = setting(
        default=None, help="hint (ours): the layer hinted in both networks (default per "
        "architecture, fer_distill.distill.hint.HINT_LAYERS: relu5 vgg_f, relu5_3 vgg_face, "
        "res5c_relu resnet50, relu2 mini).")

    # fuse
    svm_c: float = setting(default=1.0, help="fuse: C of the linear SVM (paper: 1).")
    svm_standardize: bool = setting(
        default=False, help="fuse: standardise the embeddings first (paper: not said; off).")

    # small runs
    steps_per_epoch: int | None = setting(
        default=None, help="Small runs: steps per epoch (default: all).")
    max_train_examples: int | None = setting(
        default=None, help="Small runs: train on a seeded random subset of this many images.")

    # execution
    seed: int = setting(default=0, help="Seed of initialisation, data order and mining subsets.")
    deterministic: bool = setting(
        default=False, help="TensorFlow op determinism: the same command on the same machine "
        "and versions gives identical numbers (slower on a GPU).")
    eval_batch_size: int | None = setting(
        default=None, help="Batch for evaluation and caching (default: --batch_size).")
    mixed_precision: bool = setting(
        default=False, help="Mixed precision (see --mixed_precision_policy).")
    mixed_precision_policy: str = setting(
        default="auto", choices=MIXED_PRECISION_POLICIES,
        help="auto: mixed_float16 on a GPU, mixed_bfloat16 on a CPU.")
    jit_compile: bool = setting(default=False, help="Compile the train step with XLA.")
    strategy: str = setting(
        default="default", choices=STRATEGIES,
        help="default: one device; mirrored: all local GPUs; multi_worker: TF_CONFIG.")
    keep_checkpoints: int = setting(
        default=2, help="Per-epoch checkpoints kept on disk (VGG-face: 1 GB each).")

    # run control
    resume: bool = setting(default=False, help="Continue an interrupted run from its last epoch.")
    overwrite: bool = setting(default=False, help="Delete the run in --workdir and train again.")
    verbose: int = setting(
        default=1, help="1: progress bars (one line per epoch when the output is not a "
        "terminal); 2: one line per epoch; 0: quiet.")

    # ---------------------------------------------------------------------------------------

    def resolved(self) -> "TrainConfig":
        """This config with every `None` hyper-parameter set to the paper's default, checked."""
        self._check_names()
        values: dict[str, Any] = {}
        if self.stage != "fuse":
            epochs, lr, floor = SCHEDULES[(self.stage, self.arch)]
            if self.epochs is None:
                values["epochs"] = epochs
            if self.learning_rate is None:
                values["learning_rate"] = lr
            if self.min_learning_rate is None:
                # a user-given rate keeps the paper's ratio between start and floor
                given = self.learning_rate
                values["min_learning_rate"] = floor if given is None else given * floor / lr
        else:
            values["epochs"] = 0 if self.epochs is None else self.epochs
        if self.batch_size is None:
            values["batch_size"] = BATCH_SIZES[self.arch]
        if self.weight_decay is None:
            values["weight_decay"] = (0.0 if self.stage == "fuse"
                                      else default_weight_decay(self.stage, self.arch))
        if self.view is None:
            values["view"] = STAGE_VIEWS[self.stage]
        config = dataclasses.replace(self, **values)
        if config.eval_batch_size is None:
            config = dataclasses.replace(config, eval_batch_size=config.batch_size)
        config._check_values()
        return config

    def to_dict(self) -> dict[str, Any]:
        """All fields, JSON-ready (a resolved config names its view)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Inverse of `to_dict` (extra keys, such as the resolved data facts, are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def differences(self, other: "TrainConfig") -> dict[str, tuple[Any, Any]]:
        """{field: (self's, other's)} for fields that differ, run-control fields excluded."""
        mine, theirs = dataclasses.asdict(self), dataclasses.asdict(other)
        return {k: (mine[k], theirs[k]) for k in mine
                if k not in RUN_CONTROL_FIELDS and mine[k] != theirs[k]}

    # ---------------------------------------------------------------------------------------

    def _check_names(self) -> None:
        for name, value, allowed in (
            ("stage", self.stage, STAGES), ("arch", self.arch, ARCHITECTURES),
            ("head", self.head, HEAD_RULES), ("teacher_mode", self.teacher_mode, TEACHER_MODES),
            ("triplet_reduction", self.triplet_reduction, TRIPLET_REDUCTIONS),
            ("mixed_precision_policy", self.mixed_precision_policy, MIXED_PRECISION_POLICIES),
            ("strategy", self.strategy, STRATEGIES),
        ):
            if value not in allowed:
                raise ValueError(f"config: {name} must be one of {allowed}, got {value!r}")
        for name in ("data", "workdir"):
            if not getattr(self, name):
                raise ValueError(f"config: {name} is required")
        if self.view is not None:
            try:
                resolve_view(self.view)
            except (ValueError, FileNotFoundError) as error:
                raise ValueError(f"config: view: {error}") from None
            if self.stage == "teacher" and self.view != "full":
                raise ValueError(f"config: the teacher sees full faces (view 'full'); got view "
                                 f"{self.view!r} (the view is the students' setting)")

    def _check_values(self) -> None:
        def positive(name, integer=True, allow_none=False, zero=False):
            value = getattr(self, name)
            if value is None and allow_none:
                return
            ok = value is not None and (value >= 0 if zero else value > 0)
            if integer:
                ok = ok and int(value) == value
            if not ok:
                kind = "an integer" if integer else "a number"
                bound = ">= 0" if zero else "> 0"
                raise ValueError(f"config: {name} must be {kind} {bound}, got {value!r}")

        positive("epochs", zero=True)
        positive("batch_size")
        positive("eval_batch_size")
        positive("lr_patience")
        positive("keep_checkpoints")
        positive("mining_chunk_size")
        positive("steps_per_epoch", allow_none=True)
        positive("max_train_examples", allow_none=True)
        positive("image_size", allow_none=True)
        if self.stage != "fuse":
            positive("learning_rate", integer=False)
            positive("min_learning_rate", integer=False)
            if self.min_learning_rate > self.learning_rate:
                raise ValueError(
                    f"config: min_learning_rate {self.min_learning_rate} is above "
                    f"learning_rate {self.learning_rate}")
        if not 0.0 < self.lr_factor < 1.0:
            raise ValueError(f"config: lr_factor must be in (0, 1), got {self.lr_factor}")
        if not self.weight_decay >= 0.0:
            raise ValueError(f"config: weight_decay must be >= 0, got {self.weight_decay}")
        if self.shuffle_teacher and self.stage not in DISTILLATION_STAGES:
            raise ValueError(f"config: shuffle_teacher is a control of the kd and triplet "
                             f"stages, not of {self.stage!r}")
        if self.shuffle_teacher and self.teacher_mode != "cached":
            raise ValueError("config: shuffle_teacher permutes the cached teacher outputs; "
                             "it needs teacher_mode 'cached'")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"config: momentum must be in [0, 1), got {self.momentum}")
        if not 0.0 <= self.kd_lambda <= 1.0:
            raise ValueError(f"config: kd_lambda must be in [0, 1], got {self.kd_lambda}")
        if not self.temperature > 0:
            raise ValueError(f"config: temperature must be > 0, got {self.temperature}")
        if not self.triplet_lambda >= 0:
            raise ValueError(f"config: triplet_lambda must be >= 0, got {self.triplet_lambda}")
        if not 0.0 < self.mining_fraction <= 1.0:
            raise ValueError(
                f"config: mining_fraction must be in (0, 1], got {self.mining_fraction}")
        for name in ("rkd_lambda", "rkd_distance_weight", "rkd_angle_weight", "hint_lambda"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"config: {name} must be >= 0, got {getattr(self, name)!r}")
        if self.shuffle_teacher and self.stage == "hint":
            raise ValueError("config: shuffle_teacher permutes cached teacher outputs; the "
                             "hint stage runs its teacher live")
        if not self.svm_c > 0:
            raise ValueError(f"config: svm_c must be > 0, got {self.svm_c}")
        needs = {
            "kd": ("init", "teacher"), "triplet": ("init", "teacher"),
            "rkd": ("init", "teacher"), "hint": ("init", "teacher"),
            "fuse": ("kd_student", "triplet_student"),
        }.get(self.stage, ())
        for name in needs:
            if not getattr(self, name):
                raise ValueError(f"config: stage {self.stage!r} needs --{name}")
        if self.stage in FINE_TUNING_STAGES and not self.init and self.arch != "mini":
            example = {"vgg_face": "vgg-face", "resnet50": "imagenet-resnet-50-dag"}.get(
                self.arch, "imagenet-vgg-f")
            raise ValueError(
                f"config: stage {self.stage!r} of {self.arch} fine-tunes a pretrained network: "
                f"give --init (e.g. pretrained/{example}.mat, or a .keras file), or "
                "--init=scratch for a random initialisation")
        if self.arch not in SIZED_ARCHITECTURES and self.image_size not in (None, 224):
            raise ValueError(f"config: {self.arch} takes 224x224 inputs, got image_size "
                             f"{self.image_size}")


def paper_defaults(stage: str, arch: str) -> dict[str, Any]:
    """The hyper-parameters `resolved()` fills in for (stage, arch), as a dict."""
    config = TrainConfig(stage=stage, arch=arch, data="-", workdir="-",
                         init="-", teacher="-", kd_student="-", triplet_student="-")
    resolved = config.resolved()
    keys = ("epochs", "batch_size", "learning_rate", "min_learning_rate", "lr_patience",
            "lr_factor", "momentum", "weight_decay")
    if stage == "kd":
        keys += ("kd_lambda", "temperature", "temperature_squared")
    if stage == "triplet":
        keys += ("triplet_lambda", "margin", "triplet_reduction", "mining_fraction")
    if stage == "rkd":
        keys += ("rkd_lambda", "rkd_distance_weight", "rkd_angle_weight")
    if stage == "hint":
        keys += ("hint_lambda", "hint_layer")
    if stage == "fuse":
        keys = ("svm_c", "svm_standardize")
    return {k: getattr(resolved, k) for k in keys}


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Reads a run's config.json back into a TrainConfig."""
    return TrainConfig.from_dict(read_json(path, what="run config"))
