"""The control loops: the saturation engine, the scale-from-zero engine, the
watch-driven targets pass, the controller that runs them and its `wva_*` metrics."""
