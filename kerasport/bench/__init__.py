"""Benchmarks of the kerasport runtime against Keras as DeepVariant runs it.

`kerasport bench BUNDLE --model MODEL.keras` replays DeepVariant's real per-region workload,
times single calls by batch size, and measures what a process costs (cold start, resident
memory, peak memory on huge regions, throughput with several processes). Every measurement
runs in a fresh subprocess (`worker.py`, `probe.py`) so that each one imports only the engine
it measures: a TensorFlow import can never inflate the runtime's numbers, and Keras' backend
(TensorFlow or JAX), which is fixed at import, can differ between measurements.

Importing this package loads nothing heavy.
"""

from kerasport.errors import KerasportError


class BenchError(KerasportError):
    """A benchmark cannot run: no trace, unusable examples, or a measurement process failed."""
