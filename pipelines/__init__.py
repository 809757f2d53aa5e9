"""Dask graphs over the core library: no image logic here, only scheduling."""
