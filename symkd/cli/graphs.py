"""``symkd export`` and ``symkd stats``: the curated knowledge graph as files and numbers.

    symkd export --db run.db --format graphml --out graphs/kg.graphml --critics rules --min-score 0.5
    symkd export --db run.db --format prompt-completion --out train.jsonl --critics rules
    symkd stats --db run.db --plot graphs/kg-stats.png
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from symkd.errors import UserError

_DB = typer.Option(..., "--db", help="SQLite run database (read only; never created)")
_CRITIC = typer.Option(None, "--critics", help="keep triples these critics kept (repeatable or comma list)")
_MIN_SCORE = typer.Option(None, "--min-score", help="keep triples scored >= X by each of --critics (instead of its decision)")
_RELATIONS = typer.Option(None, "--relations", help="comma list of relations or groups (social, event, physical)")
_INCLUDE_NONE = typer.Option(False, "--include-none", help='add "none" tails as edges to one node t:none')


def selection(critic: Optional[List[str]], min_score: Optional[float], relations: Optional[str], include_none: bool):
    """The CLI options as a :class:`symkd.graphs.Selection` (unknown relations fail here)."""
    from symkd.graphs.relations import parse_relations
    from symkd.graphs import Selection

    critics = tuple(dict.fromkeys(c.strip() for v in critic or [] for c in v.split(",") if c.strip()))
    rels = tuple(parse_relations(relations)) if relations else ()
    return Selection(critics=critics, min_score=min_score, relations=rels, include_none=include_none)


def export_cmd(
    db: Path = _DB,
    fmt: str = typer.Option(..., "--format", "-f", help="graphml | gexf | json | tsv | neo4j | html | parquet | chat-jsonl | prompt-completion"),
    out: Path = typer.Option(..., "--out", "-o", help="file to write (a folder for neo4j; - for standard output)"),
    critic: Optional[List[str]] = _CRITIC,
    min_score: Optional[float] = _MIN_SCORE,
    relations: Optional[str] = _RELATIONS,
    include_none: bool = _INCLUDE_NONE,
    sample: int = typer.Option(300, "--preview-nodes", help="nodes in the html preview (top hubs and neighbours)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Export the curated knowledge graph, or its triples as a dataset (written atomically)."""
    import time

    from symkd.graphs import FORMATS, export, open_store
    from symkd.graphs.export import check_out
    from symkd.jsonio import check_writable, is_stdout
    from symkd.pipelines.commonsense import datasets

    if fmt not in FORMATS and fmt not in datasets.FORMATS:
        raise UserError(f"--format {fmt!r}: unknown format; known: {', '.join([*FORMATS, *datasets.FORMATS])}")
    if fmt in FORMATS:
        check_out(FORMATS[fmt], out)
    else:
        check_writable(out)
    if sample < 1:
        raise UserError(f"--preview-nodes must be at least 1 (got {sample})")
    sel = selection(critic, min_score, relations, include_none)
    started = time.monotonic()
    with open_store(db) as store:
        if fmt in FORMATS:
            summary = export(store, fmt, out, sel, sample=sample, progress=not quiet)
        else:
            summary = {**datasets.FORMATS[fmt](store, sel, out), "seconds": round(time.monotonic() - started, 3)}
    to_err = is_stdout(out)  # the export itself is on stdout: the summary goes to stderr
    if as_json:
        typer.echo(json.dumps(summary), err=to_err)
        return
    counts = ", ".join(f"{summary[k]} {k}" for k in ("nodes", "edges", "lines", "triples") if k in summary)
    typer.echo(f"{fmt}: {counts} -> {', '.join(summary['files'])} ({summary['seconds']:.1f}s)", err=to_err)


def stats_cmd(
    db: Path = _DB,
    critic: Optional[List[str]] = _CRITIC,
    min_score: Optional[float] = _MIN_SCORE,
    relations: Optional[str] = _RELATIONS,
    include_none: bool = _INCLUDE_NONE,
    top: int = typer.Option(20, "--top", help="hubs to list"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="also write a PNG (relations bar chart, degree log-log)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print the statistics as JSON"),
) -> None:
    """Counts per relation and critic decision, degree distribution, top hubs."""
    from symkd.graphs import graph_stats, open_store, plot_stats

    if plot is not None:
        from symkd.jsonio import check_writable

        check_writable(plot)
    sel = selection(critic, min_score, relations, include_none)
    with open_store(db) as store:
        stats = graph_stats(store, sel, top=top, progress=not quiet)
    if plot is not None:
        plot_stats(stats, plot)
    if as_json:
        from symkd.jsonio import dumps

        typer.echo(dumps(stats))
        return
    _print_stats(stats, plot)


def _print_stats(stats: dict, plot: Optional[Path]) -> None:
    from symkd.commandline import console
    from rich.markup import escape as markup
    from rich.table import Table

    from symkd.safetext import shown

    def escape(text: str, limit: int = 80) -> str:  # triples are model text: controls as escapes, cut
        return markup(shown(text, limit))

    console = console()
    deg = stats["degree"]
    console.print(
        f"{stats['triples']:,} triples ({stats['none_triples']:,} none) -> {stats['nodes']:,} nodes, {stats['edges']:,} edges; "
        f"degree mean {deg['mean']}, median {deg['median']}, max {deg['max']}, isolated {deg['isolated']}; {escape(stats['selection'], 300)}"
    )
    table = Table("relation", "triples", "none")
    for rel, row in stats["relations"].items():
        table.add_row(escape(rel), str(row["triples"]), str(row["none"]))
    console.print(table)
    if stats["critics"]:
        table = Table("critic", "version", "keep", "drop", "unscored")
        for name, row in stats["critics"].items():
            table.add_row(escape(name), escape(str(row["version"])), str(row["keep"]), str(row["drop"]), str(row["unscored"]))
        console.print(table)
    table = Table("hub", "type", "degree", "out", "in", "id")
    for hub in stats["hubs"]:
        table.add_row(escape(hub["label"]), escape(str(hub["type"])), str(hub["degree"]), str(hub["out"]), str(hub["in"]), hub["id"])
    console.print(table)
    if plot is not None:
        console.print(f"plot -> {escape(str(plot), 300)}")


def register(app: typer.Typer) -> None:
    """Add the top-level ``export`` and ``stats`` commands."""
    app.command("export")(export_cmd)
    app.command("stats")(stats_cmd)
