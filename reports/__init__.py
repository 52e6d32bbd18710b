"""Reports: tables, figures and the HTML page, read from the results store only."""

from .paper import PAPER_CITATION, paper_table3, reference_gamo
from .render import table3_text
from .report import write_all
from .table3 import failed_cells, table3

__all__ = ["PAPER_CITATION", "failed_cells", "paper_table3", "reference_gamo", "table3", "table3_text", "write_all"]
