"""Every command in the ``bash`` blocks of the README and of every page of the docs site runs as written (the
cheap ones), or is skipped for a reason.

The commands are read from the pages themselves (:data:`PAGES`: README.md and every Markdown file the Sphinx build
of ``docs/`` reads), so a command added to any of them is either run here or matched by a rule in :data:`SKIPPED`;
an unmatched one fails the test. Each block runs in a fresh folder (``configs/`` linked in), in page order, in
this process (``wdlab.cli.main``); a block whose text is the same as one already run (on another page) is run
once. What is appended to keep it cheap, and nothing else:

* ``wdlab sweep`` gets ``--dry_run`` (the grid checked, the first cell's model, data and trainer built);
* training commands get ``--trainer.fast_dev_run true`` (one batch, nothing written), on the built-in data the
  few images of :data:`TINY`, and ``/data/cifar10`` (or ``data/cifar10``) / ``/data/imagenet32`` become small
  files in the official formats (their md5 sums are not the release's: ``verify_checksums false``);
* a resumed run (``--ckpt_path``) gets :data:`RESUMED` instead of ``fast_dev_run`` (and :data:`TINY`, what it
  was trained with);
* a block that reads ``runs/quickstart/`` starts with the run the README's quickstart command makes, trained
  on :data:`TINY` for 35 epochs (snapshots at epochs 5, 15 and 35), and that command itself is not run again;
* environment assignments before a command (``OMP_NUM_THREADS=1 wdlab ...``) are dropped.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
import time
from pathlib import Path

import pytest
import yaml
from data_files import write_cifar_folder, write_imagenet32

from wdlab.cli import main

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"


def _site_pages() -> list[Path]:
    """The Markdown pages of the docs site: every ``.md`` under docs/ but the build output and what
    ``docs/conf.py`` excludes (``exclude_patterns``; docs/replication/fashion_mnist/ holds data, not pages)."""
    excluded = ("_build/", "replication/fashion_mnist/")
    return sorted(path for path in DOCS.rglob("*.md")
                  if not path.relative_to(DOCS).as_posix().startswith(excluded))


#: README.md first (its first three commands are the set-up, the quickstart and the tests), then the site's pages.
PAGES: tuple[Path, ...] = (README, *_site_pages())

QUICKSTART = "wdlab fit --config configs/quickstart.yaml"
TINY = ["--data.init_args.num_train", "32", "--data.init_args.num_test", "32", "--data.init_args.batch_size", "32",
        "--trainer.enable_progress_bar", "false"]
SMOKE = ["--trainer.fast_dev_run", "true"]
#: A resumed run of the 35-epoch quickstart (one step per epoch) takes one more step from the epoch-15 snapshot,
#: none from last.ckpt (a fast_dev_run resume would take one step and check nothing about the schedule).
RESUMED = ["--trainer.max_steps", "16"]

#: (pattern, reason): a command matching the pattern (re.search) is not run here.
SKIPPED: tuple[tuple[str, str], ...] = (
    (r"^pip (install|download)", "the set-up command: .ci/run runs it in a fresh environment"),
    (r"^pytest", "the test command: .ci/run runs it"),
    (r"^(ruff|hadolint|sphinx-build) ", "a linter or the docs build: .ci/run runs it"),
    (r"^(docker|mkdir -p data runs)", "needs Docker and a GPU: tests/test_docker.py checks the Dockerfile"),
    (r"docker/smoke\.sh|^(apt-get install -y podman|cat > /etc/containers/|debootstrap |tar -C /work/docker-base)",
     "builds a container base and runs docker/smoke.sh (a container engine): tests/test_docker.py runs the script "
     "where an engine is present"),
    (r"pip freeze --exclude-editable", "re-pins docker/constraints.txt after the tests pass (docs/DOCKER.md)"),
    (r"^tensorboard ", "starts a server"),
    (r"--trainer\.devices [2-9]", "needs several devices: tests/training/test_ddp.py runs DDP on CPU processes"),
    (r"^(torchrun|srun) |sbatch ",
     "a multi-node launch or a SLURM job: tests/training/test_ddp.py runs DDP on CPU processes"),
    (r"--model\.compile true",
     "compiling Shake-Shake takes a minute on CPU: tests/training/test_fastpaths.py compiles a small network in a fit"),
    (r"^wdlab report (runs/(fig2|paper_fig2)|docs/replication/)",
     "needs those sweeps (or rewrites the committed round-1 reports): tests/experiments/test_replication.py "
     "reports a tiny suite"),
    (r"docs/replication/(run_suite|fashion_mnist/run_pilot)\.sh|docs/replication/fashion_mnist/run_round2\.py",
     "the whole replication suite (hours): tests/experiments/test_replication.py and test_replication_parts.py run "
     "every part of it as tiny sweeps, then the reports and summarize.py; tests/experiments/test_round2.py runs "
     "round 2's run_round2.py --tiny end to end"),
    (r"^python docs/replication/",
     "the replication's scripts over its runs: tests/experiments/test_replication_parts.py and "
     "tests/experiments/test_replication_summary.py run summarize.py on tiny suites"),
    (r"^(source |git worktree |cp docs/replication/|cd \.\./pinned )",
     "sets up a machine or a pinned worktree for a long sweep (docs/replication/README.md)"),
    (r"^(python|bash) benchmarks/", "a benchmark, not a test (a GPU, or minutes of CPU)"),
)


def _blocks(page: Path = README) -> list[list[str]]:
    """The commands of each ```bash block of ``page``: continuation lines joined, ``for X in ...; do ... done``
    expanded, a here-document (``<<'EOF'`` ... ``EOF``) kept with its command."""
    blocks, current = [], None
    for line in page.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if current is None:
            if stripped == "```bash":
                current = []
            continue
        if stripped == "```":
            blocks.append(current)
            current = None
            continue
        current.append(stripped)
    commands_per_block = []
    for lines in blocks:
        joined, pending, heredoc = [], "", None
        for line in lines:
            if heredoc is not None:  # the document's lines are the command's input, not commands
                if line == heredoc:
                    heredoc = None
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            joined.append(pending + line)
            pending = ""
            marker = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
            if marker:
                heredoc = marker.group(1)
        commands, loop = [], None
        for line in joined:
            words = shlex.split(line, comments=True)
            if not words:
                continue
            match = re.fullmatch(r"for (\w+) in (.+); do", " ".join(words))
            if match:
                loop = (match.group(1), match.group(2).split(), [])
            elif words == ["done"]:
                name, values, body = loop
                commands += [cmd.replace(f"${name}", value) for value in values for cmd in body]
                loop = None
            elif loop is not None:
                loop[2].append(shlex.join(words))
            else:
                commands.append(shlex.join(words))
        commands_per_block.append(commands)
    return commands_per_block


def _without_environment(command: str) -> str:
    """The command without the ``NAME=value`` assignments before it."""
    words = shlex.split(command)
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words = words[1:]
    return shlex.join(words)


def _skip_reason(command: str) -> str | None:
    """The reason of the first rule whose pattern is in the command (its words joined by spaces, unquoted)."""
    plain = " ".join(shlex.split(command))
    return next((reason for pattern, reason in SKIPPED if re.search(pattern, plain)), None)


def _run(argv: list[str], cwd: Path) -> tuple[int, str]:
    """``wdlab ARGV`` in ``cwd`` (``> FILE`` redirects stdout); the exit status and what it printed."""
    redirect = None
    if ">" in argv:
        at = argv.index(">")
        argv, redirect = argv[:at], cwd / argv[at + 1]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as stop:  # --print_config exits
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
    if redirect is not None:
        redirect.write_text(out.getvalue())
    return code, out.getvalue() + err.getvalue()


def _cheap(argv: list[str], data: dict[str, Path]) -> list[str]:
    """The command with the data paths replaced and the options of the module docstring appended."""
    argv = [str(data[a]) if a in data else a for a in argv]
    if ">" in argv:  # the options go before a redirection
        at = argv.index(">")
        return _cheap(argv[:at], data) + argv[at:]
    if argv[0] == "sweep":  # the grid checked and the first cell built, nothing run (tests/experiments/test_sweep.py)
        return argv + ([] if "--dry_run" in argv else ["--dry_run"])
    if argv[0] not in ("fit", "validate", "test"):
        return argv
    extra = []
    if argv[0] == "fit" and "--ckpt_path" in argv:
        extra += RESUMED
    elif argv[0] == "fit":
        extra += SMOKE
    if any(str(path) in argv for path in data.values()):
        extra += ["--data.init_args.verify_checksums", "false", "--data.init_args.batch_size", "8",
                  "--trainer.enable_progress_bar", "false"]
    else:  # a resumed run and its evaluations name the data the tiny run was trained on (a checkpoint refuses others)
        extra += TINY
    return argv + extra


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory) -> Path:
    """runs/quickstart as the README's quickstart command makes it, on TINY for 35 epochs."""
    root = tmp_path_factory.mktemp("quickstart")
    (root / "configs").symlink_to(REPO / "configs")
    code, out = _run([*shlex.split(QUICKSTART)[1:], *TINY, "--trainer.max_epochs", "35"], root)
    assert code == 0, out
    return root / "runs" / "quickstart"


@pytest.fixture(scope="module")
def data_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    write_cifar_folder(root / "cifar10", per_batch=16, test_size=16)
    write_imagenet32(root / "imagenet32", per_batch=4, val_size=8)
    return {"/data/cifar10": root / "cifar10", "data/cifar10": root / "cifar10",
            "/data/imagenet32": root / "imagenet32"}


def _page_blocks() -> list[tuple[Path, list[str]]]:
    """(page, commands) of every bash block of every page, README first; a block whose commands are those of a
    block before it (the same commands on another page) is left out: it is run once."""
    seen, blocks = set(), []
    for page in PAGES:
        for block in _blocks(page):
            if tuple(block) in seen:
                continue
            seen.add(tuple(block))
            blocks.append((page, block))
    return blocks


def test_the_pages_are_the_sites():
    """PAGES are README.md and the site's pages (docs/index.md among them), and each has been read."""
    names = [path.relative_to(REPO).as_posix() for path in PAGES]
    assert names[0] == "README.md" and "docs/index.md" in names and "docs/getting-started.md" in names
    assert "docs/replication/README.md" in names and not any("_build" in name for name in names)


def test_the_readme_has_commands_and_every_one_is_run_or_skipped_for_a_reason():
    commands = [c for block in _blocks() for c in block]
    assert commands[0] == "pip install -e '.[dev]'" and commands[1] == QUICKSTART and commands[2] == "pytest"
    unknown = [f"{page.relative_to(REPO)}: {c}" for page in PAGES for block in _blocks(page) for c in block
               if not _without_environment(c).startswith("wdlab ") and _skip_reason(c) is None]
    assert not unknown, f"commands in the pages neither run nor skipped (add a rule to SKIPPED): {unknown}"
    ran = [c for _, block in _page_blocks() for c in block if _skip_reason(c) is None]
    assert len(ran) >= 15, ran


def test_the_parser_reads_loops_heredocs_and_environment_assignments(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("""text
```bash
for opt in sgd adam; do
  wdlab sweep --config configs/$opt.yaml \\
      --out runs/$opt
done
cat > x.conf <<'EOF'
[section]
wdlab fit --not-a-command
EOF
OMP_NUM_THREADS=1 wdlab optimizers   # a comment
```
""", encoding="utf-8")
    (block,) = _blocks(page)
    assert [shlex.split(c) for c in block[:2]] == [
        ["wdlab", "sweep", "--config", "configs/sgd.yaml", "--out", "runs/sgd"],
        ["wdlab", "sweep", "--config", "configs/adam.yaml", "--out", "runs/adam"]]
    assert shlex.split(block[2])[:3] == ["cat", ">", "x.conf"] and block[3] == "OMP_NUM_THREADS=1 wdlab optimizers"
    assert len(block) == 4 and _without_environment(block[-1]) == "wdlab optimizers"


@pytest.mark.slow
def test_every_cheap_readme_command_runs_as_written(tmp_path, quickstart_run, data_files):
    """Every cheap command of every page (README.md and the docs site), block by block."""
    ran = 0
    for index, (page, block) in enumerate(_page_blocks()):
        commands = [_without_environment(c) for c in block if _skip_reason(c) is None]
        if not commands:
            continue
        cwd = tmp_path / f"block{index}"
        cwd.mkdir()
        (cwd / "configs").symlink_to(REPO / "configs")
        reads_the_run = any(re.search(r"runs/quickstart\b|--ckpt_path last", c) for c in commands)
        if reads_the_run:
            shutil.copytree(quickstart_run, cwd / "runs" / "quickstart")
        for command in commands:
            if reads_the_run and command == QUICKSTART:
                continue  # that is the run copied in
            argv = _cheap(shlex.split(command)[1:], data_files)
            started = time.perf_counter()
            code, out = _run(argv, cwd)
            print(f"{time.perf_counter() - started:6.1f} s  {page.relative_to(REPO)}: {shlex.join(argv)}")
            assert code == 0, (f"{page.relative_to(REPO)}: {command!r} (run as {shlex.join(argv)}) exited {code}:\n"
                               f"{out[-3000:]}")
            ran += 1
        if (cwd / "my.yaml").exists():  # the printed config is a config wdlab reads back
            assert yaml.safe_load((cwd / "my.yaml").read_text())["model"]["optimizer"]["name"] == "adamwr"
    assert ran >= 15


def _slug(title: str) -> str:
    """A heading's anchor as MyST makes it (``myst_heading_anchors``): lower case, punctuation dropped."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def test_the_readmes_links_lead_to_files_and_headings():
    """README.md is not a page of the site (the Sphinx build checks the site's links): its relative links are
    checked here, the file and, for a Markdown file, the heading."""
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert len(local) >= 15, local
    for link in local:
        path, _, anchor = link.partition("#")
        assert (REPO / path).exists(), f"README.md links to {path}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", (REPO / path).read_text(encoding="utf-8"), re.M)
            assert anchor in {_slug(h) for h in headings}, f"README.md links to {link}: no such heading"
