"""What each method spent: the budget ledgers of the stored cells (``metrics["budget"]``, the tidy table's
``budget`` column, written by the runner from ``bench.methods.budget.Ledger``), as ``budget.csv`` / ``budget.md`` and as a note under Table 3.

``budget_table``: one row per (dataset, method): the done cells, how many of them carry a ledger (cells
stored before the budget contract carry none), the median optimiser updates of every network role over
the cells (the predicting network is always ``classifier``; a role trained by several optimisers, e.g.
``gan``'s one generator per minority class, shows the median per optimiser and, in
``<role>_optimizers``, how many), the median contract targets U and G, and the median seconds per cell of
the whole fit and of each role's phases.
``budget_note``: one line for a Table 3 whose methods' predicting networks made updates that differ by
more than ``TOLERANCE`` within one (ratio, pair), naming the methods.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .cells import as_cells

TOLERANCE = 0.01  # relative spread of the predicting networks' median updates that the note flags
# The ledger's network roles (``bench.methods.budget.ROLES``; reports read the store, not the methods).
ROLES = ("classifier", "generator", "discriminator", "critic", "autoencoder", "decoder")
PER_OPTIMIZER = ("generator", "decoder")  # roles whose contract is per optimiser (one network each)


def _ledger(budget) -> dict | None:
    return budget if isinstance(budget, dict) and isinstance(budget.get("roles"), dict) else None


def ledger_rows(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per done cell: dataset, protocol, ratio, pair, seed, method, has_ledger, and per role
    ``<role>_updates`` (per optimiser for ``PER_OPTIMIZER`` roles), ``<role>_optimizers``,
    ``<role>_seconds``, plus ``contract_classifier``, ``contract_generator`` and ``fit_seconds``."""
    finished = as_cells(cells).done
    if finished.empty:
        return pd.DataFrame()
    rows = []
    for _, cell in finished.iterrows():
        ledger = _ledger(cell["budget"])
        row = {"dataset": cell["dataset"], "protocol": cell["protocol"], "ratio": round(float(cell["ratio"]), 10),
               "pair": str(cell["pair"]), "seed": cell["seed"], "method": cell["method"],
               "has_ledger": ledger is not None}
        if ledger:
            for role, entry in ledger["roles"].items():
                share = max(1, entry["optimizers"]) if role in PER_OPTIMIZER else 1
                row[f"{role}_updates"] = entry["updates"] / share
                row[f"{role}_optimizers"] = entry["optimizers"]
                row[f"{role}_seconds"] = entry["seconds"]
            for role, target in ledger.get("contract", {}).items():
                row[f"contract_{role}"] = target
            row["fit_seconds"] = ledger.get("fit_seconds")
        rows.append(row)
    return pd.DataFrame(rows)


def budget_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, method): cells, cells with a ledger, and the medians described in the module docstring."""
    rows = ledger_rows(cells)
    if rows.empty:
        return pd.DataFrame(columns=["dataset", "method", "cells", "with_ledger"])
    numeric = [c for c in rows.columns if c.endswith(("_updates", "_optimizers", "_seconds"))
               or c.startswith("contract_")]
    grouped = rows.groupby(["dataset", "method"], sort=True)
    table = grouped[numeric].median()
    table.insert(0, "with_ledger", grouped["has_ledger"].sum().astype(int))
    table.insert(0, "cells", grouped.size())
    order = ["cells", "with_ledger"]
    for role in ROLES:
        order += [c for c in (f"{role}_updates", f"{role}_optimizers") if c in table]
    order += [c for c in ("contract_classifier", "contract_generator", "fit_seconds") if c in table]
    order += [f"{role}_seconds" for role in ROLES if f"{role}_seconds" in table]
    return table[order].reset_index()


def _count(value) -> str:
    if pd.isna(value):
        return "-"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def render_budget_markdown(table: pd.DataFrame) -> str:
    """``budget.md``: per dataset, one row per method: updates per role, the contract's U and G, seconds."""
    lines = ["# Training budget", "",
             "Median over each method's done cells: optimiser updates per network role (README, \"Training budget\"; "
             "the predicting network is `classifier` in every method; generators and decoders per optimiser, "
             "x k when a cell trains k of them), the contract's U (classifier) and G (generator), and seconds per cell.",
             ""]
    if table.empty:
        return "\n".join(lines + ["No done cells in the store yet.", ""])
    roles = [r for r in ROLES if f"{r}_updates" in table]
    for dataset, group in table.groupby("dataset", sort=False):
        headers = ["method", "cells"] + roles + ["U", "G", "fit s"]
        body = []
        for _, row in group.iterrows():
            cells = [str(row["method"]), f"{row['cells']}" + ("" if row["with_ledger"] == row["cells"]
                                                                else f" ({row['with_ledger']} with a ledger)")]
            for role in roles:
                text = _count(row[f"{role}_updates"])
                k = row.get(f"{role}_optimizers")
                if role in PER_OPTIMIZER and not pd.isna(k) and k > 1:
                    text += f" x {_count(k)}"
                cells.append(text)
            cells += [_count(row.get("contract_classifier", np.nan)), _count(row.get("contract_generator", np.nan)),
                      "-" if pd.isna(row.get("fit_seconds", np.nan)) else f"{row['fit_seconds']:.1f}"]
            body.append(cells)
        frame = pd.DataFrame(body, columns=headers)
        lines += [f"## {dataset}", "", frame.to_markdown(index=False, disable_numparse=True), ""]
    return "\n".join(lines)


def budget_note(cells: pd.DataFrame) -> str:
    """One line when the predicting networks' median updates differ by more than ``TOLERANCE`` at some
    (ratio, pair) of ``cells`` (one Table 3's), naming the methods; cells without a ledger are named too;
    "" when the budgets agree."""
    rows = ledger_rows(cells)
    if rows.empty:
        return ""
    parts = []
    missing = sorted(set(rows.loc[~rows["has_ledger"], "method"]))
    if missing:
        parts.append(f"cells of {', '.join(missing)} carry no budget ledger (stored before the budget contract)")
    if "classifier_updates" in rows:
        medians = rows.dropna(subset=["classifier_updates"]).groupby(["ratio", "pair", "method"])[
            "classifier_updates"].median()
        unequal = []
        for (ratio, _pair), group in medians.groupby(level=["ratio", "pair"], sort=False):
            low, high = group.min(), group.max()
            if low > 0 and (high - low) / low > TOLERANCE:
                unequal.append((ratio, group.droplevel(["ratio", "pair"])))
        if unequal:
            ratio, group = unequal[0]
            listed = ", ".join(f"{m} {_count(v)}" for m, v in group.sort_values().items())
            more = f" (and at {len(unequal) - 1} other ratio/pair rows)" if len(unequal) > 1 else ""
            parts.append(f"the predicting networks' updates differ by more than {TOLERANCE:.0%} at ratio "
                         f"{ratio:g}: {listed}{more}")
    return ("Unequal budgets: " + "; ".join(parts) + "; see budget.md.") if parts else ""
