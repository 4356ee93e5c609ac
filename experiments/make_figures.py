"""Rebuild every paper figure (PNG and PDF) from saved results, without retraining.

    python experiments/make_figures.py results                 # figures into results/figures
    python experiments/make_figures.py results --out paper/figs
    python experiments/make_figures.py --layout                # where each experiment writes

Finds every result file under RESULTS_DIR (any depth; see pomlab.results for the layout the
experiment scripts write by default: results/scaling, results/speed_cpu, results/state_memory,
results/video_memory, results/theory), draws each figure it can with pomlab.figures, mirrors the
results' folders under --out, and says which figures it skipped and why. Exit status 1 when a
results file was found but could not be drawn (e.g. a foreign or truncated CSV), else 0.
"""

import _bootstrap  # noqa: F401

from pomlab.cli import ConfigParser, run
from pomlab.figures import make_figures
from pomlab.results import describe_layout


def main(argv=None):
    p = ConfigParser(description=__doc__)
    p.add_argument("results_dir", nargs="?", help="folder holding the experiments' results")
    p.add_argument("--out", default=None, help="figures folder (default RESULTS_DIR/figures)")
    p.add_argument("--layout", action="store_true", help="print the results-folder layout and exit")
    args = p.parse_args(argv)
    if args.layout:
        print(describe_layout())
        return None
    if args.results_dir is None:
        p.error("RESULTS_DIR is required (or --layout)")
    report = make_figures(args.results_dir, args.out, log=print)
    made = report[report.status == "made"]
    broken = report[(report.status == "skipped") & report.source.notna()]
    print(f"{len(made)} figure(s) made, {len(report) - len(made)} skipped"
          + (f" ({len(broken)} from results that could not be read)" if len(broken) else ""))
    return report


def exit_status(report) -> int:
    """1 when a results file was found but could not be drawn, else 0."""
    return 0 if report is None else int(((report.status == "skipped") & report.source.notna()).any())


if __name__ == "__main__":
    run(lambda: exit_status(main()))
