"""sharedlib: the package behind *Sharing Layers*.

*Sharing Layers* is a book on cross-layer parameter sharing in Transformers. The package
has three roles, each in its own place, imports pointing one way:

* the model library, the modules directly in ``sharedlib``: configs and layer maps
  (``config``, ``sharing``), layers, models and decoding, counting and measuring, data,
  training, the Universal Transformer, Mixture of Recursions, looped language models,
  recursive reasoning (TRM), relaxed sharing,
  similarity, optimization, evidence (intervals), timing and runtime helpers. It imports
  neither of the two subpackages below: a model or a count never depends on how it is
  shown or run;
* ``sharedlib.experiments``, the experiment machinery (suites, recorded files,
  baselines, distributed runs): it may import the library;
* ``sharedlib.book``, the book's helpers (display, plots, diagrams, widgets, exercises,
  report prose): it may import both.

``tests/test_package_layout.py`` enforces the direction. Importing ``sharedlib`` has no
side effects and imports neither subpackage; ``__all__`` lists what a reader calls, and
every module is one attribute away (``sl.universal``).
"""

from . import (
    bench,
    config,
    convert,
    counting,
    data,
    decoding,
    evidence,
    layers,
    looped,
    measure,
    models,
    naive,
    optimization,
    puzzles,
    reasoning,
    recursions,
    relaxed,
    runtime,
    sharing,
    similarity,
    universal,
    validation,
)
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
from .data import load_text_corpus, pointer_chain_batch
from .decoding import (
    KVCache,
    decode_step,
    decode_teacher_forced,
    extend,
    generate,
    prefill,
)
from .evidence import paired_difference
from .layers import Embeddings, FeedForward, Residual, SelfAttention
from .looped import (
    LoopConfig,
    LoopedTransformer,
    exit_decode,
    loop_map,
    looped_flops_per_token,
    looped_parameters,
    prelude_gradient_norm,
    random_depth_loss,
    recursive_from_unshared,
    sample_iterations,
)
from .measure import (
    count_forward_flops,
    count_module_parameters,
    hidden_state_rms,
    saved_activation_bytes,
    training_state_bytes,
)
from .models import (
    LOSS_UNIT,
    SharedTransformer,
    next_token_loss,
    scored_cross_entropy,
    windows_loss,
)
from .naive import NaiveSharedTransformer, unshared_naive_stack
from .recursions import MixtureOfRecursions, default_capacities, routed_loss
from .relaxed import (
    RelaxedSharedTransformer,
    delta_parameters,
    relax_unshared,
    relaxed_parameters,
)
from .runtime import resolve_device, seed_everything
from .sharing import STRATEGIES, layer_to_block, n_parameter_sets, validate_sharing
from .train import History, TrainConfig, evaluate, train
from .universal import UniversalTransformer, act_loss

__version__ = "0.1.0"

# What a reader calls: configs and layer maps, the layers and models, counts,
# decoding, training, the Universal Transformer, Mixture-of-Recursions, looped models,
# relaxed sharing, and the modules (``sl.train`` is the training function; the module
# is ``sharedlib.train``). Everything else is one attribute deeper:
# ``sl.similarity.cka_matrix``.
__all__ = [
    "ACTIVATIONS",
    "LOSS_UNIT",
    "NORM_PLACEMENTS",
    "POSITIONS",
    "SOURCE_STATED_COUNTS",
    "STRATEGIES",
    "Embeddings",
    "FeedForward",
    "History",
    "KVCache",
    "LoopConfig",
    "LoopedTransformer",
    "MixtureOfRecursions",
    "NaiveSharedTransformer",
    "RelaxedSharedTransformer",
    "Residual",
    "SelfAttention",
    "SharedTransformer",
    "TrainConfig",
    "TransformerConfig",
    "UniversalTransformer",
    "act_loss",
    "activation_values_per_token",
    "attention_parameters",
    "bench",
    "config",
    "convert",
    "count_forward_flops",
    "count_module_parameters",
    "count_parameters",
    "counting",
    "data",
    "decode_step",
    "decode_teacher_forced",
    "decoding",
    "default_capacities",
    "delta_parameters",
    "embedding_parameters",
    "evaluate",
    "evidence",
    "exit_decode",
    "extend",
    "ffn_parameters",
    "forward_flops_per_token",
    "from_albert",
    "from_torch_encoder",
    "generate",
    "hidden_state_rms",
    "layer_norm_parameters",
    "layer_parameters",
    "layer_to_block",
    "layers",
    "load_text_corpus",
    "loop_map",
    "looped",
    "looped_flops_per_token",
    "looped_parameters",
    "measure",
    "models",
    "n_parameter_sets",
    "naive",
    "next_token_loss",
    "optimization",
    "paired_difference",
    "parameter_breakdown",
    "pointer_chain_batch",
    "prefill",
    "prelude_gradient_norm",
    "puzzles",
    "random_depth_loss",
    "reasoning",
    "recursions",
    "recursive_from_unshared",
    "relax_unshared",
    "relaxed",
    "relaxed_parameters",
    "resolve_device",
    "routed_loss",
    "runtime",
    "sample_iterations",
    "saved_activation_bytes",
    "scored_cross_entropy",
    "seed_everything",
    "sharing",
    "similarity",
    "source_parameter_formula",
    "strategy_for_map",
    "train",
    "training_memory_bytes",
    "training_state_bytes",
    "universal",
    "unshared_naive_stack",
    "validate_sharing",
    "validation",
    "windows_loss",
]
