"""``python -m demo`` (``make demo``): exit 0 when everything it shows happened, else non-zero.

Exit codes: 0 success; 1 something the demo shows did not happen; 2 MySQL, Redis or a setting
is not usable; 130 interrupted (Ctrl-C or SIGTERM). The worker is stopped in every case.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from types import FrameType

from rich.console import Console

from demo import services
from demo.config import ConfigProblem, load
from demo.progress import ProgressTimeout
from demo.story import DemoRun
from demo.waiting import DemoFailed
from demo.worker import WorkerProblem


class Interrupted(Exception):
    """SIGTERM, turned into an exception so every ``finally`` runs (as for Ctrl-C)."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Interrupted()


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="beeorm-celery end to end: flush_async() through a real Celery (or "
        "Dramatiq) worker.",
    )
    parser.add_argument(
        "--backend",
        choices=("celery", "dramatiq"),
        default="celery",
        help="the task queue whose worker applies the batches (default celery; dramatiq needs "
        "pip install beeorm-celery[dramatiq])",
    )
    parser.add_argument(
        "--entities",
        type=int,
        default=20_000,
        help="entities flushed asynchronously in the bulk run (default 20000)",
    )
    parser.add_argument(
        "--per-flush", type=int, default=10, help="entities per flush_async() call (default 10)"
    )
    parser.add_argument(
        "--speed-calls",
        type=int,
        default=100,
        help="calls of flush() and of flush_async() per shape in the speed section (default 100)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the database, the Redis keys and the worker log afterwards",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    console = Console()
    try:
        config = load(args.entities, args.per_flush, args.speed_calls, args.keep, args.backend)
    except ConfigProblem as e:
        console.print(f"[bold red]demo: {e}[/]")
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    console.rule(f"[bold]beeorm-celery demo ({args.backend})")
    run = DemoRun(config, console)
    code = 1
    try:
        run.run()
        code = 0
    except (services.ServiceProblem, ConfigProblem) as e:
        console.print(f"\n[bold red]demo: {e}[/]")
        code = 2
    except WorkerProblem as e:  # its message carries the end of the worker's log
        console.print(f"\n[bold red]demo FAILED: {e}[/]")
    except (DemoFailed, ProgressTimeout) as e:
        console.print(f"\n[bold red]demo FAILED: {e}[/]")
        if run.worker.process is not None:
            console.print(f"[dim]worker log: {run.worker.log_path}; last lines:[/]")
            console.print(run.worker.log_tail(), markup=False, highlight=False)
    except (KeyboardInterrupt, Interrupted):
        console.print("\n[bold yellow]demo interrupted[/]")
        code = 130
    except Exception:
        console.print("\n[bold red]demo FAILED with an unexpected error:[/]")
        console.print_exception(max_frames=8)
    finally:
        code = _finish(run, console, code)
    return code


def _finish(run: DemoRun, console: Console, code: int) -> int:
    """Stop the worker (always), then tidy up; an interrupt here is finished first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan the worker
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        started = run.worker.process is not None
        if started:
            console.print()
            console.rule("[bold]8 · Stop the worker", align="left")
        outcome = run.close()
        if started:
            console.print(
                f"worker pid {run.worker.pid} stopped in {outcome['stop_s']:.1f}s "
                f"(exit code {outcome['exit_code']})",
                highlight=False,
            )
        if run.config.keep:
            console.print(
                f"kept: database {run.config.mysql.database}, Redis keys "
                f"{run.config.key_prefix}:*, "
                f"worker log {run.worker.log_path}",
                highlight=False,
            )
        elif code in (0, 130):
            services.remove(run.config)
            shutil.rmtree(run.workdir, ignore_errors=True)
            console.print(
                "removed the demo database, its Redis and broker keys, the worker log",
                highlight=False,
            )
        elif code == 1:
            console.print(
                "left the demo database and keys for a look (the next run resets them)",
                highlight=False,
            )
        else:
            shutil.rmtree(run.workdir, ignore_errors=True)
        if run.worker.exit_code not in (None, 0) and code == 0:
            console.print(
                f"[bold red]demo FAILED: the worker exited with {run.worker.exit_code}[/]"
            )
            code = 1
    except Exception as e:  # the worker is stopped by now; say what was left behind
        console.print(f"[bold red]demo: cleanup failed: {e}[/]")
        code = code or 2
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    total = time.monotonic() - run.started
    verdict = "[bold green]done[/]" if code == 0 else f"[bold red]exit code {code}[/]"
    console.print(f"\n{verdict} in {total:.1f}s")
    return code


if __name__ == "__main__":
    sys.exit(main())
