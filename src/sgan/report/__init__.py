"""What a person looks at: sample grids, plots, the terminal table and report.html."""

from .html import write_html_report
from .plots import format_table, plot_budget_curves, plot_losses, sample_grid, save_sample_grid, text_table

__all__ = ["format_table", "plot_budget_curves", "plot_losses", "sample_grid", "save_sample_grid", "text_table", "write_html_report"]
