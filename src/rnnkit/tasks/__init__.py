"""Recipes: each task binds a dataset reader, a model factory, loss, metrics and the run-folder format."""
