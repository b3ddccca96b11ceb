"""Results pages: what a bench script printed, written to ``docs/results/NAME.md`` with its
provenance (commit, date, machine, command), so a number in the docs says where it came from.

    from results_page import add_page_flag, write_results_page
    add_page_flag(parser, "methods")          # --no-page: print only
    ...
    if not args.no_page:
        write_results_page("methods", "The methods compared", body)

The machine is described without its host name: platform, CPU count, memory, Python and
torch versions, the GPU's name or "no GPU". The commit is ``git rev-parse HEAD``, marked
"(with uncommitted changes)" when ``git status --porcelain`` lists anything outside
``docs/results/`` (pages written by earlier runs do not count).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

from features.atomic import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def commit_line() -> str:
    """``git rev-parse HEAD``, with "(with uncommitted changes)" for a dirty tree."""
    head = _git("rev-parse", "HEAD")
    if head is None:
        return "unknown (not a git checkout, or git is missing)"
    status = _git("status", "--porcelain", "--", ".", ":(exclude)docs/results")
    dirty = " (with uncommitted changes)" if status and status.strip() else ""
    return head.strip() + dirty


def _memory_gib() -> float | None:
    try:
        import psutil

        return psutil.virtual_memory().total / 2**30
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    return None


def machine_line() -> str:
    """Platform, CPUs, memory, Python, torch and GPU; never the host name."""
    parts = [platform.platform(), f"{os.cpu_count() or '?'} CPUs"]
    memory = _memory_gib()
    if memory is not None:
        parts.append(f"{memory:.1f} GiB memory")
    parts.append(f"Python {platform.python_version()}")
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
        if torch.cuda.is_available():
            count = torch.cuda.device_count()
            name = torch.cuda.get_device_name(0)
            parts.append(f"{count} x {name}" if count > 1 else name)
        else:
            parts.append("no GPU")
    except ImportError:
        parts.append("torch not installed")
    return ", ".join(parts)


def _script(argv: list[str]) -> str:
    """The script's path, relative to the repository when it lies inside it."""
    script = Path(argv[0]) if argv else Path("?")
    if script.resolve().is_relative_to(REPO):
        script = script.resolve().relative_to(REPO)
    return str(script)


def command_line(argv: list[str] | None = None) -> str:
    """``python bench/X.py ARGS`` as this process was started."""
    argv = list(sys.argv if argv is None else argv)
    return " ".join(["python", shlex.quote(_script(argv)), *(shlex.quote(a) for a in argv[1:])])


def add_page_flag(parser: argparse.ArgumentParser, name: str) -> None:
    """``--no-page``: skip writing ``docs/results/NAME.md`` (the output is printed as always)."""
    parser.add_argument(
        "--no-page",
        action="store_true",
        help=f"do not write docs/results/{name}.md (print only)",
    )


def write_results_page(
    name: str,
    title: str,
    body_markdown: str,
    argv: list[str] | None = None,
    results_dir: Path | None = None,
) -> Path:
    """Write ``docs/results/NAME.md`` (or ``results_dir/NAME.md``): the title, the body and the
    provenance block; print and return the path."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"page name {name!r}: expected a plain file name such as 'methods'")
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    argv = list(sys.argv if argv is None else argv)
    command = command_line(argv)
    script = _script(argv)
    text = "\n".join(
        [
            f"# {title}",
            "",
            f"Written by `{script}`; do not edit by hand: run the command below again.",
            "",
            body_markdown.strip(),
            "",
            "## Provenance",
            "",
            f"- commit: {commit_line()}",
            f"- date: {when}",
            f"- machine: {machine_line()}",
            f"- command: `{command}`",
            "",
        ]
    )
    path = (RESULTS if results_dir is None else Path(results_dir)) / f"{name}.md"
    atomic_write_text(path, text)
    print(f"wrote {path}")
    return path


def write_readme_section(
    name: str, body_markdown: str, argv: list[str] | None = None, readme: Path | None = None
) -> Path:
    """Replace what lies between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` in the
    README with the body and a line saying which command wrote it, at which commit and when,
    so the README's headline numbers come from a script like the pages do."""
    path = REPO / "README.md" if readme is None else Path(readme)
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = path.read_text(encoding="utf-8")
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"{path}: expected one '{begin}' line followed by one '{end}' line")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    commit = commit_line()
    short = commit if commit.startswith("unknown") else commit[:7] + commit[40:]
    written = (
        f"Written by `{command_line(list(sys.argv if argv is None else argv))}` at commit "
        f"{short} on {when}; [docs/results/{name}.md](docs/results/{name}.md) has the "
        "machine and the details."
    )
    block = "\n".join([begin, "", body_markdown.strip(), "", written, "", end])
    atomic_write_text(path, head + block + tail)
    print(f"wrote {path} ({begin})")
    return path


def code_block(lines: list[str]) -> str:
    """Printed lines as a fenced text block, for scripts whose output is not a table."""
    return "\n".join(["```text", *lines, "```"])


class Transcript:
    """Prints lines and keeps them, so a script can put what it printed on its page."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str = "", *, flush: bool = False) -> None:
        print(text, flush=flush)
        self.lines.extend(text.split("\n"))
