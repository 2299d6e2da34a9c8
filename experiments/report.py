"""Write Table I from finished runs, beside the paper's numbers, and print it.

Usage:

  python -m experiments.report --runs=runs --output=report
  python -m experiments.report --runs=reproduction/ferplus_vgg_face --output=report \
      --mcnemar=chi2

Reads every run directory under --runs (config.json; metrics.json means finished; a run
without it is "incomplete" and never used) and every evaluation written by
experiments/evaluate.py (evaluation/test_<view>.json, e.g. the teachers on ◐ and ◑).
Writes into --output, each atomically: table_i.md (what is printed), table_i.csv (one line per
row and data set) and table_i.json (everything, McNemar counts and p-values included). The rows
are the paper's, in its order, with its accuracy, ours and the difference; "not run" where no
run exists; † from our own paired McNemar tests of each distilled student against the student
baseline [1] (--mcnemar=exact, statsmodels' exact binomial test, by default; chi2: chi-square
with continuity correction; the report names the one used); and per row the run directory and
flagfile that produced it. Runs on the synthetic demo set are reported in a table of their own,
and the report says at the top that their numbers are not comparable with the paper's.
"""
from __future__ import annotations

from absl import app, flags

from experiments import cli

FLAGS = flags.FLAGS
_ANY = {"allow_override": True}  # docs/DESIGN.md, "Binaries"
flags.DEFINE_string("runs", None, "Directory tree holding the run directories.", **_ANY)
flags.DEFINE_string("output", None, "Where to write table_i.{md,csv,json} (default: print "
                    "only).", **_ANY)
flags.DEFINE_enum("mcnemar", "exact", ["exact", "chi2"],
                  "McNemar variant: exact binomial, or chi-square with continuity correction.",
                  **_ANY)
flags.DEFINE_float("alpha", 0.05, "Significance level of † (paper: 0.05).", **_ANY)
flags.DEFINE_string("paper_table", None, "Another copy of paper_table.json (default: the "
                    "packaged one).", **_ANY)


def config_from_flags():
    from fer_distill.evaluation.report import ReportConfig

    def value(name, default):
        return default if FLAGS[name].using_default_value else FLAGS[name].value

    if not value("runs", None):
        raise app.UsageError("--runs must be given")
    return ReportConfig(runs=FLAGS.runs, output=value("output", None),
                        exact=value("mcnemar", "exact") == "exact",
                        alpha=value("alpha", 0.05), paper_table=value("paper_table", None))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from fer_distill.evaluation.report import make_report

    config = config_from_flags()
    try:
        config.check()
    except (ValueError, FileNotFoundError) as error:
        raise app.UsageError(str(error)) from None
    _, markdown = make_report(config)
    print(markdown)
    if config.output:
        print(f"written: {config.output}/table_i.md, table_i.csv, table_i.json")


if __name__ == "__main__":
    cli.run(main)
