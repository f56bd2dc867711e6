"""``rotbook``: execute the study notebooks with papermill on a profile, then build the Jupyter Book.

    rotbook run                          # every study on the smoke profile, then the book
    rotbook run --only 05 --profile cpu  # one study on the published profile (05: <= 40 min on 2 CPU cores)
    rotbook run --only 05 --profile gpu  # the anchors' scale, for one GPU
    rotbook run --only 05 -p fit.epochs=2 -p "test_angles_deg=[0, 90]"
    rotbook book [--profile smoke]       # build the site from already executed notebooks
    rotbook list [--flops]               # the studies, their profiles (and training FLOPs per profile)
    rotbook anchors [--check]            # write (or check) book/anchors.json, the anchors as plain data
    rotbook status [--profile cpu]       # each page's run (runtime, budget, commit) and whether it is stale
    rotbook predict-angle CHECKPOINT photos/ [--min-confidence C] [--no-tta] [--json]  # study 04's model
    rotbook fetch-photos [--dest DIR] [--manifest PATH] [--limit N]  # rebuild $ROTBOOK_DATA/photos (Colab)

Every parameter is checked (profile, override keys and values) for every selected study before any
notebook starts. The published profile (``cpu``, :data:`rotcore.paths.PUBLISHED_PROFILE`) writes the committed
outputs (``book/studies/*.ipynb``, ``results/*.json``);
every other profile writes under ``_build/runs/<profile>/`` and builds a staged copy of the book into
``book/_build/html``, so quick runs never overwrite published results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from rotcore import paths, report
from rotcore.config import ConfigError, resolve
from rotcore.studies import STUDIES, Anchor, StudyInfo, get

if TYPE_CHECKING:
    from rotcore.staleness import Staleness


def notebook_source(info: StudyInfo) -> Path:
    return paths.project_root() / "notebooks" / f"{info.name}.py"


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["a=1", "b.c=[0, 90]", "d=text"]`` -> ``{"a": 1, "b.c": [0, 90], "d": "text"}`` (values as YAML)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {pair!r} is not of the form key=value")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {pair!r}: cannot parse the value ({err})") from None
    return out


def validate(selected: Sequence[StudyInfo], profile: str, overrides: Mapping[str, Any]) -> None:
    """Resolve every selected study's config and check that its data is there (the study's ``check_data``,
    which looks at folders and never loads them), before any notebook starts; the first problem raises
    :class:`ConfigError` (a bad parameter) or :class:`rotcore.paths.MissingDataError` (what to set)."""
    for info in selected:
        module = info.load()
        try:
            cfg = report.resolve_config(module, profile, overrides)
        except ConfigError as err:
            raise ConfigError(f"study {info.number} ({info.name}): {err}") from None
        if not notebook_source(info).exists():
            raise FileNotFoundError(f"study {info.number}: notebook {notebook_source(info)} is missing")
        if hasattr(module, "check_data"):
            try:
                module.check_data(cfg)
            except paths.MissingDataError as err:
                raise paths.MissingDataError(f"study {info.number} ({info.name}): {err}") from None


class StudyFailed(RuntimeError):
    """A study's notebook raised. The published page and results are untouched; ``notebook`` is the executed
    copy with the error (ignored by git and by the book), ``cell`` the failing cell's number."""

    def __init__(self, info: StudyInfo, notebook: Path, cell: int | None, error: str):
        self.info, self.notebook, self.cell, self.error = info, notebook, cell, error
        where = f"cell {cell}" if cell is not None else "an unknown cell"
        super().__init__(f"study {info.number} ({info.name}) failed in {where}: {error}\n"
                         f"  the executed notebook with its error: {notebook}\n"
                         "  the page and results of earlier runs are untouched")


def failed_notebook(info: StudyInfo, profile: str) -> Path:
    """Where a failed run's executed notebook is kept: ``.<name>.failed.ipynb`` beside the page."""
    return paths.studies_dir(profile) / f".{info.name}.failed.ipynb"


def _failing_cell(notebook: Path) -> int | None:
    """The execution count (else the index) of the first code cell with an error output."""
    import nbformat

    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception:  # noqa: BLE001 - a broken file only loses the cell number
        return None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return cell.get("execution_count") or i
    return None


def precision_note(profile: str, *, auto_precision: str | None = None) -> str | None:
    """A warning before a run of the published profile on a machine that would not compute as its pages did, else
    ``None``. The pages ran on 2-core CPUs with native bf16 (AVX512-BF16), where ``fit``'s ``precision="auto"``
    means bf16 autocast; where it means fp32 the run takes longer and follows other training trajectories.
    ``auto_precision``: what ``auto`` means here (``None``: :func:`rotcore.train.resolve_precision` on
    :func:`rotcore.train.default_device`)."""
    if profile != paths.PUBLISHED_PROFILE:
        return None
    if auto_precision is None:
        from rotcore.train import default_device, resolve_precision

        auto_precision = resolve_precision(default_device(), "auto")
    if auto_precision == "bf16":
        return None
    return (f"[rotbook] note: fit's precision 'auto' means {auto_precision} on this machine (no CUDA, and no CPU with "
            f"native bf16: AVX512-BF16 or AMX), so the {profile} profile trains in {auto_precision} here: the "
            "published pages trained under bf16 autocast on CPUs that have it. Expect runs well over the budgets "
            "(training measured 2.6-3.4x slower on a 2-core CPU without it: benchmarks/README.md) and numbers that "
            "need not match the pages'.")


def speed_note(selected: Sequence[StudyInfo], *, rates: Mapping[str, float] | None = None) -> str:
    """Before a run of the published profile on a CPU: a few seconds' training-speed probe here against the machine
    that ran the pages, and the runtime it predicts for each selected study (:func:`rotcore.speed.runtime_note`).
    ``rates``: the probe's images/s (``None``: measure them now, 10-20 s)."""
    from rotcore import speed

    probe_s = None
    if rates is None:
        t0 = time.perf_counter()
        rates = speed.probe()
        probe_s = time.perf_counter() - t0
    wanted = {info.number for info in selected}
    statuses = [s for s in page_status(paths.PUBLISHED_PROFILE, check_sources=False) if s.number in wanted]
    return speed.runtime_note(statuses, rates, probe_s=probe_s)


def execute(info: StudyInfo, profile: str, overrides: Mapping[str, Any], *, log=print) -> Path:
    """jupytext (py:percent) -> papermill, written to :func:`rotcore.paths.studies_dir` for ``profile``.

    The notebook runs into a hidden file beside the page and writes its results JSON into a staging folder;
    only when every cell succeeded are both moved over the page and the results. A failed run leaves them
    untouched, keeps its executed notebook as ``.<name>.failed.ipynb`` and raises :class:`StudyFailed`.
    """
    import jupytext
    import papermill

    out_dir = paths.studies_dir(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{info.name}.ipynb"
    # Executed into a hidden file beside the page and moved over it at the end: the committed page is a tracked
    # file, and overwriting it while the study runs would stamp its results "+dirty" (results.git_commit).
    running = out_dir / f".{info.name}.running.ipynb"
    failed = failed_notebook(info, profile)
    staging = paths.profile_root(profile) / "staging" / info.name
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    nb = jupytext.read(notebook_source(info))
    nb.metadata.setdefault("kernelspec", {"display_name": "Python 3", "language": "python", "name": "python3"})
    t0 = time.perf_counter()
    log(f"[rotbook] {info.number} {info.name}: executing on profile {profile!r} -> {out}")
    # The kernel inherits this process's environment: executed pages show results, not progress bars, and
    # figures need the inline backend even when the caller runs headless with MPLBACKEND=Agg.
    kernel_env = {"ROTBOOK_PROGRESS": "0", "MPLBACKEND": "module://matplotlib_inline.backend_inline",
                  "ROTBOOK_RESULTS_STAGING": str(staging)}
    saved = {k: os.environ.get(k) for k in kernel_env}
    os.environ.update(kernel_env)
    try:
        papermill.execute_notebook(nb, str(running), parameters={"profile": profile, "overrides": dict(overrides)},
                                   kernel_name="python3", cwd=str(paths.project_root()), progress_bar=False,
                                   log_output=False)
    except BaseException as err:
        cell = None
        if running.exists():
            os.replace(running, failed)
            cell = _failing_cell(failed)
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, KeyboardInterrupt):
            raise
        message = getattr(err, "evalue", None) or str(err).strip().splitlines()[-1:] or [type(err).__name__]
        message = message if isinstance(message, str) else message[0]
        raise StudyFailed(info, failed, cell, f"{getattr(err, 'ename', type(err).__name__)}: {message}") from err
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    hide_injected_parameters(running)
    rdir = paths.results_dir(profile)
    rdir.mkdir(parents=True, exist_ok=True)
    for staged in sorted(staging.glob("*.json")):
        os.replace(staged, rdir / staged.name)
    shutil.rmtree(staging, ignore_errors=True)
    os.replace(running, out)
    failed.unlink(missing_ok=True)
    log(f"[rotbook] {info.number} done in {time.perf_counter() - t0:.0f} s")
    return out


def hide_injected_parameters(notebook: Path) -> None:
    """Tag papermill's injected-parameters cell ``remove-cell`` so the site does not show it (the run card
    at the top of each page says which profile and overrides produced it)."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    changed = False
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
            changed = True
    if changed:
        nbformat.write(nb, notebook)


# ---------------------------------------------------------------------------------------------------------
# The summary page


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.2e}"
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.2f}"
    return str(v)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


ANCHORS_FILE = Path("book") / "anchors.json"
#: Wall-clock budgets of the published profile on the 2-core CPU machine (issue 10): minutes per study
#: (``StudyInfo.cpu_budget_min``) and for the whole report.
CPU_BUDGET_MIN: dict[str, float] = {n: i.cpu_budget_min for n, i in STUDIES.items()}
REPORT_BUDGET_MIN = 100.0


def _budget_text() -> str:
    """``"<= 25 min per study, 40 for 05"``: :data:`CPU_BUDGET_MIN` in words (the most common budget first)."""
    common = max(set(CPU_BUDGET_MIN.values()), key=list(CPU_BUDGET_MIN.values()).count)
    others = ", ".join(f"{b:g} for {n}" for n, b in CPU_BUDGET_MIN.items() if b != common)
    return f"<= {common:g} min per study" + (f", {others}" if others else "")


def anchors_data() -> dict[str, list[dict[str, Any]]]:
    """Every study's ``ANCHORS`` as plain data (imports the study modules, so the training stack)."""
    return {info.number: [dataclasses.asdict(a) for a in info.load().ANCHORS] for info in STUDIES.values()}


def write_anchors(path: Path | None = None) -> Path:
    """Write :func:`anchors_data` to ``book/anchors.json``, which the book build reads instead of importing
    the study modules (so building the site needs neither torch nor escnn)."""
    path = path or paths.project_root() / ANCHORS_FILE
    path.write_text(json.dumps(anchors_data(), indent=1, ensure_ascii=False) + "\n")
    return path


def study_anchors(info: StudyInfo) -> tuple[Anchor, ...]:
    """A study's anchors from ``book/anchors.json`` when it lists the study, else from its module."""
    path = paths.project_root() / ANCHORS_FILE
    if path.is_file():
        stored = json.loads(path.read_text()).get(info.number)
        if stored is not None:
            return tuple(Anchor(**a) for a in stored)
    return tuple(info.load().ANCHORS)


def summary_markdown(profile: str) -> str:
    """The summary page: each study's results beside their anchors (with CIs), and, apart, its checks
    (properties that hold by construction, with the test that guarantees each), from ``results`` JSON."""
    from rotcore.results import read_results

    rdir = paths.results_dir(profile)
    published = paths.PUBLISHED_PROFILE
    lines = ["# Summary of results", ""]
    if profile != published:
        lines += [":::{warning}", f"This build shows the **{profile}** profile. Its numbers are not the published "
                  f"ones; the published site shows the `{published}` profile.", ":::", ""]
    runtimes: dict[str, float] = {}
    lines += ["Every number on this page is read from the `results/<study>.json` file that the study's notebook",
              "wrote when it ran. **Results** are what a run found out, set beside the number a source measured",
              "(with its caveats) and our target. Intervals are 95 % CIs; the *interval* column says how each was",
              "computed (Student t over seeds, a percentile bootstrap clustered by the sampled unit, or a Wilson",
              "interval), and an interval that would leave its quantity's range is clipped to it, which that column",
              "says too. A relative target (a drop, a gap, a ratio) is judged only when the run reaches the absolute",
              "floor it names; below it the *met* column reads \"not measurable\". **Checks** hold by construction;",
              "they are shown with the test that guarantees them, not counted as targets met.", ""]
    for info in STUDIES.values():
        anchors = SimpleNamespace(ANCHORS=study_anchors(info))
        path = rdir / f"{info.name}.json"
        lines += [f"## {info.number} · {info.title}", ""]
        if not path.exists():
            lines += [f"*Not yet run on the `{profile}` profile.* Run `rotbook run --only {info.number} "
                      f"--profile {profile}`.", ""]
            continue
        rec = read_results(path)
        m = rec["metrics"]
        runtimes[info.number] = rec["runtime_s"]
        lines += [f"Profile `{rec['profile']}` · {rec['device']}{_precision(rec)} · runtime {rec['runtime_s'] / 60:.1f} min · "
                  f"commit `{rec['git_commit']}` · {rec['created']}", ""]
        results, checks = report.tables(anchors, m)
        if len(results):
            cols = ("metric", "this run", "interval", "anchor", "source", "target", "met")
            lines += ["| result | this run | interval | anchor | source | target | met |",
                      "|---|---|---|---|---|---|---|"]
            lines += ["| " + " | ".join(_cell(r[c]) for c in cols)
                      + " |" for r in results.to_dict("records")]
            lines.append("")
        if len(checks):
            lines += ["| check | measured | bound | holds | guaranteed by |", "|---|---|---|---|---|"]
            lines += ["| " + " | ".join(_cell(r[c]) for c in ("check", "measured", "bound", "holds"))
                      + f" | `{_cell(r['guaranteed by'])}` |" for r in checks.to_dict("records")]
            lines.append("")
    if profile == published:
        lines += runtime_markdown(runtimes)
    return "\n".join(lines)


def runtime_markdown(runtime_s: Mapping[str, float]) -> list[str]:
    """The published run's wall-clock time per study (``{study number: runtime_s}`` from its results) against
    its budget, and the total against the report's (lines of the summary page; empty when no study ran)."""
    rows, total = [], 0.0
    for info in STUDIES.values():
        if info.number not in runtime_s:
            continue
        minutes = runtime_s[info.number] / 60
        total += minutes
        budget = CPU_BUDGET_MIN[info.number]
        rows.append(f"| {info.number} · {info.title} | {minutes:.1f} | ≤ {budget:.0f} | "
                    f"{'yes' if minutes <= budget else 'no'} |")
    if not rows:
        return []
    complete = len(rows) == len(STUDIES)
    rows.append(f"| **the report** | **{total:.1f}** | ≤ {REPORT_BUDGET_MIN:.0f} | "
                f"{('yes' if total <= REPORT_BUDGET_MIN else 'no') if complete else '— (not every study has run)'} |")
    return ["## Runtime of the published run", "",
            "Wall-clock minutes of each study's own `rotbook run` on the 2-core CPU machine (from `runtime_s` in "
            "its results), against the budget the profile is sized for. Judges trained by one study are cached "
            "for the next, as in a full `rotbook run`.", "",
            "| study | runtime (min) | budget (min) | within |", "|---|---|---|---|", *rows, ""]


# ---------------------------------------------------------------------------------------------------------
# The book


def _jupyter_book(src: Path, out_root: Path | None, *, profile: str, log=print) -> None:
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", "-W", "-n", "--keep-going", str(src)]
    if out_root is not None:
        cmd += ["--path-output", str(out_root)]
    log(f"[rotbook] {' '.join(cmd)}")
    # book/_ext/rotbook_summary.py writes the summary page for this profile during the build
    env = {**os.environ, "ROTBOOK_BOOK_PROFILE": profile}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-6000:] + proc.stderr[-6000:])
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode})")


def build_book(profile: str, *, log=print) -> Path:
    """Build the site; returns the HTML folder (always ``book/_build/html``)."""
    root = paths.project_root()
    book = root / "book"
    if profile == paths.PUBLISHED_PROFILE:
        _jupyter_book(book, None, profile=profile, log=log)
    else:
        stage = paths.profile_root(profile) / "book"
        if stage.exists():
            shutil.rmtree(stage)
        shutil.copytree(book, stage, ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"))
        for nb in sorted(paths.studies_dir(profile).glob("*.ipynb")):
            shutil.copy2(nb, stage / "studies" / nb.name)
            placeholder = stage / "studies" / f"{nb.stem}.md"
            if placeholder.exists():
                placeholder.unlink()
        _jupyter_book(stage, book, profile=profile, log=log)
    html = book / "_build" / "html"
    log(f"[rotbook] site: {html / 'index.html'}")
    return html


# ---------------------------------------------------------------------------------------------------------
# CLI


def list_studies(*, flops: bool = False, out=print) -> None:
    """One line per study: its profiles and, with ``flops``, the training FLOPs each would cost
    (``train_flops(cfg)`` of the study, counted with ``torch.utils.flop_counter``)."""
    for info in STUDIES.values():
        module = info.load()
        line = f"{info.number}  {info.name:28s} profiles: {', '.join(module.PROFILES)}"
        if flops and hasattr(module, "train_flops"):
            cost = {p: module.train_flops(cfg) for p, cfg in module.PROFILES.items()}
            line += "  | training " + ", ".join(f"{p} {v / 1e15:.3g} PFLOP" for p, v in cost.items())
        out(line)


@dataclasses.dataclass(frozen=True)
class PageStatus:
    """What one study's results on a profile say about the run that made its page, and whether the page is
    stale (``staleness``: :func:`rotcore.staleness.study_staleness`, its sources against that run's commit).
    ``runtime_s`` etc. are ``None`` when the study has no results on the profile (``ran`` is then false);
    ``budget_min`` is the study's wall-clock budget on the published profile, ``None`` on the others."""

    number: str
    name: str
    ran: bool
    runtime_s: float | None = None
    budget_min: float | None = None
    device: str | None = None
    staleness: Staleness | None = None

    @property
    def stale(self) -> bool:
        return self.staleness is not None and self.staleness.stale

    @property
    def over_budget(self) -> bool:
        return self.budget_min is not None and self.runtime_s is not None and self.runtime_s > 60 * self.budget_min

    @property
    def ok(self) -> bool:
        """Ran, current, and within its budget."""
        return self.ran and not self.stale and not self.over_budget


def page_status(profile: str = paths.PUBLISHED_PROFILE, *, root: Path | None = None,
                check_sources: bool = True) -> list[PageStatus]:
    """:class:`PageStatus` of every study on ``profile``, from its results JSON (no notebook is imported or run;
    git compares the sources, unless ``check_sources`` is false: ``staleness`` is then ``None``)."""
    from rotcore import staleness
    from rotcore.results import read_results

    rdir = paths.results_dir(profile)
    out = []
    for info in STUDIES.values():
        path = rdir / f"{info.name}.json"
        if not path.is_file():
            out.append(PageStatus(info.number, info.name, ran=False))
            continue
        rec = read_results(path)
        out.append(PageStatus(
            info.number, info.name, ran=True, runtime_s=float(rec["runtime_s"]),
            budget_min=info.cpu_budget_min if profile == paths.PUBLISHED_PROFILE else None,
            device=str(rec.get("device", "")) + _precision(rec),
            staleness=staleness.study_staleness(info, rec, root) if check_sources else None))
    return out


def _precision(record: Mapping[str, Any]) -> str:
    """`` · bf16`` from a results record's ``auto_precision`` (older records have none: ``""``)."""
    return f" · {record['auto_precision']}" if record.get("auto_precision") else ""


def status_lines(statuses: Sequence[PageStatus], profile: str) -> list[str]:
    """:func:`page_status` as one line per study; under a stale page, the site's note for it
    (:func:`rotcore.staleness.note`: why, the files changed, the command that reruns it)."""
    from rotcore import staleness

    lines = []
    for s in statuses:
        head = f"{s.number}  {s.name:28s}"
        if not s.ran:
            lines.append(f"{head} not run on {profile}: rotbook run --only {s.number} --profile {profile}")
            continue
        took = f"{s.runtime_s / 60:.1f} min" + (f" of {s.budget_min:g}" if s.budget_min is not None else "")
        state = ("STALE" if s.stale else "current") + (" · OVER BUDGET" if s.over_budget else "")
        lines.append(f"{head} {took:>14s} · commit {s.staleness.commit} · {s.device} · {state}")
        if s.stale:
            lines.append(f"{'':32s}{staleness.note(s.number, s.staleness, profile=profile)}")
    return lines


def _select(only: Sequence[str] | None) -> list[StudyInfo]:
    if not only:
        return list(STUDIES.values())
    try:
        return [get(o) for o in only]
    except KeyError as err:
        raise ConfigError(str(err.args[0])) from None


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def predict_angle(args: argparse.Namespace) -> int:
    """``rotbook predict-angle``: 2 for a bad checkpoint or path, 1 if some file failed, else 0."""
    from rotcore import predict_angle as tool

    def err(msg: str) -> None:
        print(f"rotbook predict-angle: {msg}", file=sys.stderr)

    if args.batch_size < 1:
        err(f"error: --batch-size must be >= 1, got {args.batch_size}")
        return 2
    notes: list[str] = []
    try:
        files = tool.expand_paths(args.paths, notes=notes)
        am = tool.load_model(args.checkpoint)
    except (tool.AngleToolError, OSError) as e:
        err(f"error: {e}")
        return 2
    threshold, tta, note = tool.settings(am, min_confidence=args.min_confidence, tta=args.tta)
    for n in notes + ([note] if note else []):
        err(f"note: {n}")
    if not am.done:
        err(f"note: {tool.shown_path(am.checkpoint)} is from an unfinished run (epoch {am.epoch}); "
            "using its best weights so far")
    results = tool.predict_paths(am, files, min_confidence=threshold, tta=tta, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(tool.format_line(r))
    failed = sum(r["error"] is not None for r in results)
    abstained = sum(bool(r["abstained"]) for r in results)
    err(f"{len(results) - failed - abstained} predicted, {abstained} abstained (confidence < {threshold:.3f}), "
        f"{failed} could not be read; run {am.run!r}, TTA {'on' if tta else 'off'}")
    return 1 if failed else 0


def fetch_photos(args: argparse.Namespace) -> int:
    """``rotbook fetch-photos``: 0 when every downloadable row is present at the end, 1 if some are missing,
    2 when offline (nothing downloaded) or for an unreadable manifest or destination."""
    from rotcore import photo_fetch

    def err(msg: str) -> None:
        print(f"rotbook fetch-photos: {msg}", file=sys.stderr)

    if args.limit is not None and args.limit < 0:
        err(f"error: --limit must be >= 0, got {args.limit}")
        return 2
    dest = Path(args.dest).expanduser() if args.dest else photo_fetch.default_dest()
    try:
        counts = photo_fetch.fetch_photos(dest, manifest=args.manifest, limit=args.limit)
    except photo_fetch.PhotosOfflineError as e:
        err(f"offline: {e}")
        return 2
    except (photo_fetch.ManifestError, OSError) as e:
        err(f"error: {e}")
        return 2
    err(photo_fetch.summary(counts, dest))
    return 1 if counts["missing"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rotbook", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute study notebooks, then build the book")
    run.add_argument("--profile", default="smoke",
                     help=f"smoke (CI, ~1 min per study), cpu (published, {_budget_text()} on 2 cores) or gpu")
    run.add_argument("--only", action="append", metavar="NN", help="study number or name (repeatable)")
    run.add_argument("-p", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key (dotted for nested, e.g. upright_fit.epochs=2)")
    run.add_argument("--no-book", action="store_true", help="execute only")
    run.add_argument("--no-speed-check", action="store_true",
                     help="skip the few seconds' speed probe (and runtime estimate) before a run of the published "
                          "profile on a CPU")
    book = sub.add_parser("book", help="build the book from executed notebooks")
    book.add_argument("--profile", default="smoke")
    lst = sub.add_parser("list", help="list studies and profiles")
    lst.add_argument("--flops", action="store_true", help="also count each profile's training FLOPs (slow-ish)")
    st = sub.add_parser(
        "status", help="each page's run and whether its study's code changed since",
        description="For every study: the run behind its results on the profile (runtime against the budget, "
                    "commit, device) and whether its sources (notebook, study module and the rotcore modules "
                    "they import) changed since that commit. Exit code 0 when every page ran, is current and "
                    "within its budget, else 1.")
    st.add_argument("--profile", default=paths.PUBLISHED_PROFILE)
    anc = sub.add_parser("anchors", help="write book/anchors.json (the anchors as plain data, for the book build)")
    anc.add_argument("--check", action="store_true", help="only check that the file is current (exit 1 if not)")
    pa = sub.add_parser(
        "predict-angle", help="predict the rotation of image files with a study-04 checkpoint",
        description="Predict how far each image is rotated (counter-clockwise) with a study-04 checkpoint, and "
                    "abstain below a confidence threshold (by default the one in the predict_angle.json beside "
                    "the checkpoint). Folders: the files directly inside, sorted (not recursive). Exit code 0, "
                    "1 if some file could not be read as an image, 2 for a bad checkpoint or path.")
    pa.add_argument("checkpoint", metavar="CHECKPOINT", help="runs/04_angle_regression/<run>-<hash>/checkpoint.pt")
    pa.add_argument("paths", metavar="PATH", nargs="+", help="image files and folders of image files")
    pa.add_argument("--min-confidence", type=_non_negative_float, default=None, metavar="C",
                    help="abstain below this confidence (default: the card's threshold, else 0: never abstain)")
    pa.add_argument("--no-tta", dest="tta", action="store_false", default=None,
                    help="no rot90 test-time augmentation (default: as the card says, else on)")
    pa.add_argument("--json", action="store_true", help="print a JSON list instead of one line per file")
    pa.add_argument("--batch-size", type=int, default=32, metavar="N", help="images per forward pass (32)")
    fp = sub.add_parser(
        "fetch-photos", help="download the photos of studies 02 and 04 (where $ROTBOOK_DATA/photos is missing)",
        description="Rebuild the photo folder from the sources its manifest names: the COCO photos committed in "
                    "GitHub repositories are downloaded from raw.githubusercontent.com and resized like the shipped "
                    "copies; rows from Debian or PyPI packages are skipped. Files already present are kept. The "
                    "folder gets a MANIFEST.tsv of the photos present (with their train/val split). Exit code 0 "
                    "when every downloadable photo is present at the end, 1 if some failed, 2 when offline "
                    "(ROTBOOK_OFFLINE or HF_HUB_OFFLINE set, or raw.githubusercontent.com unreachable).")
    fp.add_argument("--dest", metavar="DIR", default=None, help="target folder (default: $ROTBOOK_DATA/photos)")
    fp.add_argument("--manifest", metavar="PATH", default=None,
                    help="a photos MANIFEST.tsv (default: the copy shipped in rotcore/data_files)")
    fp.add_argument("--limit", type=int, default=None, metavar="N",
                    help="only the first N downloadable rows (a quick try)")
    args = parser.parse_args(argv)

    if args.command == "predict-angle":
        return predict_angle(args)
    if args.command == "fetch-photos":
        return fetch_photos(args)
    try:
        if args.command == "list":
            list_studies(flops=args.flops)
            return 0
        if args.command == "status":
            resolve({p: p for p in paths.PROFILES}, args.profile)  # its errors: unknown, or the split `full`
            statuses = page_status(args.profile)
            print("\n".join(status_lines(statuses, args.profile)))
            note = precision_note(args.profile)
            if note:
                print(note)
            return 0 if all(s.ok for s in statuses) else 1
        if args.command == "anchors":
            target = paths.project_root() / ANCHORS_FILE
            if args.check:
                current = target.is_file() and json.loads(target.read_text()) == anchors_data()
                print(f"{ANCHORS_FILE}: {'current' if current else 'STALE: run `rotbook anchors`'}")
                return 0 if current else 1
            print(f"wrote {write_anchors()}")
            return 0
        if args.command == "book":
            build_book(args.profile)
            return 0
        selected = _select(args.only)
        overrides = parse_overrides(args.overrides)
        validate(selected, args.profile, overrides)
        note = precision_note(args.profile)
        if note:
            print(note, file=sys.stderr)
        if args.profile == paths.PUBLISHED_PROFILE and not args.no_speed_check:
            from rotcore.train import default_device

            if default_device().type == "cpu":
                try:
                    print(speed_note(selected), file=sys.stderr)
                except (ValueError, KeyError, OSError) as err:  # advice only: a bad results file stops no run
                    print(f"[rotbook] speed check skipped: {err}", file=sys.stderr)
        timings = {}
        for info in selected:
            t0 = time.perf_counter()
            execute(info, args.profile, overrides)
            timings[info.number] = round(time.perf_counter() - t0, 1)
        # Only now replace the "run owed" placeholders of published pages: deleting a tracked file while later
        # studies still run would stamp their results "+dirty" (git_commit), and mark them stale on the site.
        if args.profile == paths.PUBLISHED_PROFILE:
            for info in selected:
                (paths.studies_dir(args.profile) / f"{info.name}.md").unlink(missing_ok=True)
        print(f"[rotbook] executed: {json.dumps(timings)} (seconds)")
        if not args.no_book:
            build_book(args.profile)
        return 0
    except (ConfigError, paths.MissingDataError) as err:
        print(f"rotbook: error: {err}", file=sys.stderr)
        return 2
    except StudyFailed as err:
        print(f"rotbook: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
