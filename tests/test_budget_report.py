"""The report's view of the budget ledgers: budget.csv / budget.md, the note under Table 3 when the
predicting networks trained unequally, the HTML "Budget" section, the paper-column sentences."""

from __future__ import annotations

import pandas as pd

from bench.reports import table3_text
from bench.reports.budget import budget_note, budget_table, render_budget_markdown
from bench.reports.report import write_all
from bench.store import Store


def ledger(classifier: int, generator: int | None = None, k: int = 1, seconds: float = 2.0) -> dict:
    roles = {"classifier": {"updates": classifier, "optimizers": 1, "images": 64 * classifier, "seconds": 1.0}}
    contract = {"classifier": classifier}
    if generator is not None:
        roles["generator"] = {"updates": generator * k, "optimizers": k, "images": 64 * generator * k,
                              "seconds": 1.0}
        contract["generator"] = generator
    return {"roles": roles, "contract": contract, "fit_seconds": seconds}


def row(n: int, method: str, seed: int, budget: dict | None, ratio: float = 0.1, dataset: str = "mnist") -> dict:
    metrics = {"precision": 0.5, "recall": 0.5, "accuracy": 0.9, "f_measure": 0.5, "g_mean": 0.8 + seed / 100,
               "balanced_accuracy": 0.8, "roc_auc": 0.9}
    if budget is not None:
        metrics["budget"] = budget
    return {"key": f"k{n}", "method": method, "params": {}, "dataset": dataset, "protocol": "binary",
            "pair": [3, 5], "ratio": ratio, "seed": seed, "epochs": 5, "counts": {}, "status": "done",
            "metrics": metrics, "error": None, "started_at": "2024-01-01T00:00:00",
            "finished_at": "2024-01-01T00:00:01", "duration_s": 1.0, "device": "cpu", "versions": {}}


def store(folder, rows) -> pd.DataFrame:
    with Store(folder) as s:
        for r in rows:
            s.add(r)
    with Store(folder, create=False) as s:
        return s.cells()


def test_equal_budgets_give_a_table_and_no_note(tmp_path):
    cells = store(tmp_path / "r", [row(1, "imbalanced", 0, ledger(960)), row(2, "gan", 0, ledger(960, 530, k=1)),
                                   row(3, "gan", 1, ledger(960, 530, k=1, seconds=4.0)),
                                   row(4, "gamo", 0, ledger(960, 530, k=2))])
    table = budget_table(cells).set_index("method")
    assert table.loc["gan", "classifier_updates"] == 960 and table.loc["gan", "cells"] == 2
    assert table.loc["gan", "fit_seconds"] == 3.0  # the median of 2 and 4
    assert table.loc["gamo", "generator_updates"] == 530 and table.loc["gamo", "generator_optimizers"] == 2
    assert budget_note(cells) == ""
    md = render_budget_markdown(budget_table(cells))
    assert "## mnist" in md and "530 x 2" in md and "| imbalanced | 1 " in md


def test_unequal_predicting_networks_are_named_under_table3(tmp_path):
    cells = store(tmp_path / "r", [row(1, "imbalanced", 0, ledger(960)), row(2, "capsan", 0, ledger(1490, 530)),
                                   row(3, "smote", 0, ledger(965))])  # 965 is within 1 % of 960
    note = budget_note(cells)
    assert "ratio 0.1" in note and "capsan 1490" in note and "imbalanced 960" in note and "budget.md" in note
    written, _ = write_all(tmp_path / "r", tmp_path / "out", formats=("md", "csv", "html"), figures=())
    names = {p.name for p in written}
    assert {"budget.md", "budget.csv", "report.html"} <= names
    assert note in (tmp_path / "out" / "table3.md").read_text()
    assert pd.read_csv(tmp_path / "out" / "budget.csv").set_index("method").loc["capsan", "classifier_updates"] == 1490
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<h2>Training budget</h2>" in page and "1490" in page


def test_cells_without_a_ledger_are_named(tmp_path):
    cells = store(tmp_path / "r", [row(1, "imbalanced", 0, None), row(2, "smote", 0, ledger(960))])
    assert "cells of imbalanced carry no budget ledger" in budget_note(cells)
    assert budget_table(cells).set_index("method").loc["imbalanced", "with_ledger"] == 0


def test_paper_columns_carry_the_positive_class_sentence_and_no_brackets_in_the_terminal(tmp_path):
    # ratio 0.1 on MNIST: the paper has imbalanced and smote there
    cells = store(tmp_path / "r", [row(1, "imbalanced", 0, ledger(960)), row(2, "smote", 0, ledger(960))])
    text = table3_text(cells)
    assert "the paper's values" in text  # a table of their own
    assert "[" not in text  # brackets hold confidence intervals, which the terminal table does not show
    assert "the paper does not state which class" in " ".join(text.split())
    write_all(tmp_path / "r", tmp_path / "out", formats=("md",), figures=())
    assert "Positive class: ours is the minority class" in (tmp_path / "out" / "table3.md").read_text()


def test_export_flattens_the_ledger_into_columns(tmp_path):
    from bench.reports.export import cells_table

    cells = store(tmp_path / "r", [row(1, "gamo", 0, ledger(960, 530, k=2)), row(2, "imbalanced", 0, None)])
    table = cells_table(cells).set_index("method")
    assert table.loc["gamo", "budget_classifier_updates"] == 960
    assert table.loc["gamo", "budget_generator_updates"] == 1060 and table.loc["gamo", "budget_generator_optimizers"] == 2
    assert table.loc["gamo", "budget_fit_seconds"] == 2.0
    assert pd.isna(table.loc["imbalanced", "budget_classifier_updates"])  # stored without a ledger
