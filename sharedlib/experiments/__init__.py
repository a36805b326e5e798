"""sharedlib.experiments: the code that runs, records and reloads the experiments.

Here: ``suite`` (the recorded language-model suite of chapters 6 and 8: plans, runs,
results files, the code hash), ``hops`` (iterations and pointer hops in a causal
decoder, chapter 6; it replaced the first edition's binary-addition experiment), ``why``
(chapter 5c's recorded statistics of a shared and an unshared model over seeds),
``live`` (the small seeded "try it" runs a chapter trains while it executes),
``recorded`` (finding, writing and stamping recorded files), ``baselines`` (n-gram
baselines the suite reports beside its models) and ``distributed`` (the DDP/FSDP traffic
measurement run under torchrun).

The rule: a module belongs here when it decides which runs happen, executes them, or
writes or finds their records. It may import the library (``sharedlib``: models,
training, counting, data), never the book's helpers (``sharedlib.book``), so that
``scripts/run_experiments.py`` and the benchmark scripts need no plotting or notebook
code, and the code hash stamped into every recorded file (``suite.RESULT_MODULES``)
covers only code that can change a number. The library imports nothing from here.
``tests/test_package_layout.py`` enforces it.

``live`` was ``sharedlib.experiments`` before the split; it is named for its role (runs
made live in a chapter, as opposed to the recorded ones) because
``sharedlib.experiments.experiments`` would say nothing twice.

Importing ``sharedlib.experiments`` imports none of its modules; import them by name
(``from sharedlib.experiments import suite``).
"""

# the submodules (what ``from sharedlib.experiments import *`` imports): the package
# itself defines nothing
__all__ = [
    "baselines",
    "distributed",
    "hops",
    "live",
    "recorded",
    "suite",
    "why",
]
