"""The training budget contract (``bench/methods/budget.py``, README "Training budget"): every registered
method's predicting network makes exactly U updates and every generator exactly G, as counted by the ledger
the runner stores in ``metrics["budget"]``."""

import json
import math

import numpy as np
import pytest
import torch

from bench.cell import CellEnv, run_cell
from bench.datasets import load_dataset
from bench.datasets.base import LoadOptions
from bench.grid import Preset, build_grid
from bench.methods import get_method, method_names
from bench.methods.budget import Budget, Ledger
from bench.methods.classifier import ClassifierCells, shuffled_batches
from bench.methods.registry import built_in_names

CPU = torch.device("cpu")
EPOCHS = 2
# Every built-in, from the registry: a new methods/<name>.py is checked here without being listed. What is
# asserted of each is asked of the method (its class, its parameters) or read from its cell, never its name.
BUILT_IN = built_in_names()


@pytest.fixture(scope="module", params=[8, 28], ids=["digits-8x8", "digits-28x28"])
def data(request):
    options = LoadOptions() if request.param == 8 else LoadOptions(image_size=request.param)
    return request.param, load_dataset("digits", split="train", options=options), \
        load_dataset("digits", split="test", options=options)


def _cell(method: str, size: int):
    config = Preset(name="t", methods=[method], datasets=["digits"], ratios=[0.1], seeds=1, pairs=[[3, 5]],
                       epochs=EPOCHS, image_size=None if size == 8 else size)
    return build_grid(config)[0]


def test_every_registered_method_is_checked():
    plugins = {name for name in method_names() if not get_method(name).__module__.startswith("bench.methods.")}
    assert set(BUILT_IN) == set(method_names()) - plugins
    assert {"imbalanced", "smote", "capsan", "gamo", "bagan-gp", "focal"} <= set(BUILT_IN)  # each kind of method


@pytest.mark.parametrize("method", BUILT_IN)
def test_every_method_spends_exactly_the_contract(method, data, tmp_path):
    size, train, test = data
    cell = _cell(method, size)
    row = run_cell(cell, train, test, CellEnv(CPU, tmp_path))
    assert row["status"] == "done", row["error"]
    counts = np.asarray(row["counts"]["train"])
    n_max, n_train = int(counts.max()), int(counts.sum())
    batch = 64
    u = EPOCHS * math.ceil(2 * n_max / batch)  # two classes, both present
    g = EPOCHS * math.ceil(n_train / batch)  # epoch_scale 1
    budget = row["metrics"]["budget"]
    roles = budget["roles"]
    assert roles["classifier"]["updates"] == u, roles
    assert budget["contract"]["classifier"] == u
    cls = get_method(method)
    if issubclass(cls, ClassifierCells):  # on the common classifier, which records the set it trained on
        (counts_file,) = tmp_path.rglob("training_counts.json")
        trained = json.loads(counts_file.read_text())
        if trained["after"] == trained["before"]:  # the imbalanced set, smaller than the balanced one: more passes
            assert roles["classifier"]["images"] > EPOCHS * n_train
    generator = roles.get("generator")
    if not hasattr(cls, "sample"):  # no generative model: no generator, and none in the contract
        assert generator is None and "generator" not in budget["contract"]
    else:
        assert generator["updates"] == generator["optimizers"] * g, roles
        assert budget["contract"]["generator"] == g
    params = cls().params
    if "n_critic" in params:  # n_critic critic updates per generator update, on top (dagan, bagan-gp)
        assert roles["critic"]["updates"] == params["n_critic"] * g
    if "ae_epochs" in params:  # the autoencoder's own budget (bagan, bagan-gp): by default as many epochs as the GAN
        assert params["ae_epochs"] is None and roles["autoencoder"]["updates"] == g
    if "decoder" in roles:  # one decoder per minority class (gamo's gamo2pix), G updates each
        assert roles["decoder"]["updates"] == roles["decoder"]["optimizers"] * g
    for entry in roles.values():
        assert entry["seconds"] >= 0 and entry["images"] >= entry["updates"]
    assert budget["fit_seconds"] > 0


def test_budget_numbers():
    budget = Budget.of([600, 60, 0], epochs=5)  # an absent class counts for nothing
    assert (budget.n_classes, budget.n_max, budget.n_train) == (2, 600, 660)
    assert budget.classifier_updates(64) == 5 * math.ceil(1200 / 64)
    assert budget.generator_updates(1.0, 64) == 5 * math.ceil(660 / 64)
    assert budget.generator_updates(0.5, 64) == round(2.5) * math.ceil(660 / 64)
    assert budget.generator_epochs(0.01) == 1


def test_the_ledger_counts_the_steps_it_makes_and_refuses_unknown_roles():
    ledger = Ledger()
    net = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    before = net.weight.detach().clone()
    with ledger.phase("classifier"):
        for _ in range(3):
            ledger.update("classifier", optimizer, net(torch.ones(4, 2)).sum(), 4)
    assert not torch.equal(before, net.weight)  # the step really stepped
    record = ledger.record()
    assert record == {"classifier": {"updates": 3, "optimizers": 1, "images": 12,
                                     "seconds": record["classifier"]["seconds"]}}
    with pytest.raises(ValueError, match="unknown network role"):
        ledger.update("teacher", optimizer, net(torch.ones(1, 2)).sum(), 1)


def test_shuffled_batches_run_on_over_passes():
    stream = shuffled_batches(5, 2, torch.Generator().manual_seed(0), CPU)
    batches = [next(stream) for _ in range(6)]
    assert [len(b) for b in batches] == [2, 2, 1, 2, 2, 1]
    assert sorted(torch.cat(batches[:3]).tolist()) == [0, 1, 2, 3, 4]  # every pass is a permutation


@pytest.mark.parametrize("method,params", [("capsan", {"epoch_scale": 3.0}), ("gamo", {"epoch_scale": 3.0})])
def test_a_generator_budget_above_the_classifiers_is_refused(method, params, tmp_path):
    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    config = Preset(name="t", methods=[method], datasets=["digits"], ratios=[0.5], seeds=1, pairs=[[3, 5]],
                       epochs=EPOCHS, method_params={method: params})
    row = run_cell(build_grid(config)[0], train, test, CellEnv(CPU, tmp_path))
    assert row["status"] == "failed" and "more than" in row["error"] and "lower epoch_scale" in row["error"]


def test_presets_do_not_special_case_a_method():
    from bench.grid import load_preset, preset_names

    for name in preset_names():
        config = load_preset(name)
        for method, params in config.method_params.items():
            assert "epoch_scale" not in params, (name, method)
    assert get_method("capsan").defaults["epoch_scale"] == 1.0


def test_gamo_paper_schedule_is_its_own_label_and_shows_off_contract(tmp_path):
    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    config = Preset(name="t", methods=["gamo"], datasets=["digits"], ratios=[0.1], seeds=1, pairs=[[3, 5]],
                       epochs=1, method_params={"gamo": {"schedule": "paper"}})
    cell = build_grid(config)[0]
    assert cell.variant == "gamo[schedule=paper]"
    row = run_cell(cell, train, test, CellEnv(CPU, tmp_path))
    assert row["status"] == "done" and row["method"] == "gamo[schedule=paper]"
    g = math.ceil(sum(row["counts"]["train"]) / 64)
    assert row["metrics"]["budget"]["roles"]["classifier"]["updates"] == 3 * g  # F pass + two M updates a step
    with pytest.raises(ValueError, match="schedule must be one of"):
        get_method("gamo")(schedule="fast")


PAPER = {"acgan": {"batch_size": 100, "gan_iterations": 50_000}, "dagan": {"batch_size": 32, "gan_epochs": 200},
         "bagan": {"batch_size": 32, "gan_epochs": 150}}


@pytest.mark.parametrize("method", sorted(PAPER))
def test_paper_schedule_applies_the_papers_overrides_and_an_explicit_parameter_wins(method):
    cls = get_method(method)
    paper = cls(schedule="paper")
    assert {k: paper.params[k] for k in PAPER[method]} == PAPER[method]
    assert paper.contract_batch == 64  # the contract's G is still counted at the contract's batch
    mine = cls(schedule="paper", batch_size=48)
    assert mine.params["batch_size"] == 48 and mine.contract_batch == 48
    contract = cls().key_params()
    # the default schedule stays out of the key, so stores made before the parameter existed still resume
    assert "schedule" not in contract and "gan_iterations" not in contract
    assert paper.key_params()["schedule"] == "paper" and paper.key_params() != contract


def test_a_method_whose_paper_has_no_schedule_refuses_it():
    with pytest.raises(ValueError, match="prescribes no training schedule"):
        get_method("gan")(schedule="paper")
    with pytest.raises(ValueError, match="schedule must be one of contract, paper; got 'fast'"):
        get_method("dagan")(schedule="fast")


def test_gan_iterations_round_to_whole_epochs():
    acgan = get_method("acgan")
    assert acgan(gan_iterations=10).gan_epochs(5, 3) == 3  # 10 / 3 steps: 3 epochs, 9 updates
    assert acgan(gan_iterations=1).gan_epochs(5, 3) == 1  # at least one epoch
    assert acgan(gan_iterations=10, gan_epochs=2).gan_epochs(5, 3) == 2  # an explicit gan_epochs wins
    assert acgan(schedule="paper").gan_epochs(5, math.ceil(6744 / 100)) == 735  # binary MNIST: 49,980 updates


@pytest.mark.parametrize("method", ["dagan", "acgan"])
def test_paper_schedule_is_its_own_label_and_its_ledger_shows_the_papers_batch(method, tmp_path):
    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    short = {"dagan": {"gan_epochs": 1}, "acgan": {"gan_iterations": 5}}[method]  # the paper's batch, fewer steps
    config = Preset(name="t", methods=[method], datasets=["digits"], ratios=[0.1], seeds=1, pairs=[[3, 5]],
                       epochs=1, method_params={method: {"schedule": "paper", **short}})
    cell = build_grid(config)[0]
    assert cell.variant == f"{method}[schedule=paper]"
    row = run_cell(cell, train, test, CellEnv(CPU, tmp_path))
    assert row["status"] == "done" and row["method"] == f"{method}[schedule=paper]", row["error"]
    n_train = sum(row["counts"]["train"])
    batch = PAPER[method]["batch_size"]
    steps = math.ceil(n_train / batch)
    epochs = 1 if method == "dagan" else max(1, round(5 / steps))
    budget = row["metrics"]["budget"]
    assert budget["roles"]["generator"]["updates"] == epochs * steps
    assert budget["contract"]["generator"] == math.ceil(n_train / 64)  # the contract's G, one epoch
    if method == "dagan":  # pairs are drawn, so every batch is full-size
        assert budget["roles"]["generator"]["images"] == epochs * steps * batch
        assert budget["roles"]["critic"]["updates"] == 5 * epochs * steps
