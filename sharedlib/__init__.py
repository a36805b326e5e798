"""sharedlib: the package behind *Sharing Layers*, a book on cross-layer parameter sharing in Transformers.

The package has three roles, each in its own place, imports pointing one way:

* the model library, the modules directly in ``sharedlib``: configs and layer maps (``config``, ``sharing``),
  layers, models and decoding, counting and measuring, data, training, the Universal Transformer, Mixture of
  Recursions, relaxed sharing, similarity, optimization, evidence (intervals), timing and runtime helpers. It
  imports neither of the two subpackages below: a model or a count never depends on how it is shown or run;
* ``sharedlib.experiments``, the experiment machinery (suites, recorded files, baselines, distributed runs):
  it may import the library;
* ``sharedlib.book``, the book's helpers (display, plots, diagrams, widgets, exercises, report prose): it may
  import both.

``tests/test_package_layout.py`` enforces the direction. Importing ``sharedlib`` has no side effects and imports
neither subpackage; every public name of the library is listed in ``__all__``.
"""

from .config import ACTIVATIONS, NORM_PLACEMENTS, POSITIONS, TransformerConfig
from .convert import from_albert, from_torch_encoder, strategy_for_map
from .counting import (
    SOURCE_STATED_COUNTS,
    activation_values_per_token,
    attention_parameters,
    count_parameters,
    embedding_parameters,
    ffn_parameters,
    forward_flops_per_token,
    layer_norm_parameters,
    layer_parameters,
    parameter_breakdown,
    source_parameter_formula,
    training_memory_bytes,
)
from .measure import (
    count_forward_flops,
    count_module_parameters,
    hidden_state_rms,
    saved_activation_bytes,
    training_state_bytes,
)
from .models import SharedTransformer, next_token_loss
from .naive import NaiveSharedTransformer, unshared_naive_stack
from .runtime import resolve_device, seed_everything
from .sharing import STRATEGIES, layer_to_block, n_parameter_sets, validate_sharing

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "NORM_PLACEMENTS",
    "POSITIONS",
    "SOURCE_STATED_COUNTS",
    "STRATEGIES",
    "NaiveSharedTransformer",
    "SharedTransformer",
    "TransformerConfig",
    "activation_values_per_token",
    "attention_parameters",
    "count_forward_flops",
    "count_module_parameters",
    "count_parameters",
    "embedding_parameters",
    "ffn_parameters",
    "forward_flops_per_token",
    "from_albert",
    "from_torch_encoder",
    "hidden_state_rms",
    "layer_norm_parameters",
    "layer_parameters",
    "layer_to_block",
    "n_parameter_sets",
    "next_token_loss",
    "parameter_breakdown",
    "resolve_device",
    "saved_activation_bytes",
    "seed_everything",
    "source_parameter_formula",
    "strategy_for_map",
    "training_memory_bytes",
    "training_state_bytes",
    "unshared_naive_stack",
    "validate_sharing",
]
