"""kerasport: export a small Keras classifier to ONNX, serve it without TensorFlow, verify it.

The top-level package imports nothing heavy, so `import kerasport.runtime` in a production
process costs only numpy and onnxruntime.
"""

__version__ = "0.1.0"
