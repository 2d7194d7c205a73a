"""The trainer: learns from the feature cache only (pipeline/store.py), never opens a video.

config.py (TrainConfig, a run's identity), videos.py (which videos, checked in their groups; folds by recording),
protocol.py (what is held out, how videos are sampled and scored), data.py (sequences or snippets streamed from
Zarr), model.py (MIMAMO Net), metrics.py (CCC/PCC/RMSE, 1-CCC loss), trainer.py (train = prepare, start, fit,
finalize), evaluate.py (predictions and scores), checkpoint.py (plain checkpoints, loaded weights_only), report.py
(logs, predictions, plots), ablate.py (grids), predict.py (new videos, cached videos; csv and ABAW files), synth.py (a
small learnable synthetic cache for tests and benchmarks).
"""
