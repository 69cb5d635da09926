"""What a person looks at: sample grids, plots, the terminal table and report.html."""

from .html import write_html_report
from .plots import format_table, plot_budget_curves, plot_losses, save_sample_grid

__all__ = ["format_table", "plot_budget_curves", "plot_losses", "save_sample_grid", "write_html_report"]
