"""Presets and the grid: which cells a run contains, and the key that identifies each cell.

A preset is a TOML data file (``bench/presets/<name>.toml``, or any path ending in ``.toml``) naming
methods, datasets, protocol, imbalance ratios, number of seeds, class pairs and the training budget; the
CLI's explicit options override it. The grid is the product dataset x seed x ratio x pair x method, in
that nesting, so a stopped run has whole seeds of results to show.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from bench.datasets import get_dataset_info
from bench.datasets.base import check_image_size
from bench.datasets.imbalance import (
    MULTICLASS,
    PROTOCOLS,
    TEST_CHOICES,
    all_pairs,
    fixed_ratio,
    protocol_key_options,
    validate_pair,
    validate_ratio,
    validate_size,
)
from bench.errors import BenchError
from bench.methods import get_method
from bench.methods.base import check_run_settings
from bench.quality import parse_quality

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CELL_KEY_VERSION = 1  # bump when the meaning of a key's fields changes


@dataclass(frozen=True)
class Preset:
    """What a run contains: a preset file's settings with the user's overrides applied
    (``dataclasses.replace(preset, seeds=2)``); ``bench.config.RunConfig`` adds where and how it runs."""

    name: str
    description: str = ""
    methods: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    protocol: str = "binary"
    ratios: list[float] = field(default_factory=list)
    seeds: int = 1
    pairs: str | list = "default"  # "default", "all", or a list of [majority, minority]
    epochs: int | dict = 1  # an int, or {dataset: epochs, "default": epochs}
    method_params: dict = field(default_factory=dict)  # {method: {parameter: value}}
    image_size: int | None = None  # resize every dataset to this square size (None: its own)
    celeba_attr: str | None = None  # CelebA's label task: an attribute name or "hair" (None: the default)
    # "balanced" (the test split as the dataset gives it), "train" (the test set follows the training
    # distribution), or a list of both: every cell then runs once per test set (the validation presets)
    test_distribution: str | list = "balanced"
    metrics: list = field(default_factory=list)  # generative quality computed per cell: "ssim", "fid"
    sizes: list = field(default_factory=list)  # training-set sizes of the "subset" protocol (Table 1)
    # {method: {parameter: [values]}}: the product of the values forms one variant of the method per
    # combination (benchopt style), reported as e.g. "capsan[phi=0.5]" (the paper's Figure 7 phi sweep).
    # {method: [{...}, {...}]}: the union of several such products (one-at-a-time ablations, Figure 6);
    # variants with the same parameters run once, under the first label.
    sweep: dict = field(default_factory=dict)
    precision: str = "fp32"  # "bf16": forward passes and losses under bf16 autocast (every torch method)
    compile: str | None = None  # a torch.compile mode for the training networks; None = eager

    def test_sets(self) -> list[str]:
        """The test sets to run, validated: a list even when one is given."""
        tests = [self.test_distribution] if isinstance(self.test_distribution, str) else list(self.test_distribution)
        bad = [t for t in tests if t not in TEST_CHOICES]
        if bad or not tests:
            raise BenchError(f"unknown test set {', '.join(map(repr, bad)) or 'none'}; valid: {', '.join(TEST_CHOICES)}"
                             " (or both, comma-separated)")
        if len(set(tests)) != len(tests):
            raise BenchError(f"a test set is listed twice in {tests}; list each once")
        return tests

    def data_options(self, dataset: str, test: str | None = None) -> dict:
        """What, besides the protocol, changes a dataset's images or labels: part of its cells' keys.
        ``test``: the cell's test set (default: the run's, when it names one)."""
        if test is None:
            tests = self.test_sets()
            if len(tests) > 1:
                raise BenchError(f"the run has {len(tests)} test sets; give the cell's one")
            test = tests[0]
        options = {}
        if self.image_size is not None:
            options["image_size"] = int(self.image_size)
        if self.celeba_attr is not None and dataset == "celeba":
            options["celeba_attr"] = self.celeba_attr
        if test != "balanced":
            options["test"] = test
        options.update(protocol_key_options(self.protocol, dataset, test))
        if self.metrics:
            options["quality"] = list(self.metrics)
        if self.precision != "fp32":
            options["precision"] = self.precision
        if self.compile is not None:
            options["compile"] = self.compile
        return options

    def epochs_for(self, dataset: str) -> int:
        if isinstance(self.epochs, int):
            return self.epochs
        if dataset in self.epochs:
            return int(self.epochs[dataset])
        if "default" in self.epochs:
            return int(self.epochs["default"])
        raise BenchError(f"preset '{self.name}' gives no epochs for dataset '{dataset}'; pass --epochs N")


@dataclass(frozen=True)
class Cell:
    """One unit of work and of storage: a method on one imbalanced task with one seed. Frozen, its key
    computed from its fields: a changed cell is a new cell (``dataclasses.replace(cell, epochs=4)``)."""

    method: str
    overrides: dict  # parameters given to the method's constructor
    params: dict  # the method's full parameters (defaults + overrides), as stored
    dataset: str
    protocol: str
    pair: tuple[int, int]
    ratio: float
    seed: int
    epochs: int
    options: dict = field(default_factory=dict)  # Preset.data_options: image size, CelebA task, test set,
    # quality, precision, compile
    variant: str = ""  # the stored method name of a swept variant, e.g. "capsan[phi=0.5]"; "" = the method's name
    key: str = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "key", cell_key(self))  # frozen: set once, here

    def label(self) -> str:
        task = f"{self.pair[0]}:{self.pair[1]}" if self.pair else self.protocol
        return f"{self.variant or self.method} {self.dataset} {task} r={self.ratio:g} seed={self.seed}"


def cell_key(cell: Cell) -> str:
    """A hash of everything that defines the cell's result (never the device or the time)."""
    method_cls = get_method(cell.method)
    identity = {
        "key_version": CELL_KEY_VERSION,
        "method": cell.method,
        "method_version": method_cls.version,
        "params": cell.params,
        "dataset": cell.dataset,
        "protocol": cell.protocol,
        "pair": list(cell.pair),
        "ratio": cell.ratio,
        "seed": cell.seed,
        "epochs": cell.epochs,
    }
    if cell.options:  # only when set, so the keys of earlier runs stay valid
        identity["options"] = cell.options
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def preset_names() -> list[str]:
    folder = resources.files("bench") / "presets"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_preset(name: str) -> Preset:
    """A built-in preset by name, or a preset file given by its path."""
    if name.endswith(".toml") and Path(name).is_file():
        text = Path(name).read_text()
    elif name in preset_names():
        text = (resources.files("bench") / "presets" / f"{name}.toml").read_text()
    else:
        raise BenchError(f"unknown preset '{name}'; valid names: {', '.join(preset_names())} (or a path to a .toml file)")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"preset '{name}' is not valid TOML ({exc}); fix the file") from exc
    known = {f.name for f in dataclasses.fields(Preset)} - {"name"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise BenchError(f"preset '{name}' has unknown keys {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}")
    return Preset(name=Path(name).stem if name.endswith(".toml") else name, **data)


def parse_pairs(text: str) -> str | list[list[int]]:
    """``default``, ``all`` or explicit pairs ``3:5,4:9`` (majority:minority)."""
    if text in ("default", "all"):
        return text
    pairs = []
    for item in text.split(","):
        parts = item.strip().split(":")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise BenchError(f"pair '{item}' is not MAJORITY:MINORITY; use --pairs default, all, or e.g. 3:5,4:9")
        pairs.append([int(parts[0]), int(parts[1])])
    return pairs


def build_grid(config: Preset) -> list[Cell]:
    """Validate ``config`` and expand it into its cells: per dataset, one product over seeds, test sets,
    levels (ratios, the protocol's own, or sizes), pairs and method configurations, in that order."""
    config = check_preset(config)
    methods = _configurations(config)
    cells = []
    for dataset in config.datasets:
        info = get_dataset_info(dataset)
        epochs = config.epochs_for(dataset)
        if epochs < 1:
            raise BenchError(f"epochs must be at least 1; got {epochs} for dataset '{dataset}'")
        options = {test: config.data_options(dataset, test) for test in config.test_sets()}
        # Multi-class protocols keep every class (no pairs); gamo's counts fix its ratio.
        pairs = [()] if config.protocol in MULTICLASS else _pairs_for(config.pairs, info)
        for seed, test, level, pair, (name, overrides, params, variant) in itertools.product(
                range(int(config.seeds)), options, _levels(config, dataset, info), pairs, methods):
            cells.append(Cell(name, overrides, params, dataset, config.protocol, pair, level, seed, epochs,
                              options[test], variant))
    return cells


def check_preset(config: Preset) -> Preset:
    """``config`` validated (one ``BenchError`` naming the fix), its quality metrics parsed."""
    if not config.methods:
        raise BenchError("no methods to run; pass --methods, e.g. --methods imbalanced,smote")
    if not config.datasets:
        raise BenchError("no datasets to run; pass --datasets, e.g. --datasets digits")
    if config.protocol == "subset":
        if not config.sizes:
            raise BenchError("the subset protocol needs sizes; pass --sizes, e.g. --sizes 100,500,1000")
    elif not config.ratios:
        raise BenchError("no ratios to run; pass --ratios, e.g. --ratios 0.1,0.05")
    for kind, names in (("method", config.methods), ("dataset", config.datasets), ("ratio", config.ratios),
                        ("size", config.sizes)):
        if len(set(names)) != len(names):
            raise BenchError(f"a {kind} is listed twice in {list(names)}; list each once")
    if config.protocol not in PROTOCOLS:
        raise BenchError(f"unknown protocol '{config.protocol}'; valid protocols: {', '.join(PROTOCOLS)}")
    config.test_sets()
    config = dataclasses.replace(config, metrics=parse_quality(config.metrics))
    _check_settings(config)
    return config


def _check_settings(config: Preset) -> None:
    """Precision, compile mode and image size (each checked where it is owned), seeds, ratios and sweeps."""
    try:
        check_run_settings(config.precision, config.compile)
        check_image_size(config.image_size)
    except ValueError as exc:
        raise BenchError(str(exc)) from None
    if int(config.seeds) < 1:
        raise BenchError(f"--seeds must be at least 1; got {config.seeds}")
    if config.protocol != "subset":
        for ratio in config.ratios:
            validate_ratio(ratio)
    unknown = sorted(set(config.sweep) - set(config.methods))
    if unknown:
        raise BenchError(f"sweep names {', '.join(unknown)}, which the run does not include; add it to --methods")


def _configurations(config: Preset) -> list[tuple[str, dict, dict, str]]:
    """``(name, overrides, params, variant label)`` of every method configuration the run trains, in order;
    what a run's settings mean for a method, and its label, are asked of the method."""
    methods = []
    for name in config.methods:
        cls = get_method(name)
        seen = set()
        for variant, extra in _variants(name, config.sweep.get(name, {})):
            overrides = {**config.method_params.get(name, {}), **extra, **cls.run_overrides(config.precision)}
            try:
                params = cls(**overrides).key_params()
            except ValueError as exc:
                raise BenchError(str(exc)) from exc
            variant = variant or cls.variant_label(name, params)  # off the budget contract: a label of its own
            identity = json.dumps(params, sort_keys=True, default=str)
            if identity not in seen:  # the shared reference point of one-at-a-time sweeps runs once
                seen.add(identity)
                methods.append((name, overrides, params, variant))
    return methods


def _levels(config: Preset, dataset: str, info) -> list[float]:
    """A cell's level on ``dataset``: the protocol's own ratio (gamo's counts), the subset's sizes, or the
    imbalance ratios."""
    fixed = fixed_ratio(config.protocol, dataset)
    if fixed is not None:
        return [fixed]
    if config.protocol == "subset":
        return [float(validate_size(n, len(info.class_names))) for n in config.sizes]
    return [validate_ratio(r) for r in config.ratios]


def _variants(name: str, sweep: dict | list) -> list[tuple[str, dict]]:
    """("", {}) without a sweep; else one (label, overrides) per combination of the swept values, for each
    table of a list of sweep tables in turn."""
    if not sweep:
        return [("", {})]
    tables = sweep if isinstance(sweep, list) else [sweep]
    out = []
    for table in tables:
        if not isinstance(table, dict) or not table:
            raise BenchError(f"sweep of {name} must be a table {{parameter: [values]}} or a list of them; "
                             f"got {table!r}")
        for param, values in table.items():
            if not isinstance(values, list) or not values:
                raise BenchError(f"sweep of {name}.{param} must be a non-empty list of values; got {values!r}")
        for combo in itertools.product(*table.values()):
            extra = dict(zip(table, combo, strict=True))
            out.append((name + "[" + ",".join(f"{k}={v}" for k, v in extra.items()) + "]", extra))
    return out


def _pairs_for(spec, info) -> list[tuple[int, int]]:
    n_classes = len(info.class_names)
    if spec == "default":
        return [tuple(p) for p in info.default_pairs]
    if spec == "all":
        return all_pairs(n_classes)
    pairs = [validate_pair(p, n_classes) for p in spec]
    if len(set(pairs)) != len(pairs):
        raise BenchError("a class pair is listed twice in --pairs; list each once")
    return pairs
