"""Training: every stage of the paper's Table I as one call, `run(config)`.

    from fer_distill.train import TrainConfig, run
    run(TrainConfig(stage="kd", arch="vgg_face", data="data/prepared/ferplus",
                    workdir="runs/ferplus/vgg_face/kd",
                    init="runs/ferplus/vgg_face/student/model.keras",
                    teacher="runs/ferplus/vgg_face/teacher/model.keras"))

Hyper-parameters left unset take the paper's values (`paper_defaults`); the run directory it
writes is described in `fer_distill.rundir` and docs/DESIGN.md. `experiments/train.py`
is the command-line front end.
"""
from fer_distill.train.callbacks import NonFiniteLoss
from fer_distill.train.config import (STAGE_VIEWS, STAGES, TrainConfig, load_config,
                                      paper_defaults)
from fer_distill.train.runner import run

__all__ = ["NonFiniteLoss", "STAGES", "STAGE_VIEWS", "TrainConfig", "load_config",
           "paper_defaults", "run"]
