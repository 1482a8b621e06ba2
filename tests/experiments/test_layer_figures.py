"""Each layer-wise figure writes a PNG from layer-wise views held in memory (hand-made `layers.json`)."""
import pytest

from itra.experiments import layer_figures
from itra.experiments.layerwise import aggregate_layers

from tests.experiments.test_figures import is_png
from tests.experiments.test_layerwise import layers_json


@pytest.mark.parametrize("separate, widths", [(True, (8, 8, 8)), (False, (8, 8, 8)), (False, (4, 6, 8))])
def test_plot_layers_draws_the_heat_maps_curves_and_early_exit(tmp_path, separate, widths):
    path = layer_figures.plot_layers(layers_json(separate, widths), "vit-ce: CE, epoch 2", tmp_path / "layers.png")
    assert path == tmp_path / "layers.png" and is_png(path)


def test_plot_early_exit_and_exit_accuracy_compare_configs(tmp_path):
    shared, separate = layers_json(separate=False), layers_json(separate=True, accuracy=(30.0, 50.0, 85.0))
    rows = {"CE": aggregate_layers([shared, layers_json(separate=False, accuracy=(42.0, 61.0, 79.0))]),
            "multi-exit": aggregate_layers([separate])}
    assert is_png(layer_figures.plot_exit_accuracy(rows, tmp_path / "exit_accuracy.png"))
    curves = {"CE": rows["CE"]["early_exit"]["shared"], "multi-exit, own heads": separate["early_exit"]["separate"]}
    assert is_png(layer_figures.plot_early_exit(curves, tmp_path / "early_exit.png"))
