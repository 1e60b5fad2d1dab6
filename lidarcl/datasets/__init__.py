"""Datasets, info indexes and transforms. Importing this package registers them."""
