"""The benchmark as tables, and the issue's targets checked against the measured figures."""

from __future__ import annotations

from typing import Any

from lsfa.machine import cpu_label

TARGETS = {
    "inference_speedup": 6.0,
    "inference_f1_points": 0.3,
    "training_speedup": 3.0,
    "mfu": 0.5,
}
"""The targets of the speed issue: optimised inference >= 6x the reference recipe with test F1 within 0.3
points, optimised training >= 3x in tokens/s, and >= 50% of the bf16 matmul peak in optimised inference."""


def targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target with its measured value and whether it was met (None when not measured)."""
    inference = result.get("inference", {})
    training = result.get("training", {})
    speed = inference.get("speedup")
    f1_gap = inference.get("agreement", {}).get("f1_difference_points")
    train_speed = training.get("speedup")
    mfu = inference.get("mfu", {}).get("mfu")

    def check(value, target, at_least: bool = True) -> bool | None:
        if value is None:
            return None
        return value >= target if at_least else abs(value) <= target

    return {
        "inference_speedup": {"target": ">= 6x sentences/s", "value": speed,
                              "met": check(speed, TARGETS["inference_speedup"])},
        "inference_f1": {"target": "F1 optimised within 0.3 points of reference", "value": f1_gap,
                         "met": check(f1_gap, TARGETS["inference_f1_points"], at_least=False)},
        "training_speedup": {"target": ">= 3x tokens/s", "value": train_speed,
                             "met": check(train_speed, TARGETS["training_speedup"])},
        "training_f1": {"target": "dev F1 within 0.5 points on a short run", "value": None, "met": None,
                        "note": "lsfa bench does not train to convergence: compare two short `lsfa train` runs"},
        "mfu": {"target": ">= 50% of the bf16 matmul peak", "value": mfu, "met": check(mfu, TARGETS["mfu"])},
    }  # fmt: skip


def _num(value: Any, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{suffix}"
    return f"{value:,}{suffix}"


def _batches(row: dict[str, Any]) -> str:
    """A training recipe's batch plan: size, order and whether rows are padded or packed."""
    return f"{row['batch_size']}, {row['batch_order']}, {row.get('batching', 'padded')}"


def render_bench(result: dict[str, Any]):
    """Rich tables: machine, inference, latency, ablation, comparison, training and targets."""
    from rich.console import Group
    from rich.table import Table

    parts: list[Any] = []
    machine = result.get("machine", {})
    peak = result.get("peak", {})
    header = Table(title="lsfa bench", show_header=False, title_justify="left")
    model = result["model"]
    header.add_row("model", f"{model['dir']} ({model['base_model']}, attention {model['attention']})")
    header.add_row("data", f"{result['data']['corpus']}/{result['data']['split']}: {result['data']['sentences']:,} "
                   f"sentences, {result['data']['words']:,} words")  # fmt: skip
    cpu = f"{cpu_label(machine)} ({machine.get('cores')} cores)"
    header.add_row("machine", f"{cpu}, device {machine.get('device')}")
    bf16 = peak.get("bf16")
    header.add_row("matmul peak", f"fp32 {_num(peak['fp32']['gflops'])} GFLOP/s, "
                   f"bf16 {_num(bf16['gflops']) if bf16 else '-'} GFLOP/s")  # fmt: skip
    threads = result.get("threads", {})
    header.add_row("threads", f"reference {threads.get('reference')}, optimised {threads.get('optimised')} "
                   f"({threads.get('chosen_by')}; tried {threads.get('tried', {})})")  # fmt: skip
    parts.append(header)

    inference = result["inference"]
    table = Table(title="Inference throughput (same sentences, interleaved rounds)", title_justify="left")
    for column in ("variant", "batching", "precision", "sent/s", "words/s", "tokens/s", "seconds", "peak MiB"):
        table.add_column(column, justify="left" if column in ("variant", "batching", "precision") else "right")
    rows = [inference["reference"], inference["optimised"]]
    rows += [row for row in result.get("compare", {}).values() if "sentences_per_second" in row]
    for row in rows:
        table.add_row(row["name"], row.get("batching", row.get("note", "")), row.get("precision", "-"),
                      _num(row["sentences_per_second"]), _num(row["words_per_second"], 0),
                      _num(row.get("tokens_per_second"), 0), _num(row["seconds"], 2),
                      _num((row.get("memory") or {}).get("peak_mb"), 0))  # fmt: skip
    agreement = inference["agreement"]
    mfu = inference["mfu"]
    table.caption = (
        f"speed-up {inference['speedup']:.2f}x; identical tags {100 * (agreement['identical_tags'] or 0):.3f}%; "
        f"F1 reference {100 * agreement['f1']['reference']:.2f}, optimised {100 * agreement['f1']['optimised']:.2f}; "
        f"MFU {100 * (mfu['mfu'] or 0):.1f}% of {mfu['peak_used']} ({_num(mfu['achieved_gflops'])} GFLOP/s)"
    )
    table.caption_justify = "left"
    parts.append(table)

    latency = result["latency"]
    lat = Table(title="Latency per sentence at batch 1 (ms)", title_justify="left")
    for column in ("variant", "sentences", "mean ± std", "median", "p95"):
        lat.add_column(column)
    for name, row in latency.items():
        if isinstance(row, dict) and "mean_ms" in row:
            lat.add_row(name, str(row["sentences"]), f"{_num(row['mean_ms'], 1)} ± {_num(row['std_ms'], 1)}",
                        _num(row["median_ms"]), _num(row["p95_ms"]))  # fmt: skip
    lat.caption = f"speed-up {_num(latency.get('speedup'), 2)}x" + (f"; {latency['note']}" if "note" in latency else "")
    lat.caption_justify = "left"
    parts.append(lat)

    if result.get("ablation"):
        abl = Table(title="Each optimisation on top of the previous (sample)", title_justify="left")
        for column in ("step", "sent/s", "x reference"):
            abl.add_column(column)
        for row in result["ablation"]:
            if "skipped" in row:
                abl.add_row(row["name"], "skipped", row["skipped"])
            else:
                abl.add_row(row["name"], _num(row["sentences_per_second"]), _num(row["speedup_vs_reference"], 2))
        parts.append(abl)

    compare = result.get("compare")
    if compare:
        cmp = Table(title="Other systems (throughput ratio; > 1 means faster than lsfa)", title_justify="left")
        for column in ("system", "sent/s", "x lsfa optimised", "x lsfa reference", "note"):
            cmp.add_column(column)
        for name, row in compare.items():
            if "skipped" in row:
                cmp.add_row(name, "-", "-", "-", "skipped: " + row["skipped"])
            else:
                cmp.add_row(name, _num(row["sentences_per_second"]), _num(row["ratio_to_lsfa_optimised"], 2),
                            _num(row["ratio_to_lsfa_reference"], 2), row.get("note", ""))  # fmt: skip
        parts.append(cmp)

    training = result.get("training", {})
    if "skipped" in training:
        parts.append(f"training: skipped ({training['skipped']})")
    elif training:
        train = Table(title="Training throughput (fresh LoRA, same steps)", title_justify="left")
        for column in ("recipe", "precision", "batches", "steps", "tokens/s", "s/step", "padding", "peak MiB"):
            train.add_column(column)
        for key in ("reference", "optimised"):
            row = training[key]
            train.add_row(key, row["precision"], _batches(row), str(row["steps"]),
                          _num(row["tokens_per_second"], 0), _num(row["seconds_per_step"], 2),
                          _num(100 * (row["padding_share"] or 0), 0, "%"),
                          _num((row.get("memory") or {}).get("peak_mb"), 0))  # fmt: skip
        train.caption = f"speed-up {training['speedup']:.2f}x"
        train.caption_justify = "left"
        parts.append(train)

    goals = Table(title="Targets", title_justify="left")
    for column in ("target", "measured", "met"):
        goals.add_column(column)
    for name, row in result.get("targets", {}).items():
        value = row["value"]
        shown = "-" if value is None else (f"{100 * value:.1f}%" if name == "mfu" else f"{value:.2f}")
        met = {True: "yes", False: "NO", None: "not measured"}[row["met"]]
        goals.add_row(row["target"], shown, met)
    parts.append(goals)
    return Group(*parts)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(result: dict[str, Any], command: str | None = None) -> str:
    """The benchmark as a Markdown report (``docs/results/performance.md``): targets first, then the details."""
    machine = result.get("machine", {})
    inference, latency, peak = result["inference"], result["latency"], result["peak"]
    agreement, mfu = inference["agreement"], inference["mfu"]
    out = ["# Performance: `lsfa bench`", ""]
    out += [
        f"- command: `{command or result.get('command') or 'lsfa bench ...'}`",
        f"- date: {result.get('date')}; commit: `{machine.get('git_commit')}`",
        f"- machine: {cpu_label(machine)}, {machine.get('cores')} cores, device {machine.get('device')}; "
        f"torch {machine.get('torch')}, transformers {machine.get('transformers')}",
        f"- model: `{result['model']['dir']}` ({result['model']['base_model']}, attention "
        f"{result['model']['attention']}, {result['model']['weights']} weights)",
        f"- data: {result['data']['corpus']} {result['data']['split']}, {result['data']['sentences']:,} sentences, "
        f"{result['data']['words']:,} words; whole run {result.get('seconds', 0):.0f} s",
        "",
        "## Targets",
        "",
    ]
    rows = []
    for name, row in result.get("targets", {}).items():
        value = row["value"]
        shown = "-" if value is None else (f"{100 * value:.1f}%" if name == "mfu" else f"{value:.2f}")
        met = {True: "met", False: "**not met**", None: "not measured"}[row["met"]]
        rows.append([row["target"], shown, met + (f" ({row['note']})" if row.get("note") else "")])
    out += [_md_table(["target", "measured", "status"], rows), ""]

    out += ["## Inference", ""]
    rows = []
    systems = [inference["reference"], inference["optimised"]]
    systems += [row for row in result.get("compare", {}).values() if "sentences_per_second" in row]
    for row in systems:
        lat = latency.get(row["name"], {})
        shown = f"{lat['mean_ms']:.1f} ± {lat['std_ms']:.1f}" if lat.get("mean_ms") is not None else "-"
        rows.append([row["name"], row.get("note", ""), row.get("batching", "-"), _num(row["sentences_per_second"]),
                     _num(row["words_per_second"], 0), shown])  # fmt: skip
    out += [_md_table(["system", "setting", "batching", "sentences/s", "words/s", "ms/sentence at batch 1"], rows), ""]
    out += [
        f"- optimised / reference: **{inference['speedup']:.2f}x** sentences/s; latency at batch 1 "
        f"{_num(latency.get('speedup'), 2)}x ({latency['reference']['sentences']} sentences, mean ± std)",
        f"- predictions: {100 * (agreement['identical_tags'] or 0):.3f}% identical tags "
        f"({agreement['differing_tags']} of {agreement['words']:,} differ); strict F1 reference "
        f"{100 * agreement['f1']['reference']:.2f}, optimised {100 * agreement['f1']['optimised']:.2f} "
        f"({agreement['f1_difference_points']:+.2f} points)",
        f"- matmul peak: fp32 {_num(peak['fp32']['gflops'])} GFLOP/s, bf16 "
        f"{_num((peak.get('bf16') or {}).get('gflops'))} GFLOP/s ({peak['fp32']['size']}² matrices, "
        f"{peak['fp32']['threads']} threads)",
        f"- MFU of optimised inference: {100 * (mfu['mfu'] or 0):.1f}% of the {mfu['peak_used']} "
        f"({_num(mfu['achieved_gflops'])} GFLOP/s end to end, {100 * (mfu['mfu_forward_only'] or 0):.1f}% "
        f"counting model time only; {mfu['formula']}, {inference['non_embedding_parameters']:,} parameters)",
    ]
    threads = result.get("threads", {})
    out += [f"- threads: reference {threads.get('reference')}, optimised {threads.get('optimised')} "
            f"({threads.get('chosen_by')}; sentences/s by threads: {threads.get('tried', {})})", ""]  # fmt: skip
    for name, row in result.get("compare", {}).items():
        if "skipped" in row:
            out.append(f"- {name}: skipped ({row['skipped']})")
        else:
            ratios = f"{row['ratio_to_lsfa_optimised']:.2f}x lsfa optimised"
            ratios += f", {row['ratio_to_lsfa_reference']:.2f}x the reference recipe"
            out.append(f"- {name}: {ratios} ({row.get('note', '')})")
    if result.get("ablation"):
        out += ["", "### Each optimisation on top of the previous ones (sample)", ""]
        rows = [[row["name"], "skipped: " + row["skipped"], "-"] if "skipped" in row
                else [row["name"], _num(row["sentences_per_second"]), _num(row["speedup_vs_reference"], 2)]
                for row in result["ablation"]]  # fmt: skip
        out += [_md_table(["step", "sentences/s", "x reference"], rows)]
    training = result.get("training", {})
    out += ["", "## Training", ""]
    if "skipped" in training:
        out.append(f"skipped: {training['skipped']}")
    else:
        rows = [[key, row["precision"], _batches(row), str(row["steps"]),
                 _num(row["tokens_per_second"], 0), _num(100 * (row["padding_share"] or 0), 0, "%"),
                 _num((row.get("memory") or {}).get("peak_mb"), 0)]
                for key, row in ((k, training[k]) for k in ("reference", "optimised"))]  # fmt: skip
        header = ["recipe", "precision", "batch", "steps", "tokens/s", "padding", "peak RSS MiB"]
        out += [_md_table(header, rows), "", f"- optimised / reference: **{training['speedup']:.2f}x** tokens/s",
                f"- {training['model']}; {training['data']}"]  # fmt: skip
    memory = result.get("memory", {})
    peak_rss = _num(memory.get("process_peak_rss_mb"), 0)
    out += ["", f"Peak resident memory of the whole benchmark process: {peak_rss} MiB.", ""]
    return "\n".join(out)
