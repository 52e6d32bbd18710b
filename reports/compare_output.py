"""``bench compare``'s output: a terminal table, Markdown to paste in a pull request, or JSON for a script."""

from __future__ import annotations

import json
import math

from tabulate import tabulate

from .compare import FAILING, Comparison

FORMATS = ("text", "md", "json")
SHOWN_CELLS = 10  # cells on one side only listed by name; the rest counted


def render(result: Comparison, fmt: str, results: str, against: str) -> str:
    if fmt == "json":
        return _json(result, results, against)
    table_format = "github" if fmt == "md" else "simple"
    title = f"bench compare: {results} against {against}"
    lines = [f"## {title}" if fmt == "md" else title, "", summary_line(result), result.setting + ".", ""]
    lines += _one_side(result.only_old, "in the reference only (missing here)", fmt)
    lines += _one_side(result.only_new, "in this run only (new)", fmt)
    if result.rekeyed:
        bullet = "- " if fmt == "md" else "  "
        lines.append(f"{len(result.rekeyed)} missing cell(s) are here under a new key (the same task, changed "
                     "parameters):")
        for label, params, changes in result.rekeyed[:SHOWN_CELLS]:
            moved = "; ".join(f"{m} {_value(a)} -> {_value(b)}" for m, a, b in changes)
            lines.append(f"{bullet}{label}: {', '.join(params)}" + (f"; {moved}" if moved else ""))
        lines.append("")
    if len(result.rows):
        shown = result.rows.assign(ratio=result.rows["ratio"].map(lambda r: f"{r:g}"),
                                   old=result.rows["old"].map(_value), new=result.rows["new"].map(_value),
                                   diff=result.rows["diff"].map(_signed), max_abs_diff=result.rows["max_abs_diff"].map(_value),
                                   spread=result.rows["spread"].map(lambda x: "-" if math.isnan(x) else f"±{x:.4f}"),
                                   p_value=result.rows["p_value"].map(lambda p: "-" if math.isnan(p) else f"{p:.3g}"))
        if fmt == "md":  # what changed first catches the reviewer's eye
            shown = shown.assign(verdict=[f"**{v}**" if v in FAILING else v for v in shown["verdict"]])
        lines += [tabulate(shown.rename(columns={"max_abs_diff": "max |diff|", "spread": "spread (95 %)",
                                                 "p_value": "p (Wilcoxon)"}),
                           headers="keys", showindex=False, tablefmt=table_format, disable_numparse=True), ""]
    where = " in changed rows" if result.by_row else ""
    lines += _cells(result.moved, f"value(s) beyond the tolerance ({result.tolerance:g}){where}, largest first:", fmt)
    lines += _cells(result.unstable, f"unstable value(s): beyond the tolerance ({result.tolerance:g}) in a row that "
                    "is not changed (knife-edge cells across device kinds; they do not fail), largest first:", fmt)
    timed = result.time[result.time["time_ratio"].notna()]
    if len(timed):
        seconds = lambda s: f"{s:.2f}"  # noqa: E731
        shown = timed.assign(ratio=timed["ratio"].map(lambda r: f"{r:g}"), old_s=timed["old_s"].map(seconds),
                             new_s=timed["new_s"].map(seconds), time_ratio=[f"{r:.2f}x" for r in timed["time_ratio"]])
        lines += ["Fit seconds (the budget ledger's, summed over the matched cells; machines differ, so time fails "
                  "only with --time-tolerance):", "",
                  tabulate(shown.rename(columns={"time_ratio": "new / old"}), headers="keys", showindex=False,
                           tablefmt=table_format, disable_numparse=True), ""]
    return "\n".join(lines).rstrip() + "\n"


def summary_line(result: Comparison) -> str:
    counts = result.counts
    verdicts = ", ".join(f"{counts[v]} {v}" for v in ("same", "within", "changed", "missing", "new"))
    slower = f", {counts['slower']} slower" if counts["slower"] else ""
    unstable = f"; {len(result.unstable)} unstable cell value(s)" if result.unstable else ""
    return (f"{result.matched} cells matched by key, {len(result.only_old)} in the reference only, "
            f"{len(result.only_new)} in this run only. Rows x metrics: {verdicts}{slower}{unstable}.")


def _cells(cells: list, what: str, fmt: str) -> list[str]:
    """Cell values (key, label, metric, old, new) under a heading, the first ``SHOWN_CELLS`` named."""
    if not cells:
        return []
    bullet = "- " if fmt == "md" else "  "
    lines = [f"{len(cells)} {what}"]
    lines += [f"{bullet}{label}: {metric} {_value(a)} -> {_value(b)} ({_signed(b - a)}) ({key[:12]})"
              for key, label, metric, a, b in cells[:SHOWN_CELLS]]
    if len(cells) > SHOWN_CELLS:
        lines.append(f"{bullet}... and {len(cells) - SHOWN_CELLS} more")
    return lines + [""]


def _one_side(cells: list, what: str, fmt: str) -> list[str]:
    if not cells:
        return []
    bullet = "- " if fmt == "md" else "  "
    lines = [f"{len(cells)} cell(s) {what}:"]
    lines += [f"{bullet}{label} ({key[:12]})" for key, label in cells[:SHOWN_CELLS]]
    if len(cells) > SHOWN_CELLS:
        lines.append(f"{bullet}... and {len(cells) - SHOWN_CELLS} more")
    return lines + [""]


def _value(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _signed(x) -> str:
    """A difference, readable at every size: a last-bit change must not print as +0.0000."""
    if x is None or math.isnan(x):
        return "-"
    if x == 0 or abs(x) >= 1e-4:
        return f"{x:+.4f}"
    return f"{x:+.1e}"


def _json(result: Comparison, results: str, against: str) -> str:
    def records(frame):
        return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                for row in frame.to_dict("records")]

    document = {"results": results, "against": against, "setting": result.setting, "tolerance": result.tolerance,
                "rule": "row" if result.by_row else "cell",
                "matched": result.matched, "counts": result.counts, "failed": result.failed,
                "only_reference": [{"key": k, "cell": label} for k, label in result.only_old],
                "only_results": [{"key": k, "cell": label} for k, label in result.only_new],
                "moved": [{"key": k, "cell": label, "metric": m, "old": a, "new": b}
                          for k, label, m, a, b in result.moved],
                "unstable": [{"key": k, "cell": label, "metric": m, "old": a, "new": b}
                             for k, label, m, a, b in result.unstable],
                "rekeyed": [{"cell": label, "parameters": params, "metrics": {m: [a, b] for m, a, b in changes}}
                            for label, params, changes in result.rekeyed],
                "rows": records(result.rows), "time": records(result.time)}
    return json.dumps(document, indent=1) + "\n"
