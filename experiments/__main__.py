"""Command line of the suite: `python -m experiments COMMAND ...` (the Makefile's targets call it).

  python -m experiments list                              experiments, config groups, sweeps, reports
  python -m experiments show EXP [key=value ...]          the composed config: every key, its value, its
                                                          default and the file (or command line) that set it
  python -m experiments train EXP [key=value ...]         train (EXP may also be given as exp=EXP)
  python -m experiments eval EXP ckpt_path=PATH [...]     validate + test a checkpoint
  python -m experiments sweep SWEEP [--count N] [--online] [key=value ...]
  python -m experiments report REPORT [key=value ...]     run or collect a paper table/figure's runs and
                                                          write a Markdown report (experiments/reports/)
  python -m experiments bench [--full] [--only NAME]      benchmarks (make bench)

Errors: bad input found before a run starts (config, data roots and files, model arguments, checkpoint,
run directory) is one line on stderr, exit status 2, and nothing is written (SV3D_DEBUG=1 adds the
traceback). An error during training or evaluation propagates with its traceback, exit status 1, and the run
directory keeps it in failed.txt; a diverged run (non-finite loss or monitored metric) exits 1 with the reason.

Overrides are dotted keys of the composed config (see experiments/config.py): trainer.max_epochs=5,
model.backbone=efficientnet_b0, data.batch_size=16, logger=csv, seed=1, run_dir=runs/mine,
ckpt_path=last (resume the newest run of EXP, or the one in run_dir).

Launching, from one GPU up to many nodes (Lightning DDP; W&B logs from rank zero only):
  one GPU:           python -m experiments train gp2_mixture trainer.accelerator=gpu trainer.devices=1
  one node, 8 GPUs:  python -m experiments train gp2_mixture trainer.devices=8 trainer.strategy=ddp
                     (Lightning starts the 7 other processes itself)
  torchrun:          torchrun --nproc_per_node=8 --nnodes=2 --node_rank=$R --master_addr=$HOST \
                       -m experiments train gp2_mixture trainer.devices=8 trainer.num_nodes=2 \
                       trainer.strategy=ddp run_dir=runs/gp2_mixture/job1
  SLURM (sbatch):    #SBATCH --nodes=2              # must equal trainer.num_nodes
                     #SBATCH --ntasks-per-node=8    # must equal trainer.devices
                     #SBATCH --gres=gpu:8
                     srun python -m experiments train gp2_mixture trainer.devices=8 trainer.num_nodes=2 \
                       trainer.strategy=ddp
  Under torchrun/SLURM every process starts at once: the run directory is named after the job id
  (TORCHELASTIC_RUN_ID / SLURM_JOB_ID) so all ranks agree, or give run_dir explicitly.
CPU-only multi-process (what the tests use): trainer.accelerator=cpu trainer.devices=2 trainer.strategy=ddp
(gloo backend).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from experiments.config import ConfigError, compose, explain, format_explain, list_experiments, list_options


def _split_exp(args: list[str]) -> tuple[str | None, list[str]]:
    exp, rest = None, []
    for a in args:
        if exp is None and "=" not in a:
            exp = a
        elif a.startswith("exp="):
            exp = a.split("=", 1)[1]
        else:
            rest.append(a)
    return exp, rest


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["list", "show", "train", "eval", "sweep", "report", "bench"])
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv[:1])
    rest = argv[1:]
    try:
        if ns.command == "list":
            from experiments.report import list_reports
            from experiments.sweep import list_sweeps

            print("experiments:", ", ".join(list_experiments()))
            for group in ("trainer", "logger", "data", "model"):
                print(f"{group} options:", ", ".join(list_options(group)))
            print("sweeps:", ", ".join(list_sweeps()))
            print("reports:", ", ".join(list_reports()))
            print("every key of an experiment, with its default: python -m experiments show EXP")
            return 0
        if ns.command in ("show", "train", "eval"):
            exp, overrides = _split_exp(rest)
            if exp is None:
                raise ConfigError(
                    f"{ns.command}: name an experiment. Available: {', '.join(list_experiments())}"
                )
            if ns.command == "show":
                print(format_explain(explain(exp, overrides)))
                return 0
            cfg = compose(exp, overrides, classes=False)  # config errors before the heavy imports
            from experiments import runner

            result = runner.train(cfg) if ns.command == "train" else runner.evaluate(cfg)
            if runner.global_rank() == 0:
                print("\n" + runner.summary(result, cfg), flush=True)
            return 0
        if ns.command == "sweep":
            from experiments.sweep import main as sweep_main

            return sweep_main(rest)
        if ns.command == "report":
            from experiments.report import main as report_main

            return report_main(rest)
        if ns.command == "bench":
            from experiments.bench import main as bench_main

            return bench_main(rest)
    except ConfigError as e:
        # bad input found before the run started: one clear line; nothing was written or overwritten
        if os.environ.get("SV3D_DEBUG"):
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:  # lightning_modules.family.DivergedError: the reason is the message
        if os.environ.get("SV3D_DEBUG"):
            traceback.print_exc()
        run_dir = getattr(e, "run_dir", None)
        where = f" (traceback in {run_dir}/failed.txt)" if run_dir else ""
        print(f"error: {e}{where}", file=sys.stderr)
        return 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
