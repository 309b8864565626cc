"""Shared pieces of the command-line entry points (main.py, evaluate.py, compare, tuning, report)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

PAUSE_ENV = "SAM3_ALIAS_PAUSE_AT"  # test hook: "<point>:<marker file>" (see pause_point)


def add_runtime_flags(p: argparse.ArgumentParser, threads: bool = True, progress: bool = True) -> None:
    """--device, --dtype, --threads, --no-progress and -v, with the same meaning everywhere."""
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "fp32", "bf16", "fp16"),
        help="model compute dtype: auto (bf16 on CUDA where supported, else fp32), fp32, bf16, fp16",
    )
    if threads:
        p.add_argument(
            "--threads",
            type=int,
            help="CPU threads for torch (default: the cores this process may use, shared by ranks)",
        )
    if progress:
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")


def device_problem(device: str) -> str | None:
    """Why ``--device`` cannot be used here (one line), or None when it can.

    ``auto`` always works; otherwise the name must be cpu, cuda, cuda:N or mps and that device must
    exist in this torch build and machine.
    """
    if device == "auto":
        return None
    import torch

    hint = "use --device auto, cpu, cuda, cuda:N or mps"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        return f"unknown device {device!r}: {hint}"
    if dev.type == "cpu":
        return None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "has no CUDA support" if torch.version.cuda is None else "finds no CUDA device"
            return f"--device {device}: this torch ({torch.__version__}) {build}; use --device cpu or auto"
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            return f"--device {device}: only {n} CUDA device(s) here (cuda:0..cuda:{n - 1})"
        return None
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        return None if mps is not None and mps.is_available() else f"--device {device}: MPS is not available here"
    return f"unsupported device {device!r}: {hint}"


def init_runtime(args: argparse.Namespace) -> None:
    """Configure logging from -v, progress bars from --no-progress and torch's CPU threads from --threads
    (entry points only). An absent or misspelt ``--device`` ends the program here: one line on
    stderr and exit code 2 (SystemExit, as argparse does for bad arguments)."""
    problem = device_problem(getattr(args, "device", "auto") or "auto")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "no_progress", False):  # also transformers' "Loading weights" bar
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    import torch

    from alias_opt.dist import cpu_threads  # --threads, else the cores this process may use

    if getattr(args, "threads", None) is not None and args.threads < 1:
        print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        raise SystemExit(2)
    torch.set_num_threads(cpu_threads(getattr(args, "threads", None)))


def user_error(exc: BaseException, model: str | None = None, code: int = 2) -> int:
    """Print a user mistake (bad dataset, config or model source) as one line; return the exit code."""
    from sam3.loading import ModelSourceError

    if model is not None and isinstance(exc, ModelSourceError):
        print(f"error: cannot load the model {model!r}: {exc}", file=sys.stderr)
    else:
        print(f"error: {exc}", file=sys.stderr)
    return code


def pause_point(point: str) -> None:
    """A known point for kill -9 tests: if ``$SAM3_ALIAS_PAUSE_AT`` is ``<point>:<file>``, write ``file``
    and block here until the process is killed (nothing happens otherwise).

    Args:
        point: the point's name, e.g. ``category-checkpoint`` (after a category's checkpoint is written).
    """
    want, _, marker = os.environ.get(PAUSE_ENV, "").partition(":")
    if want != point or not marker:
        return
    Path(marker).write_text(str(os.getpid()))
    while True:  # killed here by the test
        time.sleep(3600)
