"""The names of what ``rnnkit export`` writes and of the quantizations a model can run with: the values the export
code accepts and the command line offers (no torch here, so that building the parser stays fast)."""

#: export formats (the first is the default)
EXPORT_FORMATS = ("onnx", "torchscript")
#: quantizations of an exported model (``export``, ``predict``, ``serve``)
QUANTIZE = ("int8",)
