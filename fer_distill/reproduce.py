"""Table I in one call: prepare, teacher, student, eyes, kd, triplet, fuse, evaluate, report.

    report = reproduce(ReproduceConfig(workdir=WORKDIR, dataset="ferplus", arch="vgg_f",
                                       raw=RAW, pretrained="imagenet-vgg-f.mat"))

runs every stage of the paper for one data set and architecture, in order, into WORKDIR
(data/prepared/, runs/<dataset>/<arch>/<stage>/, flags/, provenance.json, report/,
reproduce.json) and returns the report (printing it). Finished stages are skipped,
interrupted ones resumed.
`scenario="headset" | "mask"` runs one of our occlusion scenarios; `from_matconvnet_*` the
paper's MatConvNet path; `PRESETS["demo"]` the demo. The work directory, each stage, re-runs
and the MatConvNet path: docs/DESIGN.md, "Training".
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import re
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

from fer_distill import rundir
from fer_distill.atomic import write_json, write_text
from fer_distill.data.affectnet import prepare_affectnet
from fer_distill.data.demo import prepare_demo
from fer_distill.data.ferplus import prepare_ferplus
from fer_distill.data.prepared import read_prepared
from fer_distill.evaluation.figures import GRADCAM_FILE
from fer_distill.evaluation.report import (PROVENANCE_FILE, PROVENANCE_FORMAT, ReportConfig,
                                           make_report)
from fer_distill.preset import (DEMO, DEMO_CHOICE, DEMO_SCARCE, PAPER, PRESETS,  # noqa: F401
                                Preset, _frozen)  # (PAPER ... Preset: part of this API)
from fer_distill.reproduce_evaluation import draw_figure, evaluate_runs
from fer_distill.scenarios import scenario
from fer_distill.train import run
from fer_distill.train.config import ARCHITECTURES, RUN_CONTROL_FIELDS, TrainConfig

STAGES = ("prepare", "teacher", "student", "eyes", "kd", "triplet", "fuse", "rkd", "hint",
          "evaluate", "figure", "report")
TRAINING_STAGES = ("teacher", "student", "eyes", "kd", "triplet", "fuse", "rkd", "hint")
# Distillers beyond the paper (ours): run only when named in `stages` (--stages=...,rkd,hint);
# the report shows them as extra rows marked ours.
OPTIONAL_STAGES = ("rkd", "hint")
DEFAULT_STAGES = tuple(s for s in STAGES if s not in OPTIONAL_STAGES)
DATASETS = ("ferplus", "affectnet", "demo")
FORMAT = "fer_distill.reproduce/1"
# Where a demo reproduction keeps the network it pretrains (Preset.demo_pretrain); the report
# does not read it (it is no row of Table I).
PRETRAINED_DIR = "pretrained"




@dataclasses.dataclass(frozen=True)
class ReproduceConfig:
    """Everything one reproduction needs.

    workdir: where everything is written (docs/DESIGN.md, "Training").
    dataset: "ferplus", "affectnet" or "demo"; arch: "vgg_f", "vgg_face" or "mini".
    raw: the raw release (ferplus, affectnet); data: an already prepared data set instead.
    pretrained: the network the teacher, student and eyes baseline fine-tune (.mat or .keras);
      required for VGG, optional for mini (random initialisation without it).
    from_matconvnet_teacher / _student / _kd_student: the MatConvNet path (DESIGN, "Training").
    preset: a `Preset` (PRESETS); overrides: TrainConfig fields per stage ("*": all) on top.
    prepare_options: extra keyword arguments for the data preparation (FER+: layout,
      fer2013_csv, max_missing, workers; AffectNet: per_class_cap, validation, ...).
    exact: McNemar's exact binomial test (True) or chi-square with continuity correction.
    eval_batch_size: images per forward pass in the evaluation stage (default: the batch size).
    stages: run only these stages (in the pipeline's order); the others must be finished.
    verbose: 0 quiet, 1 progress bars, 2 one line per epoch.
    scenario: "paper" (Table I), or one of ours, "headset" / "mask" (fer_distill.scenarios).
    """

    workdir: str
    dataset: str = "demo"
    arch: str = "mini"
    raw: str | None = None
    data: str | None = None
    pretrained: str | None = None
    from_matconvnet_teacher: str | None = None
    from_matconvnet_student: str | None = None
    from_matconvnet_kd_student: str | None = None
    preset: Preset = PAPER
    overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    prepare_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    exact: bool = True
    eval_batch_size: int | None = None
    stages: tuple[str, ...] | None = None
    verbose: int = 1
    scenario: str = "paper"

    def __post_init__(self):
        object.__setattr__(self, "overrides", _frozen(self.overrides))
        object.__setattr__(self, "prepare_options", MappingProxyType(dict(self.prepare_options)))

    @property
    def from_matconvnet(self) -> bool:
        return bool(self.from_matconvnet_teacher or self.from_matconvnet_student)

    def check(self) -> None:
        """Raises ValueError / FileNotFoundError for settings that cannot work, before any
        stage starts (a mistake costs seconds, not a trained teacher)."""

        if not self.workdir:
            raise ValueError("reproduce: workdir is required")

        scenario(self.scenario)  # a ValueError naming an unknown one
        if self.dataset not in DATASETS:
            raise ValueError(f"reproduce: dataset must be one of {DATASETS}, got "
                             f"{self.dataset!r}")
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"reproduce: arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        if self.dataset != "demo" and not (self.raw or self.data):
            raise ValueError(f"reproduce: --dataset={self.dataset} needs the raw release "
                             "(--raw=DIR) or a prepared data set (--data=DIR)")
        if self.raw and self.data:
            raise ValueError("reproduce: give --raw (to prepare) or --data (prepared), not both")
        if self.from_matconvnet and not (self.from_matconvnet_teacher
                                         and self.from_matconvnet_student):
            raise ValueError("reproduce: the MatConvNet path needs both "
                             "--from_matconvnet_teacher and --from_matconvnet_student")
        if self.from_matconvnet_kd_student and not self.from_matconvnet:
            raise ValueError("reproduce: --from_matconvnet_kd_student belongs to the MatConvNet "
                             "path; give --from_matconvnet_teacher and --from_matconvnet_student")
        if self.from_matconvnet and self.scenario != "paper":
            raise ValueError("reproduce: the MatConvNet path converts the paper's lower-half "
                             f"student; it has no {self.scenario!r} scenario")
        if self.from_matconvnet and self.pretrained:
            raise ValueError("reproduce: --pretrained is for fine-tuning here; the MatConvNet "
                             "path starts from the converted teacher and student instead")
        if (not self.from_matconvnet and self.arch != "mini" and not self.pretrained):
            raise ValueError(
                f"reproduce: {self.arch} fine-tunes a pretrained network: give --pretrained "
                f"(e.g. {'vgg-face.mat' if self.arch == 'vgg_face' else 'imagenet-vgg-f.mat'})")
        for name in ("raw", "data", "pretrained", "from_matconvnet_teacher",
                     "from_matconvnet_student", "from_matconvnet_kd_student"):
            value = getattr(self, name)
            if value and not Path(value).exists():
                raise FileNotFoundError(f"reproduce: --{name}={value} not found")
        if self.stages is not None:
            bad = [s for s in self.stages if s not in STAGES]
            if bad or not self.stages:
                raise ValueError(f"reproduce: stages must be some of {STAGES}, got "
                                 f"{list(self.stages)}")
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        for source, mapping in (("preset " + self.preset.name, self.preset.train),
                                ("overrides", self.overrides)):
            unknown = set(mapping) - set(TRAINING_STAGES) - {"*"}
            if unknown:
                raise ValueError(f"reproduce: {source}: unknown stages {sorted(unknown)}")
            for stage, values in mapping.items():
                bad = sorted(set(values) - fields)
                if bad:
                    raise ValueError(f"reproduce: {source}[{stage!r}]: {bad} are not training "
                                     f"settings (fer_distill.train.TrainConfig fields)")
                reserved = sorted(set(values) & set(_WIRING))
                if reserved:
                    raise ValueError(f"reproduce: {source}[{stage!r}]: {reserved} are set by "
                                     "the reproduction itself (which data, which run, which "
                                     "network starts which stage)")

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["preset"] = {"name": self.preset.name, "description": self.preset.description,
                            "train": {k: dict(v) for k, v in self.preset.train.items()},
                            "demo_sizes": (dict(self.preset.demo_sizes)
                                           if self.preset.demo_sizes else None),
                            "demo_seed": self.preset.demo_seed,
                            "demo_regime": self.preset.demo_regime,
                            "demo_pretrain": (None if self.preset.demo_pretrain is None else
                                              json.loads(json.dumps(
                                                  dict(self.preset.demo_pretrain)))),
                            "smoke_scale": self.preset.smoke_scale}
        values["overrides"] = {k: dict(v) for k, v in self.overrides.items()}
        values["prepare_options"] = dict(self.prepare_options)
        values["stages"] = None if self.stages is None else list(self.stages)
        return values


# TrainConfig fields the reproduction decides (presets and overrides may not).
_WIRING = ("stage", "arch", "data", "workdir", "init", "teacher", "kd_student",
           "triplet_student", "resume", "overwrite", "view")


@dataclasses.dataclass
class Layout:
    """Where a reproduction keeps each thing (docs/DESIGN.md, "Training")."""
    root: Path
    dataset: str
    arch: str
    # a scenario of ours (not "paper") keeps its runs, flagfiles, record and figure apart; its
    # teacher is the paper's (full faces, the same settings)
    scenario: str = "paper"

    @property
    def data(self) -> Path:
        return self.root / "data" / "prepared" / self.dataset

    def _apart(self, name: str) -> bool:
        return self.scenario != "paper" and name != "teacher"

    def run(self, stage: str) -> Path:
        runs = self.root / "runs" / self.dataset / self.arch
        return runs / self.scenario / stage if self._apart(stage) else runs / stage

    def model(self, stage: str) -> Path:
        return self.run(stage) / rundir.MODEL

    def flagfile(self, name: str) -> Path:
        prefix = (f"{self.dataset}_{self.arch}_{self.scenario}" if self._apart(name)
                  else f"{self.dataset}_{self.arch}")
        return self.root / "flags" / f"{prefix}_{name}.flags"

    @property
    def figure(self) -> Path:
        suffix = "" if self.scenario == "paper" else f"_{self.scenario}"
        return self.report / GRADCAM_FILE.replace(".png", f"{suffix}.png")

    @property
    def pretrained(self) -> Path:
        """The demo's own pretrained network (Preset.demo_pretrain): its data and its run."""
        return self.root / PRETRAINED_DIR

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def record(self) -> Path:
        suffix = "" if self.scenario == "paper" else f"_{self.scenario}"
        return self.root / f"reproduce{suffix}.json"

    @property
    def provenance(self) -> Path:

        return self.root / PROVENANCE_FILE


class Reproduction:
    """One reproduction in progress: the stages as methods, the record of what happened."""
    def __init__(self, config: ReproduceConfig, *, out: Callable[[str], None] = print,
                 callbacks: Mapping[str, Sequence[Any]] | None = None):
        self.config = config

        self.scenario = scenario(config.scenario)
        self.layout = Layout(Path(config.workdir).absolute(), config.dataset, config.arch,
                             config.scenario)
        self.out = out
        self.callbacks = dict(callbacks or {})
        # what earlier invocations did, updated stage by stage (a --stages subset keeps the rest)
        self.stages: dict[str, dict[str, Any]] = {}
        if self.layout.record.is_file():
            try:
                previous = json.loads(self.layout.record.read_text(encoding="utf-8"))
                self.stages = dict(previous.get("stages", {}))
            except ValueError:
                self.stages = {}
        self.data_dir = Path(config.data).absolute() if config.data else self.layout.data

    @property
    def demo_pretrains(self) -> bool:
        """Whether this reproduction makes its own pretrained network (Preset.demo_pretrain)."""
        config = self.config
        return (config.dataset == "demo" and config.preset.demo_pretrain is not None
                and not config.pretrained and not config.from_matconvnet)

    # -- records -------------------------------------------------------------------------

    def _record(self) -> None:
        write_json(self.layout.record, {
            "format": FORMAT, "config": self.config.to_dict(),
            "layout": {"data": str(self.data_dir), "runs": str(self.layout.root / "runs"),
                       "report": str(self.layout.report)},
            "stages": self.stages,
            "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds")})

    def _provenance(self, path: Path, flagfile: Path) -> None:

        entries = []
        if self.layout.provenance.is_file():
            entries = json.loads(self.layout.provenance.read_text(encoding="utf-8")).get(
                "entries", [])
        entries = [e for e in entries if e.get("path") != str(path)]
        entries.append({"path": str(path), "flagfile": str(flagfile)})
        write_json(self.layout.provenance, {"format": PROVENANCE_FORMAT, "entries": entries})

    def _say(self, text: str) -> None:
        if self.config.verbose or text.startswith(("==", "!!")):
            self.out(text)

    # -- the pipeline --------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        config = self.config
        config.check()
        wanted = (tuple(config.stages) if config.stages is not None else
                  DEFAULT_STAGES + tuple(config.preset.extra_stages))
        for stage in TRAINING_STAGES:  # every stage's settings checked before the first runs
            if stage in wanted and (train_config := self.train_config(stage)) is not None:
                try:
                    train_config.resolved()
                except ValueError as error:
                    raise ValueError(f"reproduce: stage {stage}: {error}") from None
        self.layout.root.mkdir(parents=True, exist_ok=True)
        self._say(self.banner())
        report = None
        for stage in STAGES:
            if stage not in wanted:
                continue
            started = time.monotonic()
            self._say(f"== {stage} ==")
            self.stages[stage] = {"status": "running"}
            self._record()
            try:
                status = getattr(self, f"_stage_{stage}")()
            except BaseException as error:  # recorded (then raised): reproduce.json tells
                self.stages[stage] = {  # where a killed or failed reproduction stopped
                    "status": "interrupted", "error": f"{type(error).__name__}: {error}",
                    "seconds": round(time.monotonic() - started, 1)}
                self._record()
                raise
            if stage == "report":
                report, status = status, {"status": "written", "path": str(self.layout.report)}
            status["seconds"] = round(time.monotonic() - started, 1)
            self.stages[stage] = status
            self._record()
            self._say(f"   {stage}: {status['status']} ({status['seconds']:.1f} s)")
        return report

    def banner(self) -> str:
        config = self.config
        lines = [f"== fer-distill reproduction of Table I: {config.dataset}, {config.arch}, "
                 f"preset {config.preset.name!r}, in {self.layout.root}"]
        if self.scenario.ours:
            lines.append(f"== scenario {self.scenario.name!r} (ours, not the paper's): the "
                         f"students see {self.scenario.student_view}, the other-view baseline "
                         f"{self.scenario.other_view}, the teacher full faces")
        if config.preset.smoke_scale or config.dataset == "demo":
            lines.append("== SYNTHETIC SMOKE-SCALE RUN: generated faces and a small network; "
                         "its numbers are NOT the paper's and are not comparable with them.")
        if config.dataset == "demo":
            lines.append(f"== demo regime {config.preset.demo_regime!r}; settings: "
                         f"{config.preset.description}")
            if config.preset.expect:
                lines.append(f"== what to expect: {config.preset.expect}")
        if config.from_matconvnet:
            lines.append("== MatConvNet path: the teacher and student are converted from "
                         f"{config.from_matconvnet_teacher} and {config.from_matconvnet_student};"
                         " only the TensorFlow stage (triplet, fusion) is trained here.")
        return "\n".join(lines)

    # prepare ----------------------------------------------------------------------------

    def _stage_prepare(self) -> dict[str, Any]:

        config = self.config
        if config.data:
            prepared = read_prepared(self.data_dir)
            self._check_dataset(prepared)
            return {"status": "given", "data": str(self.data_dir)}
        try:
            prepared = read_prepared(self.data_dir)
        except FileNotFoundError:
            prepared = None
        if prepared is not None:
            self._check_dataset(prepared)
            self._say(f"   {self.data_dir}: already prepared; not repeated")
            if self.demo_pretrains:
                self._pretrain_demo()  # finished: checked and skipped; interrupted: resumed
            return {"status": "finished earlier", "data": str(self.data_dir)}
        source = {"by": "fer_distill.reproduce", "preset": config.preset.name}
        options = dict(config.prepare_options)
        options.setdefault("progress", bool(config.verbose))
        if config.dataset == "demo":

            sizes = dict(config.preset.demo_sizes) if config.preset.demo_sizes else None
            prepare_demo(self.data_dir, sizes=sizes, seed=config.preset.demo_seed,
                         regime=config.preset.demo_regime, source=source, **options)
        elif config.dataset == "ferplus":

            prepare_ferplus(config.raw, self.data_dir, source=source, **options)
        else:

            prepare_affectnet(config.raw, self.data_dir, source=source, **options)
        prepared = read_prepared(self.data_dir)
        counts = ", ".join(f"{s} {prepared.count(s)}" for s in ("train", "validation", "test"))
        self._say(f"   prepared {prepared.dataset} into {self.data_dir}: {counts}")
        if self.demo_pretrains:
            self._pretrain_demo()
        return {"status": "done", "data": str(self.data_dir)}

    def _pretrain_demo(self) -> None:
        """The demo's stand-in for a pretrained file (Preset.demo_pretrain)."""
        spec = self.config.preset.demo_pretrain
        root = self.layout.pretrained
        data = root / "data"
        try:
            read_prepared(data)
        except FileNotFoundError:
            sizes = dict(self.config.preset.demo_sizes) if self.config.preset.demo_sizes \
                else None
            prepare_demo(data, sizes=sizes, seed=int(spec["seed"]), regime="classic",
                         source={"by": "fer_distill.reproduce", "role": "pretraining"})
        self._say(f"   pretraining mini on full faces of the classic demo set ({root})")
        workdir = root / "run"
        run(TrainConfig(stage="teacher", arch=self.config.arch, data=str(data),
                        workdir=str(workdir), seed=int(spec["seed"]),
                        resume=rundir.is_run(workdir),
                        verbose=self.config.verbose,
                        # "*" overrides (a shorter run) reach the pretraining too
                        **{**dict(spec.get("train", {})), **self.config.overrides.get("*", {})}))

    def _check_dataset(self, prepared) -> None:
        config = self.config
        if prepared.dataset != config.dataset:
            raise ValueError(f"reproduce: {prepared.path} holds {prepared.dataset!r}, not "
                             f"{config.dataset!r}; choose another --workdir or --data")
        source = prepared.summary.get("source", {})
        if config.dataset == "demo" and not config.data and source.get("generator"):
            # demo presets share run names: another preset's set would be reused silently
            wanted = {"regime": config.preset.demo_regime, "seed": config.preset.demo_seed,
                      "sizes": dict(config.preset.demo_sizes or {}) or source.get("sizes")}
            found = {k: source.get(k) for k in wanted}
            if found != wanted:
                raise ValueError(f"reproduce: {prepared.path} holds the demo set {found}, not "
                                 f"preset {config.preset.name!r}'s {wanted}; choose another "
                                 "--workdir")

    # training stages --------------------------------------------------------------------

    def train_config(self, stage: str):
        """The TrainConfig of one stage of this reproduction (None: the stage does not run)."""
        config, layout = self.config, self.layout
        preset = config.preset.settings(stage)
        overrides = {**config.overrides.get("*", {}), **config.overrides.get(stage, {})}
        values: dict[str, Any] = {**preset, **overrides}
        if ("learning_rate" in overrides and "min_learning_rate" not in overrides
                and preset.get("min_learning_rate") and preset.get("learning_rate")):
            # a new starting rate keeps the preset's ratio of floor to start (the trainer's
            # rule for the paper's defaults), rather than a floor above the start
            values["min_learning_rate"] = (overrides["learning_rate"]
                                           * preset["min_learning_rate"]
                                           / preset["learning_rate"])
        if config.eval_batch_size and "eval_batch_size" not in values:
            values["eval_batch_size"] = config.eval_batch_size
        values.setdefault("verbose", config.verbose)
        wiring: dict[str, Any] = {}
        if self.scenario.ours and stage != "teacher":
            wiring["view"] = self.scenario.view(stage)
        imported = None
        if stage in ("teacher", "student", "eyes"):
            imported = {"teacher": config.from_matconvnet_teacher,
                        "student": config.from_matconvnet_student}.get(stage)
            if config.from_matconvnet and stage == "eyes":
                return None
            wiring["init"] = imported or config.pretrained
            if wiring["init"] is None and self.demo_pretrains:
                wiring["init"] = str(self.layout.pretrained / "run" / rundir.MODEL)
                values.setdefault("head", "new")  # the paper's fresh 8-way fc8
        elif stage in ("kd", "triplet") + OPTIONAL_STAGES:
            wiring["teacher"] = str(layout.model("teacher"))
            wiring["init"] = str(layout.model("student"))
            if stage == "kd" and config.from_matconvnet_kd_student:
                imported = config.from_matconvnet_kd_student
                wiring["init"] = imported
                values["teacher_mode"] = "live"  # why: nothing is trained, so no teacher cache
        else:
            wiring["kd_student"] = str(layout.model("kd"))
            wiring["triplet_student"] = str(layout.model("triplet"))
        if imported:
            # Conversion only: the trainer with 0 epochs loads the .mat, checks it against the
            # data set, saves model.keras and evaluates it; the head must already be 8-way.
            values.update(epochs=0, head="keep")
        if wiring.get("init") is not None:
            wiring["init"] = str(Path(wiring["init"]).absolute()) if wiring["init"] != "scratch" \
                else "scratch"
        return TrainConfig(stage=stage, arch=config.arch, data=str(self.data_dir),
                           workdir=str(layout.run(stage)), **wiring, **values)

    def _train(self, stage: str) -> dict[str, Any]:

        train_config = self.train_config(stage)
        if train_config is None:
            self._say(f"   {stage}: not part of the MatConvNet path's TensorFlow stage; "
                      "not run")
            return {"status": "not part of this path"}
        workdir = Path(train_config.workdir)
        flagfile = self.layout.flagfile(stage)
        resolved = train_config.resolved()
        finished = rundir.is_finished(workdir)
        if finished:
            differences = rundir.setting_differences(
                resolved, rundir.recorded_config(resolved, workdir))
            if differences:
                listed = "; ".join(f"{k}: {new!r} now, {old!r} in the run"
                                   for k, (new, old) in sorted(differences.items()))
                raise ValueError(
                    f"reproduce: {workdir} finished with other settings ({listed}); it would "
                    "be reported as this reproduction's. Use another --workdir, or delete that "
                    "run directory to train it again")
        # why after the check: a refused run keeps the flagfile that produced it
        table = (f"Scenario {self.scenario.name!r} (ours, not the paper's)"
                 if self.scenario.ours and stage != "teacher" else "Table I")
        write_text(flagfile, train_flagfile(train_config, header=(
            f"{table}, {self.config.dataset} {self.config.arch} {stage}: written by "
            f"fer_distill.reproduce (preset {self.config.preset.name!r}). Re-run this stage "
            f"alone with:\n  python -m experiments.train --flagfile={flagfile}")))
        self._provenance(workdir, flagfile)
        if finished:
            metrics = rundir.finished_metrics(workdir)
            self._say(f"   {workdir}: finished earlier (test accuracy "
                      f"{100 * metrics['test']['accuracy']:.2f}%); not re-run")
            return {"status": "finished earlier", "run": str(workdir),
                    "test_accuracy": metrics["test"]["accuracy"]}
        resume = rundir.is_run(workdir)
        if resume:
            self._say(f"   {workdir}: interrupted earlier; resuming from its last checkpoint")
        train_config = dataclasses.replace(train_config, resume=resume)
        metrics = run(train_config, callbacks=list(self.callbacks.get(stage, ())))
        return {"status": "resumed" if resume else "done", "run": str(workdir),
                "test_accuracy": metrics["test"]["accuracy"],
                "epochs_run": metrics.get("epochs_run"),
                "train_seconds": metrics.get("train_seconds")}

    def _stage_teacher(self):
        return self._train("teacher")

    def _stage_student(self):
        return self._train("student")

    def _stage_eyes(self):
        return self._train("eyes")

    def _stage_kd(self):
        return self._train("kd")

    def _stage_triplet(self):
        return self._train("triplet")

    def _stage_fuse(self):
        return self._train("fuse")

    def _stage_rkd(self):  # ours, optional
        return self._train("rkd")

    def _stage_hint(self):  # ours, optional
        return self._train("hint")

    # evaluate and report ----------------------------------------------------------------

    def _stage_evaluate(self) -> dict[str, Any]:

        return evaluate_runs(self, TRAINING_STAGES, OPTIONAL_STAGES)

    def _stage_figure(self) -> dict[str, Any]:

        return draw_figure(self)

    def _stage_report(self):

        report, markdown = make_report(ReportConfig(
            runs=str(self.layout.root), output=str(self.layout.report),
            exact=self.config.exact))
        self.out(console(markdown))
        return report


# Report sections left out of what a reproduction prints (long paths; they are in the file).
CONSOLE_OMITS = ("## Where each number comes from", "## Figures")


def console(markdown: str) -> str:
    """The report as a reproduction prints it: without the CONSOLE_OMITS sections."""
    sections = re.split(r"(?m)^(?=## )", markdown)
    return "".join(s for s in sections if not s.startswith(CONSOLE_OMITS)).rstrip() + "\n"


def train_flagfile(config, header: str = "") -> str:
    """`experiments.train` flags that recreate `config`: the wiring and every setting that
    differs from TrainConfig's defaults (so the paper's defaults stay visible as defaults)."""

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)
                if f.default is not dataclasses.MISSING}

    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for field in dataclasses.fields(TrainConfig):
        value = getattr(config, field.name)
        if field.name in RUN_CONTROL_FIELDS:  # how to run, not what: left to the command line
            continue
        if field.name in defaults and value == defaults[field.name]:
            continue
        if value is None:
            continue
        if isinstance(value, bool):
            lines.append(f"--{field.name}" if value else f"--no{field.name}")
        else:
            lines.append(f"--{field.name}={value}")
    return "\n".join(lines) + "\n"


def reproduce(config: ReproduceConfig, *, out: Callable[[str], None] = print,
              callbacks: Mapping[str, Sequence[Any]] | None = None) -> dict[str, Any]:
    """Runs the reproduction `config` describes (module docstring); returns the report.

    `callbacks` ({stage: [keras callbacks]}) are handed to that stage's trainer; `out`
    receives every line printed (the table last).
    """
    return Reproduction(config, out=out, callbacks=callbacks).run()
