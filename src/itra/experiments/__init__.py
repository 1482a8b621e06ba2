"""Experiments: run directories, the paper's presets, tables read back from run directories."""
