"""Pure computation for MIMAMO Net: arrays in, arrays out. Knows nothing of Dask, Zarr or dataset layouts."""
