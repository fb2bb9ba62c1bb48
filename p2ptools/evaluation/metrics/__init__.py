"""Metrics as layered pure functions: pixel errors, FID/KID, VGG feature cosine, FCN-score.

Each metric is a function of arrays (or of features from an injected network), so tests can check
known answers and use small networks; ``p2ptools.evaluation.evaluate`` composes them into reports.
"""
