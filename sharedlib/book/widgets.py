"""Interactive explorers for Jupyter and Colab (chapters 3 and 4); the static book shows
the same figures."""

from __future__ import annotations

import html
from dataclasses import replace

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display

from ..config import TransformerConfig
from ..counting import count_parameters, parameter_breakdown
from ..sharing import NEEDS_N_UNIQUE, STRATEGIES, layer_to_block
from .plots import plot_parameter_breakdown

__all__ = ["LayerMapExplorer", "ParameterExplorer"]


def breakdown_html(config: TransformerConfig) -> str:
    """An HTML table of ``config``'s parameters by part, beside the unshared model of
    the same shape."""
    unshared = replace(config, strategy="none", n_unique=None, inner_group_num=1)
    base_parts = parameter_breakdown(unshared)
    rows = "".join(
        f"<tr><td>{part}</td><td align='right'>{n:,}</td>"
        f"<td align='right'>{base_parts[part]:,}</td></tr>"
        for part, n in parameter_breakdown(config).items()
    )
    total, base = count_parameters(config), count_parameters(unshared)
    return (
        f"<table><tr><th>part</th><th>{html.escape(config.strategy)}</th>"
        f"<th>none</th></tr>{rows}"
        f"<tr><th>total</th><th align='right'>{total:,}</th>"
        f"<th align='right'>{base:,}</th></tr></table>"
        f"<p>{config.strategy!r} keeps {total / base:.1%} of the unshared "
        "parameters.</p>"
    )


class ParameterExplorer(widgets.VBox):
    """Sliders for the shape, a strategy dropdown, and a live table and chart of unique
    parameters."""

    def __init__(self, config: TransformerConfig | None = None) -> None:
        c = config or TransformerConfig(n_layers=12, d_model=768, n_heads=12, d_ff=3072)
        self.controls = {
            "n_layers": widgets.IntSlider(c.n_layers, 1, 48, description="layers N"),
            "d_model": widgets.IntSlider(
                c.d_model, 64, 2048, 64, description="width H"
            ),
            "d_ff": widgets.IntSlider(c.d_ff, 64, 8192, 64, description="FFN d_ff"),
            "n_heads": widgets.IntSlider(c.n_heads, 1, 32, description="heads"),
            "vocab_size": widgets.IntSlider(
                c.vocab_size, 1000, 100000, 1000, description="vocab V"
            ),
            "embedding_size": widgets.IntSlider(
                c.embedding_size or 0, 0, 1024, 32, description="E (0: H)"
            ),
            "strategy": widgets.Dropdown(
                options=STRATEGIES, value=c.strategy, description="strategy"
            ),
            "n_unique": widgets.IntSlider(
                c.n_unique or 1, 1, 48, description="unique M"
            ),
        }
        self.table = widgets.HTML()
        self.chart = widgets.Output()
        for control in self.controls.values():
            control.observe(self.update, "value")
        super().__init__(
            [
                widgets.HBox([widgets.VBox(list(self.controls.values())), self.table]),
                self.chart,
            ]
        )
        self.update()

    def config(self) -> TransformerConfig:
        """The config the controls describe; ``ValueError`` if they do not fit."""
        values = {name: control.value for name, control in self.controls.items()}
        values["embedding_size"] = values["embedding_size"] or None
        if values["strategy"] not in NEEDS_N_UNIQUE:
            values["n_unique"] = None
        return TransformerConfig(**values)

    def update(self, _change: object = None) -> None:
        """Recompute the table and chart; an invalid combination shows its error."""
        try:
            config = self.config()
        except ValueError as error:
            self.table.value = (
                f"<p style='color:#b00'><b>Invalid:</b> {html.escape(str(error))}</p>"
            )
            return
        self.table.value = breakdown_html(config)
        unshared = replace(config, strategy="none", n_unique=None)
        fig = plot_parameter_breakdown({"none": unshared, config.strategy: config})
        self.chart.clear_output(wait=True)
        with self.chart:
            display(fig)
        plt.close(fig)


class LayerMapExplorer(widgets.VBox):
    """Pick N, M and a strategy; see the layer -> block map, blocks kept (chapter 3)."""

    def __init__(
        self, n_layers: int = 12, n_unique: int = 3, strategy: str = "cycle-rev"
    ) -> None:
        self.controls = {
            "n_layers": widgets.IntSlider(n_layers, 1, 48, description="layers N"),
            "n_unique": widgets.IntSlider(n_unique, 1, 48, description="unique M"),
            "strategy": widgets.Dropdown(
                options=STRATEGIES, value=strategy, description="strategy"
            ),
        }
        self.view = widgets.HTML()
        for control in self.controls.values():
            control.observe(self.update, "value")
        super().__init__([widgets.HBox(list(self.controls.values())), self.view])
        self.update()

    def update(self, _change: object = None) -> None:
        """Redraw the map; an invalid (N, M, strategy) shows its ``ValueError``."""
        strategy, n = self.controls["strategy"].value, self.controls["n_layers"].value
        m = self.controls["n_unique"].value if strategy in NEEDS_N_UNIQUE else None
        try:
            maps = {
                part: layer_to_block(strategy, n, m, sublayer=part)
                for part in ("attention", "ffn")
            }
        except ValueError as error:
            self.view.value = (
                f"<p style='color:#b00'><b>Invalid:</b> {html.escape(str(error))}</p>"
            )
            return
        rows = "".join(
            f"<tr><td>{part}</td>{''.join(f'<td>{b}</td>' for b in blocks)}"
            f"<td>{len(set(blocks))} kept</td></tr>"
            for part, blocks in maps.items()
        )
        header = "".join(f"<th>{i}</th>" for i in range(n))
        self.view.value = f"<table><tr><th></th>{header}</tr>{rows}</table>"
