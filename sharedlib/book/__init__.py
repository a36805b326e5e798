"""sharedlib.book: the book's helpers, code that exists only to present the library and the experiments on a page.

Here: ``display`` (tables, glued numbers, ``show_source``), ``plots`` and ``similarity_plots`` (figures),
``diagrams`` (architecture drawings), ``widgets`` (interactive explorers), ``exercises`` (checkers),
``report`` and ``addition_report`` (the sentences written from recorded results), ``background`` (chapter 1's
published-model data and timings) and ``albert_sizes`` (chapter 4's ALBERT size table).

The rule: a module belongs here when its output is for a reader (a figure, a table, a sentence, a widget, a
checker's verdict) rather than a model or a number another module computes with. This subpackage is the top of
the import order: it may import the library (``sharedlib``) and the experiment machinery
(``sharedlib.experiments``: the reports read recorded files), and nothing imports it but notebooks, the book's
build and tests. So a library or experiment change can break a page, never the other way round, and the library
installs and runs without matplotlib or ipywidgets being touched. ``tests/test_package_layout.py`` enforces it.

Importing ``sharedlib.book`` imports none of its modules; import them by name (``from sharedlib.book import plots``).
"""
