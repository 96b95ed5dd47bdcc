"""Render the library reference (signatures and docstrings) for the README.

``python -m distsnn.cli.apidoc`` prints it; ``python -m distsnn.cli.apidoc --write README.md``
replaces the text between the ``<!-- api:start -->`` and ``<!-- api:end -->`` markers.
A test checks that the README is up to date.
"""
from __future__ import annotations

import inspect
import sys
from importlib import import_module
from pathlib import Path

#: (module, name, methods to document) in README order.
PUBLIC = [
    ("distsnn.compilers", "InferenceCompiler", ["compile"]),
    ("distsnn.compilers", "FewSpikeCompiler", []),
    ("distsnn.compilers", "CompiledInferenceNetwork",
     ["evaluate", "evaluate_batch_iter", "evaluate_batch", "predict", "kernel_times",
      "set_input", "step_time", "get_readout", "reset_time", "custom_update"]),
    ("distsnn.convert", "Converter", ["convert", "create_compiler", "pre_convert",
                                      "create_input_neurons", "create_neurons", "post_convert",
                                      "validate_tf_layer"]),
    ("distsnn.convert", "Simple", []),
    ("distsnn.convert", "DataNorm", []),
    ("distsnn.convert", "FewSpike", []),
    ("distsnn.convert", "QCFSConverter", []),
    ("distsnn.convert", "InputType", []),
    ("distsnn.convert", "convert_nir", []),
    ("distsnn.convert", "make_preset", []),
    ("distsnn.data.events", "raster_to_network", []),
    ("distsnn.spike_norm", "spike_normalise", []),
    ("distsnn.communicators", "MPI", []),
    ("distsnn.communicators", "SerialCommunicator", []),
    ("distsnn.callbacks", "BatchProgressBar", []),
    ("distsnn.callbacks", "SpikeRecorder", []),
    ("distsnn.callbacks", "VarRecorder", []),
    ("distsnn.callbacks", "CustomHook", []),
    ("distsnn.callbacks", "Callback", []),
    ("distsnn.callbacks", "Checkpoint", []),
    ("distsnn.callbacks", "CustomUpdateOnBatchBegin", []),
    ("distsnn.callbacks", "CustomUpdateOnBatchEnd", []),
    ("distsnn.callbacks", "CustomUpdateOnTimestepBegin", []),
    ("distsnn.callbacks", "CustomUpdateOnTimestepEnd", []),
    ("distsnn.metrics", "SparseCategoricalAccuracy", []),
    ("distsnn.metrics", "TopKAccuracy", []),
    ("distsnn.metrics", "MeanSquareError", []),
    ("distsnn.metrics", "ConfusionMatrix", []),
    ("distsnn.network", "Network", []),
    ("distsnn.network", "Population", []),
    ("distsnn.network", "Connection", []),
    ("distsnn.network", "SequentialNetwork", []),
    ("distsnn.network", "InputLayer", []),
    ("distsnn.network", "Layer", []),
    ("distsnn.neurons", "LeakyIntegrate", []),
    ("distsnn.neurons", "LeakyIntegrateFire", []),
    ("distsnn.neurons", "SpikeInput", []),
    ("distsnn.neurons", "SpikingMax", []),
    ("distsnn.connectivity", "Conv2DTranspose", []),
    ("distsnn.connectivity", "DepthwiseConv2D", []),
    ("distsnn.connectivity", "MaxPool2D", []),
    ("distsnn.utils.data", "preprocess_spikes", []),
    ("distsnn.netfile", "load_network", []),
    ("distsnn.netfile", "save_network", []),
]
START, END = "<!-- api:start -->", "<!-- api:end -->"


def _signature(obj) -> str:
    try:
        text = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"
    return text.replace("self, ", "").replace("(self)", "()")


def _doc(obj) -> str:
    return inspect.cleandoc(obj.__doc__ or "").strip()


def render() -> str:
    parts = []
    for module, name, methods in PUBLIC:
        obj = getattr(import_module(module), name)
        heading = f"`{module}.{name}{_signature(obj) if callable(obj) else ''}`"
        parts.append(f"#### {heading}\n\n{_doc(obj)}\n")
        for method in methods:
            fn = getattr(obj, method)
            parts.append(f"- `{method}{_signature(fn)}`: {_doc(fn).splitlines()[0] if _doc(fn) else ''}")
        if methods:
            parts.append("")
    return "\n".join(parts).strip() + "\n"


def update(readme: Path) -> bool:
    """Rewrite the API section of ``readme``; True if it changed."""
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme}: missing {START} / {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{render()}{END}{tail}"
    readme.write_text(new)
    return new != text


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        update(Path(sys.argv[2]))
    else:
        print(render())
