"""One look per method name (a colour, and past 16 methods a line style and marker), the same in every figure,
run and report.

Figures once coloured the methods present in each figure in turn, so a method changed colour between figures
(one ROC figure gave bagan, capsan and crl other methods' colours) and the 11th method took the 1st one's.
Here a method's look depends on its name, not on what else a figure holds:
- ``KNOWN`` is a frozen record, not a list of the built-ins to keep up to date: the 19 built-ins up to
  ``bagan-gp`` were given their slots in this order, and keep them so that figures made before keep their
  colours. It is never reordered and never appended to;
- every other name: a built-in added since (its file in ``methods/`` is all it needs; this module reads only
  the store and lists no method to keep up), your own method, a variant such as ``capsan[phi=0.5]``, prefers
  one of the slots no ``KNOWN`` name has (``SPARE``: the 13 dashed colours after them), chosen by a SHA-1 hash
  of its name: the same slot in every process and figure, unless another such name of the same figure has it
  already (then the rule below);
- slot s is colour ``COLOURS[s % 16]`` with style ``STYLES[s // 16]``: 16 distinguishable colours (seaborn's
  ``colorblind`` ten, then six of Paul Tol's that differ from them), each with a solid line and round markers
  first, then dashed / squares, dotted / triangles and dash-dot / diamonds: 64 looks;
- in one figure no two names share a look, and up to 16 names no two share a colour: a ``KNOWN`` name always
  keeps its slot (past the 16th, a colour comes back in a dashed line); another name whose slot is taken
  moves to the first free colour (the spare ones first), then to the next line style. Names are placed
  ``KNOWN`` first, then in sorted order, so the same names get the same looks in every figure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

COLOURS = (
    "#0173B2", "#DE8F05", "#029E73", "#D55E00", "#CC78BC", "#CA9161", "#FBAFE4", "#949494", "#ECE133", "#56B4E9",
    "#332288", "#882255", "#000000", "#999933", "#44AA99", "#AA4499",
)
STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))  # (line style, marker)
# The slots given by order, frozen (see above): never reordered, never appended to; new names hash to SPARE.
KNOWN = ("imbalanced", "smote", "adasyn", "crl", "gan", "acgan", "dagan", "bagan", "gamo", "capsan", "capsan-conv",
         "focal", "cb-ce", "cb-focal", "ldam-drw", "logit-adjust", "balanced-softmax", "deepsmote", "bagan-gp")
SLOTS = len(COLOURS) * len(STYLES)
# The slots no KNOWN name has, up to the end of the last line style KNOWN reaches: where other names go.
SPARE = range(len(KNOWN), -(-len(KNOWN) // len(COLOURS)) * len(COLOURS))


def slot(name: str) -> int:
    """The preferred slot of ``name``: its place in ``KNOWN``, else one of the spare slots by a hash of it."""
    if name in KNOWN:
        return KNOWN.index(name)
    digest = int(hashlib.sha1(name.encode("utf-8")).hexdigest(), 16)
    return SPARE[digest % len(SPARE)]


def look(index: int) -> dict:
    """Matplotlib keywords of slot ``index``: color, linestyle, marker."""
    linestyle, marker = STYLES[(index // len(COLOURS)) % len(STYLES)]
    return {"color": COLOURS[index % len(COLOURS)], "linestyle": linestyle, "marker": marker}


# Where a name whose slot is taken looks next: the spare colours, KNOWN's colours, then the other styles.
FALLBACK = [*SPARE, *range(len(KNOWN)), *range(SPARE.stop, SLOTS)]


def method_looks(methods: Iterable[str]) -> dict[str, dict]:
    """{name: {color, linestyle, marker}} for the names of one figure: no two alike (up to 64 names), and no
    two of the same colour up to 16 names."""
    names = sorted(set(map(str, methods)), key=lambda m: (m not in KNOWN, KNOWN.index(m) if m in KNOWN else 0, m))
    taken, colours, looks = set(), set(), {}
    for name in names:
        if name in KNOWN:  # a KNOWN name always has its own slot, whatever else the figure holds
            index = KNOWN.index(name)
            taken.add(index)
            colours.add(COLOURS[index % len(COLOURS)])
            looks[name] = look(index)
            continue
        order = [slot(name), *FALLBACK]
        free = [i for i in order if i not in taken]
        fresh = [i for i in free if COLOURS[i % len(COLOURS)] not in colours]
        index = (fresh or free or order)[0]  # past 64 names, looks repeat
        taken.add(index)
        colours.add(COLOURS[index % len(COLOURS)])
        looks[name] = look(index)
    return looks
