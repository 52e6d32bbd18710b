"""The ``bench`` command line: ``bench run``, ``bench report``, ``bench export``, ``bench compare``, ``bench list``."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from bench import __version__
from bench.errors import BenchError


def _runtime_env(text: str | None) -> dict:
    """``--ray-runtime-env JSON`` as ``ray.init`` arguments."""
    if text is None:
        return {}
    import json

    try:
        env = json.loads(text)
    except ValueError as exc:
        raise BenchError(f"--ray-runtime-env is not JSON ({exc}); give e.g. '{{\"pip\": [\"capsan-bench\"]}}'") from None
    if not isinstance(env, dict):
        raise BenchError(f"--ray-runtime-env must be a JSON object; got {text}")
    return {"runtime_env": env}


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise BenchError(f"'{text}' is an empty list; give comma-separated names, e.g. imbalanced,smote")
    return items


def _ratios(text: str | None) -> list[float] | None:
    from bench.datasets.imbalance import validate_ratio

    items = _split(text)
    if items is None:
        return None
    ratios = []
    for item in items:
        try:
            ratios.append(validate_ratio(float(item)))
        except ValueError:
            raise BenchError(f"ratio '{item}' is not a number; give ratios like --ratios 0.1,0.05") from None
    return ratios


def _size(item: str) -> int:
    if not item.isdigit():
        raise BenchError(f"size '{item}' is not a whole number; give sizes like --sizes 100,500,1000")
    return int(item)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="capsan-bench")
def cli():
    """capsan-bench: benchmark learning from imbalanced image data (CapsAN and its baselines)."""


@cli.command()
@click.option("--preset", default="quick", show_default=True, help="Preset name (bench list presets) or a .toml file.")
@click.option("--methods", help="Comma-separated method names (bench list methods).")
@click.option("--datasets", help="Comma-separated dataset names (bench list datasets).")
@click.option("--ratios", help="Comma-separated minority/majority ratios in (0, 1], e.g. 0.1,0.05.")
@click.option("--seeds", type=int, help="Number of seeds: runs seeds 0..N-1.")
@click.option("--pairs", help="Class pairs: default, all, or MAJORITY:MINORITY list like 3:5,4:9.")
@click.option("--protocol", help="Imbalance protocol: binary (class pairs), longtail, step, gamo (all classes), or "
              "subset (n training images, Table 1).")
@click.option("--sizes", help="Training-set sizes of the subset protocol, e.g. 100,500,1000.")
@click.option("--test-set", "test_set",
              help="Test set: balanced (as the dataset gives it), train (following the training distribution), "
              "holdout (20 % of the training set, for choosing settings), or several: balanced,train (every cell "
              "runs once per test set).")
@click.option("--image-size", type=int, help="Resize every dataset to this square size in pixels.")
@click.option("--metrics", "quality", help="Generative quality per cell: ssim, fid, battle (comma-separated), or "
              "none; battle: capsan and capsan-conv only.")
@click.option("--fid-weights", type=click.Path(dir_okay=False),
              help="pytorch-fid's Inception weights (pt_inception-2015-12-05-6726825d.pth); default: torch's hub cache.")
@click.option("--celeba-attr", help="CelebA's task: an attribute of list_attr_celeba.txt (binary), or 'hair' (5 classes).")
@click.option("--epochs", type=int, help="Override the preset's training length.")
@click.option("--method-file", "method_files", multiple=True, type=click.Path(dir_okay=False),
              help="A Python file defining a Method subclass; its methods join the run (with --methods too).")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Where datasets live. Default: $BENCH_DATA or ~/.cache/capsan-bench.")
@click.option("--download/--no-download", default=False, show_default=True, help="Download missing dataset files.")
@click.option("--results", default="results", show_default=True, type=click.Path(), help="Results folder.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--resume/--no-resume", default=True, show_default=True, help="Skip cells already done.")
@click.option("--jobs", type=int, help="Worker processes running cells at once (default 1: in this process).")
@click.option("--threads", type=int, help="torch CPU threads per process. Default: OMP_NUM_THREADS if set; with "
              "--jobs N, cores // N; else cores minus the threads other processes keep busy, checked before cells "
              "(README, CPU threads).")
@click.option("--jobs-per-gpu", type=int, help="Workers per visible GPU (cells packed on each GPU).")
@click.option("--executor", type=click.Choice(["local", "ray", "slurm"]), default="local", show_default=True,
              help="local: this machine (--jobs); ray: every cell a Ray task (pip install capsan-bench[ray]); slurm: "
                   "every cell a Slurm job-array task (pip install capsan-bench[slurm]).")
@click.option("--ray-address", help="Ray cluster to join: auto or HOST:PORT (default: start a local one).")
@click.option("--ray-runtime-env", help="With --executor ray: a Ray runtime environment as JSON, for nodes without "
              "the package, e.g. '{\"pip\": [\"capsan-bench\"]}'.")
@click.option("--ray-node-wait", type=float,
              help="With --executor ray: seconds to wait on a cluster with no live node able to run a cell before "
                   "its cells are stored as failed (default 120).")
@click.option("--gpus-per-cell", type=float, default=0.0, show_default=True,
              help="With --executor ray: the GPU share of each cell, e.g. 0.25 packs four cells per GPU; with slurm: "
                   "whole GPUs per task.")
@click.option("--slurm-partition", help="With --executor slurm: the partition (default: the cluster's).")
@click.option("--slurm-time", type=int, default=60, show_default=True,
              help="With --executor slurm: each task's time limit in minutes.")
@click.option("--slurm-folder", type=click.Path(file_okay=False),
              help="With --executor slurm: submitit's jobs folder, on a disk the nodes share (default: RESULTS/slurm).")
@click.option("--fuse", default="auto", show_default=True,
              help="Train cells that differ only in their seed as one batched model: auto (on a GPU, for methods "
                   "that support it), off, or the most cells per group (README, Fused cells).")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]),
              help="Training precision of every torch method: fp32 (default) or bf16 autocast. Part of the cell key.")
@click.option("--compile", "compile_mode", is_flag=False, flag_value="default",
              type=click.Choice(["default", "reduce-overhead", "max-autotune"]),
              help="torch.compile the training networks; --compile alone is mode 'default', 'reduce-overhead' "
                   "adds CUDA graphs. Part of the cell key.")
@click.option("--dry-run", is_flag=True,
              help="List the cells as done, failed or pending with a time estimate (and its spread); run nothing, "
                   "write and download nothing.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def run(preset, methods, datasets, ratios, seeds, pairs, protocol, sizes, test_set, image_size, quality, fid_weights,
        celeba_attr, epochs, method_files, data_dir, download, results, device, resume, jobs, threads, jobs_per_gpu,
        executor, ray_address, ray_runtime_env, ray_node_wait, gpus_per_cell, slurm_partition, slurm_time,
        slurm_folder, fuse, precision, compile_mode, dry_run, quiet):
    """Run every cell of method x dataset x ratio x pair x seed and store the results."""
    from bench.config import RayOptions, RunConfig, SlurmOptions
    from bench.grid import load_preset, parse_pairs
    from bench.methods import load_method_file
    from bench.reports import table3_text
    from bench.runner import run_grid
    from bench.store import Store

    preset = load_preset(preset)
    file_methods = [name for path in method_files for name in load_method_file(path)]
    # a user's own methods join the run, beside --methods or the preset's baselines
    # (a name listed twice in --methods stays twice, so that the grid refuses it in one line)
    chosen = preset.methods if methods is None else _split(methods)
    tests = _split(test_set)
    given = {  # the options given, as the preset's fields (None: not given, the preset's value stands)
        "datasets": _split(datasets), "ratios": _ratios(ratios), "seeds": seeds,
        "pairs": None if pairs is None else parse_pairs(pairs), "epochs": epochs, "protocol": protocol,
        "sizes": None if sizes is None else [_size(item) for item in _split(sizes)],
        "test_distribution": None if tests is None else tests[0] if len(tests) == 1 else tests,
        "image_size": image_size, "celeba_attr": celeba_attr, "metrics": _split(quality), "precision": precision,
        "compile": compile_mode,
    }
    preset = dataclasses.replace(
        preset, methods=chosen + [name for name in dict.fromkeys(file_methods) if name not in chosen],
        **{name: value for name, value in given.items() if value is not None})
    config = RunConfig(preset, results, data_dir=data_dir, download=download, fid_weights=fid_weights,
                       device=device, threads=threads, jobs=jobs, jobs_per_gpu=jobs_per_gpu, executor=executor,
                       ray=RayOptions(ray_address, gpus_per_cell, _runtime_env(ray_runtime_env),
                                      **({} if ray_node_wait is None else {"node_wait_s": ray_node_wait})),
                       slurm=SlurmOptions(slurm_partition, slurm_time, slurm_folder, gpus_per_cell),
                       fuse=fuse, method_files=method_files,
                       resume=resume, quiet=quiet)
    cells = config.cells
    if dry_run:
        _dry_run(config)
        return

    summary = run_grid(config)
    refused = f" ({summary.refused} refused by the method or protocol)" if summary.refused else ""
    click.echo(f"{summary.total} cells: {summary.done} run, {summary.failed} failed{refused}, "
               f"{summary.skipped} already done (results in {Path(results) / 'bench.sqlite'})")
    with Store(results, create=False) as store:
        stored = store.cells()
    keys = {c.key for c in cells}
    click.echo(table3_text(stored[stored["key"].isin(keys)]))
    errors = summary.failed - summary.refused  # a refusal is the cell's answer (too few images), not an error
    if errors:  # scripts and schedulers must see it; the table above lists each reason
        click.echo(f"Error: {errors} of {summary.total - summary.skipped} cells failed (reasons above); every "
                   "other cell is stored, and running the same command again retries only the failed ones", err=True)
        sys.exit(1)


def _dry_run(config) -> None:
    import torch
    from tabulate import tabulate

    from bench.cell import dataset_loader, resolve_device
    from bench.dryrun import dry_run
    from bench.executors import plan_devices
    from bench.threads import ThreadPolicy

    ThreadPolicy(config.threads).apply()  # calibrate (and name the device) with the run's CPU threads
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    workers = len(plan_devices(config.jobs, config.jobs_per_gpu, config.device, n_gpus))
    # a dry run writes nothing: no download either (files not found leave their groups without an estimate)
    table, line = dry_run(config.cells, config.results, dataset_loader(config.data_dir, False),
                          resolve_device(config.device), workers, progress=not config.quiet)
    shown = table.assign(s_per_cell=table["s_per_cell"].map(lambda s: "?" if s != s else f"{s:.2f}"),
                         to_run_s=[("?" if t != t else f"{t:.0f}" if not (lo < hi) else f"{t:.0f} ({lo:.0f}-{hi:.0f})")
                                   for t, lo, hi in zip(table["to_run_s"], table["low_s"], table["high_s"],
                                                        strict=True)]).drop(columns=["low_s", "high_s"])
    click.echo(tabulate(shown, headers="keys", showindex=False, tablefmt="simple", disable_numparse=True))
    click.echo(line)


@cli.command()
@click.option("--results", default=["results"], show_default=True, multiple=True, type=click.Path(),
              help="Results folder; repeat it to report several folders as one (a key in two: newest done wins).")
@click.option("--out", default="report", show_default=True, type=click.Path(), help="Output folder.")
@click.option("--format", "formats", default="csv,latex,md,png,pdf,html", show_default=True,
              help="Any of csv, latex, md (tables), png, pdf (figures, the critical-difference diagram) and html "
                   "(one self-contained page).")
@click.option("--tables", help="Which of the paper's tables: any of 1,2,3 (default: all that have data).")
@click.option("--figures", help="Which of the paper's figures: any of 3,4,5,6,7,8,9 (default: all with data).")
@click.option("--by-pair", is_flag=True, help="Table 3: one row per class pair instead of averaging pairs.")
@click.option("--validation", is_flag=True, help="Also write validation.md: the store's numbers beside the published "
              "ones (DeepSMOTE's GAMO-protocol tables, the CapsAN paper's Tables 1 and 3), with the differences.")
def report(results, out, formats, tables, figures, by_pair, validation):
    """Write the paper's tables, statistics and figures from stored results, and print Table 3."""
    from bench.reports import table3_text
    from bench.reports.cells import read
    from bench.reports.formats import check_formats
    from bench.reports.report import FIGURES, TABLES, failures, is_failure, parse_numbers, write_all

    chosen, tables, figures = (check_formats(_split(formats)), parse_numbers(tables, TABLES, "tables"),
                               parse_numbers(figures, FIGURES, "figures"))
    cells = read(results)  # the store, read once for every output and the terminal table
    written, notes = write_all(cells, out, formats=chosen, tables=tables, figures=figures, by_pair=by_pair,
                               validation=validation)
    click.echo(table3_text(cells))
    for path in written:
        click.echo(f"wrote {path}")
    failed = failures(notes)
    for note in notes:
        click.echo(f"{'failed' if is_failure(note) else 'skipped'} {note}")
    if failed:
        click.echo(f"Error: {len(failed)} output(s) failed (above, with the traceback); every other table and "
                   f"figure is written in {out}: report the failure with the store that caused it", err=True)
        sys.exit(1)


@cli.command()
@click.option("--results", default=["results"], show_default=True, multiple=True, type=click.Path(),
              help="Results folder; repeat it to export several folders as one table (--mlflow: one experiment each).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="The file to write.")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default=None,
              help="csv or parquet. Default: what --out's suffix says (.csv, .parquet or .pq), else csv.")
@click.option("--mlflow", "mlflow_uri", is_flag=False, flag_value="", default=None, metavar="[URI]",
              help="Every cell as an MLflow run, one experiment per results folder (only new cells when run again): "
              "into <results>/mlflow.db, or the tracking URI given (http://HOST:PORT, sqlite:///FILE).")
def export(results, out_file, fmt, mlflow_uri):
    """Write the raw per-cell table (one row per cell, tidy) for your own analysis, or the cells as MLflow runs."""
    if out_file is None and mlflow_uri is None:
        raise BenchError("give --out FILE (the per-cell table), --mlflow [URI] (MLflow runs), or both")
    if out_file is not None:
        from bench.reports.cells import read
        from bench.reports.export import export_cells

        path = export_cells(read(results), out_file, fmt)
        click.echo(f"wrote {path}")
    if mlflow_uri is not None:
        from bench.reports.mlflow_export import export_mlflow

        for exported in export_mlflow(results, mlflow_uri or None):
            click.echo(exported.line())


@cli.command()
@click.option("--results", required=True, type=click.Path(), help="The results folder to check (or to save).")
@click.option("--against", type=click.Path(), help="The reference: a results folder, or a file written by --save.")
@click.option("--save", type=click.Path(dir_okay=False),
              help="Write the reference file of --results here (done cells' keys, metrics, versions, device kinds).")
@click.option("--metrics", default="g_mean,balanced_accuracy,f_measure,roc_auc", show_default=True,
              help="Metrics to compare (aliases acsa, gm, f1, auc; a dotted name like per_class_recall.1; or all).")
@click.option("--tolerance", type=float, help="Largest difference still 'within': of one cell on the reference's "
              "device kind with its torch and numpy (default 0: identical); else of a row's mean difference, which "
              "must also exceed its cells' spread to be 'changed' (default 0.02; unstable cells are named).")
@click.option("--time-tolerance", type=float,
              help="Fail a row whose fit seconds exceed (1 + this) times the reference's, e.g. 0.5. Default: never.")
@click.option("--format", "fmt", type=click.Choice(["text", "md", "json"]), default="text", show_default=True,
              help="A terminal table, Markdown for a pull request, or JSON.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Also write the output to this file.")
def compare(results, against, save, metrics, tolerance, time_tolerance, fmt, out_file):
    """Compare a run with a reference; exit 1 when a number changed or a cell is missing (CI benchmarks)."""
    from bench.reports.compare import compare as compare_sides
    from bench.reports.compare import load_side, save_reference
    from bench.reports.compare_output import render

    if (against is None) == (save is None):
        raise BenchError("give --against REFERENCE (compare) or --save FILE (write a reference), one of the two")
    new = load_side(results)
    if save:
        path = save_reference(new, save)
        click.echo(f"wrote {path}: {len(new.cells)} done cells; device kinds: {', '.join(new.device_kinds)}")
        return
    result = compare_sides(load_side(against), new, _split(metrics), tolerance, time_tolerance)
    text = render(result, fmt, str(results), str(against))
    click.echo(text, nl=False)
    if out_file:
        Path(out_file).write_text(text)
    if result.failed:
        counts = result.counts
        found = ", ".join(f"{counts[v]} {v}" for v in ("changed", "missing", "slower") if counts[v])
        fix = (f"bench compare --results {results} --save {against}" if Path(against).is_file()
               else f"use {results} as the reference")
        click.echo(f"Error: {found} (rows x metrics, above) against {against}; if the change is intended, regenerate "
                   f"the reference: {fix}", err=True)
        sys.exit(1)


@cli.command(name="list")
@click.argument("what", type=click.Choice(["methods", "datasets", "presets"]))
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where to look for dataset files.")
def list_(what, data_dir):
    """List the methods, datasets or presets."""
    if what == "methods":
        from bench.methods import get_method, method_names
        from bench.methods.base import FAMILIES

        classes = {name: get_method(name) for name in method_names()}
        families = sorted({c.family for c in classes.values()},
                          key=lambda f: (FAMILIES.index(f) if f in FAMILIES else len(FAMILIES), f))
        for family in families:
            click.echo(f"{family}:")
            for name, cls in classes.items():
                if cls.family == family:
                    click.echo(f"  {name:<17} {cls.summary}\n  {'':<17} cite: {cls.citation}")
    elif what == "datasets":
        from bench.datasets import dataset_folder, dataset_names, get_dataset_info

        for name in dataset_names():
            info = get_dataset_info(name)
            folder = dataset_folder(name, data_dir)
            where = "bundled" if not info.needs_files else (
                f"found in {folder}" if info.available(folder) else f"not found in {folder} (use --download)")
            shape = "x".join(map(str, info.image_shape))
            pairs = ", ".join(f"{a}:{b}" for a, b in info.default_pairs) or "none (no binary tasks)"
            click.echo(f"{name:<14} {len(info.class_names)} classes, {shape}; {where}\n{'':<14} {info.description}"
                       f"\n{'':<14} default pairs (majority:minority, --pairs default): {pairs}"
                       f"\n{'':<14} source: {info.source}")
        click.echo(f"{'folder:PATH':<14} your own images: PATH/train/<class>/*.png|jpg and PATH/test/<class>/*, or\n"
                   f"{'':<14} PATH/<class>/* split 70/30 (stratified, fixed seed); e.g. --datasets folder:~/my_images")
    else:
        from bench.grid import load_preset, preset_names

        for name in preset_names():
            click.echo(f"{name:<14} {load_preset(name).description}")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's preemption or time limit, ``kill``): stopped like Ctrl-C, with exit code 143."""


_SIGTERM_SEEN = []  # set by the handler: a library may catch the Terminated it raised and raise its own


def _on_sigterm(signum, frame):
    _SIGTERM_SEEN.append(signum)
    raise Terminated()


INTERRUPTED = "Interrupted: every finished cell is stored; run the same command again to finish the rest."


def main(argv=None) -> None:
    import signal
    import threading

    in_main_thread = threading.current_thread() is threading.main_thread()  # where signal handlers may be set
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    try:
        cli.main(args=argv, prog_name="bench", standalone_mode=False)
    except BenchError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:  # click turns Ctrl-C into Abort
        click.echo(INTERRUPTED, err=True)
        terminated = bool(_SIGTERM_SEEN) or isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated)
        sys.exit(128 + signal.SIGTERM if terminated else 130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
