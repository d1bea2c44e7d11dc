"""The `vitstudy` command: parse, call, print. Exit status 0 when every cell is done, 1 when some
failed, 2 for bad input (a manifest error, an unknown name), with a message and no traceback.

vitstudy.cli.parser holds the command line, vitstudy.cli.values what each option's value may be and
vitstudy.cli.paths what a folder or file it names must be (both checked before anything is imported or
written); vitstudy.cli.run_grid trains (run-grid, check); vitstudy.cli.info shows (plan, report,
profile, bench, list).
"""

from __future__ import annotations

import os
import sys

from pydantic import ValidationError

from vitstudy import threads
from vitstudy.cli import info, run_grid
from vitstudy.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, usage_error
from vitstudy.cli.parser import build_parser
from vitstudy.config.manifest import ManifestError
from vitstudy.grid.executors.worker import Terminated
from vitstudy.registry import UnknownNameError
from vitstudy.runfolder import StorageError
from vitstudy.training.provenance import DDP_CELL_ENV

COMMANDS = {"run-grid": run_grid.cmd_run_grid, "check": run_grid.cmd_check, "plan": info.cmd_plan,
            "report": info.cmd_report, "profile": info.cmd_profile, "bench": info.cmd_bench,
            "list": info.cmd_list}


def main(argv: list[str] | None = None) -> int:
    threads.apply_here()  # before torch loads: OpenMP threads that sleep when idle (vitstudy.threads)
    if os.environ.get(DDP_CELL_ENV) and os.environ.get("LOCAL_RANK", "0") != "0":
        from vitstudy.training.run import follow_ddp_cell  # a DDP rank Lightning started by re-running us

        return follow_ddp_cell()
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ManifestError as e:
        print(e.render(), file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `vitstudy plan M | head`
        sys.stderr.close()
        return EXIT_OK
    except (KeyboardInterrupt, Terminated):  # the running cell keeps its last.ckpt and resumes later
        print("\nvitstudy: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except StorageError as e:  # a full or read-only results folder: nothing written is lost (runfolder)
        print(f"vitstudy: {e}\nvitstudy: every file written is whole and no finished record was touched; "
              "free space (or make the folder writable) and run the same command again to go on from "
              "here", file=sys.stderr)
        return EXIT_FAILED
    except UnknownNameError as e:
        return usage_error(str(e))
    except ValidationError as e:
        for err in e.errors():
            where = ".".join(str(x) for x in err["loc"]) or e.title
            usage_error(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        return EXIT_USAGE
