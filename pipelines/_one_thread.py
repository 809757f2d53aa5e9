"""Imported only by the fork server that starts Dask worker processes (``PRELOAD`` in
:mod:`pipelines.cluster`): every worker it forks starts with OpenCV's thread pool at one
thread.

A worker is one process with one task thread on one core; OpenCV's own pool (one thread
per core by default) would oversubscribe the cores whatever pipeline runs (build shard
tasks also set it themselves).  BLAS and OpenMP pools are already one thread:
distributed sets ``OMP_NUM_THREADS`` and friends before the fork server starts.
"""

import cv2

cv2.setNumThreads(1)
