"""One look per method name (``reports/colors.py``): the same colour in every figure, 16 distinguishable colours,
line styles and markers beyond them."""

import itertools

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb

from bench.methods import method_names
from bench.reports import figures
from bench.reports.colors import COLOURS, KNOWN, SPARE, look, method_looks, slot

BUILT_IN = list(KNOWN)


def test_a_method_keeps_its_look_whatever_else_is_in_the_figure():
    full = method_looks(BUILT_IN)
    # the ROC figure that once recoloured bagan, capsan and crl: only some methods present
    some = method_looks(["bagan", "capsan", "crl"])
    assert all(some[m] == full[m] for m in some)
    assert method_looks(["my-method", "capsan"])["my-method"] == method_looks(["my-method"])["my-method"]
    assert method_looks(reversed(BUILT_IN)) == full


def test_every_registered_method_has_a_look_of_its_own_and_sixteen_get_sixteen_colours():
    registered = method_looks(method_names())  # KNOWN or not: a built-in needs no line here or in colors.py
    assert len({(v["color"], v["linestyle"], v["marker"]) for v in registered.values()}) == len(method_names())
    colours = [look["color"] for look in method_looks(BUILT_IN[:16]).values()]
    assert len(set(colours)) == 16  # imbalanced and smote once shared one
    looks = method_looks(BUILT_IN).values()  # the 17th built-in on: a colour again, in another line style
    assert len({(v["color"], v["linestyle"]) for v in looks}) == len(BUILT_IN)
    user = method_looks(["my-method"])["my-method"]  # another name prefers a slot no built-in has
    assert (user["color"], user["linestyle"]) not in {(v["color"], v["linestyle"]) for v in looks}


def test_known_is_frozen_and_a_new_built_in_gets_a_stable_look_from_its_name_alone():
    # KNOWN is the record of the slots given in order: one more name would shift SPARE, and so the look of
    # every name that hashes into it (user methods and variants in figures made before)
    assert len(KNOWN) == 19 and KNOWN[-1] == "bagan-gp" and SPARE == range(19, 32)
    new = "new-built-in"  # a built-in added after bagan-gp: listed nowhere, neither in KNOWN nor here
    assert new not in KNOWN
    alone = method_looks([new])[new]
    assert slot(new) == 29 and alone == look(29)  # SHA-1 of the name, not Python's salted hash(): every process
    assert method_looks([*KNOWN, new])[new] == alone == method_looks([new, "capsan", "smote"])[new]
    known = {(v["color"], v["linestyle"]) for v in method_looks(KNOWN).values()}
    assert (alone["color"], alone["linestyle"]) not in known  # a slot no KNOWN name has: old figures keep theirs
    assert all(method_looks([*KNOWN, new])[m] == method_looks(KNOWN)[m] for m in KNOWN)


def test_sixteen_distinguishable_colours_then_line_styles():
    rgb = np.array([to_rgb(c) for c in COLOURS])
    assert len(rgb) >= 16
    nearest = min(np.linalg.norm(a - b) for a, b in itertools.combinations(rgb, 2))
    assert nearest > 0.15, nearest
    names = BUILT_IN + [f"user-{i}" for i in range(30)]
    looks = method_looks(names)
    keys = {(v["color"], v["linestyle"], v["marker"]) for v in looks.values()}
    assert len(keys) == len(names)  # 41 methods, 41 looks
    first16 = method_looks(BUILT_IN + [f"user-{i}" for i in range(5)])
    assert len({v["color"] for v in first16.values()}) == 16  # up to 16 methods: colours alone tell them apart


def test_the_figures_draw_each_method_in_its_own_look():
    summary = pd.DataFrame({"ratio": [0.1, 0.2] * 3, "method": ["bagan"] * 2 + ["capsan"] * 2 + ["crl"] * 2,
                            "mean": [0.5, 0.6, 0.7, 0.8, 0.6, 0.7], "lo": 0.4, "hi": 0.9})
    fig, (ax,) = figures._new_figure(1, 4.0, 3.0)
    figures._draw_lines(ax, summary, "ratio", figures.palette(summary["method"]))
    drawn = {line.get_label(): line for line in ax.get_lines()}
    full = method_looks(BUILT_IN)
    for method in ("bagan", "capsan", "crl"):
        assert to_rgb(drawn[method].get_color()) == to_rgb(full[method]["color"])
        assert drawn[method].get_linestyle() == full[method]["linestyle"]
