"""The trainer: learns from the feature cache only (pipeline/store.py), never opens a video.

data.py (sequences streamed from Zarr), model.py (MIMAMO Net), metrics.py (CCC/PCC/RMSE, 1-CCC loss),
trainer.py (TrainConfig, train, check_fingerprints), report.py (logs, predictions, plots), ablate.py (grids),
synth.py (a small learnable synthetic cache for tests and benchmarks).
"""
