"""sharedlib.book: the book's helpers, code that exists only to present the library and
the experiments on a page.

Here: ``display`` (tables, glued numbers, ``show_source``), ``plots`` and
``similarity_plots`` (figures), ``diagrams`` (architecture drawings), ``widgets``
(interactive explorers), ``exercises`` (checkers), ``report``, ``hops_report``,
``why_report``, ``loops_report`` and ``decoding_report`` (the sentences written from
recorded results),
``background`` (chapter 1's published-model data and timings) and ``albert_sizes``
(chapter 4's ALBERT size table).

The rule: a module belongs here when its output is for a reader (a figure, a table, a
sentence, a widget, a checker's verdict) rather than a model or a number another module
computes with. This subpackage is the top of the import order: it may import the library
(``sharedlib``) and the experiment machinery (``sharedlib.experiments``: the reports
read recorded files), and nothing imports it but notebooks, the book's build and tests.
So a library or experiment change can break a page, never the other way round, and the
library installs and runs without matplotlib or ipywidgets being touched.
``tests/test_package_layout.py`` enforces it.

A chapter starts with two import lines: ``import sharedlib as sl`` for the library, and
one ``from sharedlib.book import ...`` for what the page needs. This package re-exports
the helpers a chapter calls, the chapter-specific modules (``exercises``, ``report``,
``hops_report``, ``why_report``, ``loops_report``, ``sudoku_report``, ``background``,
``albert_sizes``) and the few experiment functions a chapter runs or reads (recorded
files, baselines, the live runs of chapter 6).
"""

from ..experiments import distributed
from ..experiments.baselines import ngram_baselines, ngram_window_baselines
from ..experiments.live import answer_accuracy, compare_strategies, train_model
from ..experiments.recorded import load_recorded
from ..experiments.suite import (
    chosen_lrs,
    fixed_windows,
    get_profile,
    profile_model_config,
    window_baselines,
    window_loss,
)
from . import (
    albert_sizes,
    background,
    decoding_report,
    exercises,
    hops_report,
    loops_report,
    report,
    sudoku_report,
    why_report,
)
from .diagrams import (
    draw_factorised_embedding,
    draw_one_module_many_uses,
    draw_relaxed_sharing,
    draw_universal_transformer_step,
)
from .display import glue, markdown_table, show, show_source
from .plots import (
    plot_accuracy_vs_iterations,
    plot_depth_curves,
    plot_layer_maps,
    plot_loss_curves,
    plot_lr_sweep,
    plot_model_sizes,
    plot_paired_differences,
    plot_parameter_breakdown,
    plot_steps_by_difficulty,
    plot_throughput_by_width,
    plot_time_spread,
    plot_train_val,
    use_book_style,
)
from .similarity_plots import plot_cka, plot_gradient_norms, plot_iterations
from .widgets import LayerMapExplorer, ParameterExplorer

__all__ = [
    "LayerMapExplorer",
    "ParameterExplorer",
    "albert_sizes",
    "answer_accuracy",
    "background",
    "chosen_lrs",
    "compare_strategies",
    "decoding_report",
    "distributed",
    "draw_factorised_embedding",
    "draw_one_module_many_uses",
    "draw_relaxed_sharing",
    "draw_universal_transformer_step",
    "exercises",
    "fixed_windows",
    "get_profile",
    "glue",
    "hops_report",
    "load_recorded",
    "loops_report",
    "markdown_table",
    "ngram_baselines",
    "ngram_window_baselines",
    "plot_accuracy_vs_iterations",
    "plot_cka",
    "plot_depth_curves",
    "plot_gradient_norms",
    "plot_iterations",
    "plot_layer_maps",
    "plot_loss_curves",
    "plot_lr_sweep",
    "plot_model_sizes",
    "plot_paired_differences",
    "plot_parameter_breakdown",
    "plot_steps_by_difficulty",
    "plot_throughput_by_width",
    "plot_time_spread",
    "plot_train_val",
    "profile_model_config",
    "report",
    "show",
    "show_source",
    "sudoku_report",
    "train_model",
    "use_book_style",
    "why_report",
    "window_baselines",
    "window_loss",
]
