"""QCFS conversion of clip-trained ANNs (Bu et al., ICLR 2022, "Optimal ANN-SNN conversion for
high-accuracy and ultra-low-latency spiking neural networks").

QCFS trains every hidden ReLU clipped at a trainable per-layer λ and quantised to L levels
(``floor(x L / λ + 0.5) λ / L``, straight-through gradient); the model is exported with the
clip only (``ReLU(max_value=λ)`` / ``Clip(0, λ)``: no Floor or Div reaches the converter).
The SNN takes each layer's λ as its threshold scale, starts every membrane at half the
threshold and resets by subtraction, with no normalisation data: after n steps of a
constant current ``a`` a neuron has fired ``clip(floor(n a / λ + 1/2), 0, n)`` times, the
QCFS activation with ``L = n`` (rounding, where a membrane starting at 0 floors), which makes
the expected conversion error zero at any n.
"""
from __future__ import annotations

from distsnn.convert.converters import DataNormOutput, Simple
from distsnn.convert.enums import InputType, Readout
from distsnn.convert.plan import layer_error
from distsnn.neurons import IntegrateFire, IntegrateFireInput, Integrator, Neuron


class QCFSConverter(Simple):
    """QCFS: thresholds from the model's clips, membranes starting at half the threshold.

    Weights and biases are balanced as in :class:`~distsnn.convert.DataNorm`, with each
    population's λ its clip value (the output's λ is its sources' largest, threshold 1, unless
    it is clipped too); every hidden activation must be clipped. Defaults: analog input (the
    first layer receives ``W x + b``) and analog readout, as in the paper. Options:
    ``biases`` and ``readout`` (see :class:`~distsnn.convert.Simple`); the reset is always
    by subtraction.
    """

    method = "qcfs"
    clips = True
    _options = ("biases", "readout")

    def __init__(self, evaluate_timesteps: int, signed_input: bool = False,
                 input_type: InputType = InputType.ANALOG, **options):
        options.setdefault("readout", Readout.ANALOG)
        super().__init__(evaluate_timesteps, signed_input, input_type, **options)

    def pre_convert(self, model) -> DataNormOutput:
        graph = self.conversion_graph(model)
        scales, reference, thresholds = {}, {}, {}
        for spec in graph.populations:
            if spec.is_input:
                scales[spec] = 1.0
                continue
            if spec.clip is None and not spec.is_output:
                raise layer_error(spec.layer, "is a ReLU without a clip, but QCFS takes each "
                                              "layer's threshold from its trained clip λ",
                                  "clip every hidden activation (ReLU(max_value=λ), Clip(0, λ)) "
                                  "or use data-norm")
            ref = max(scales[t.source] for t in spec.terms)
            lam = spec.clip if spec.clip is not None else ref
            scales[spec], reference[spec], thresholds[spec.layer] = lam, ref, lam / ref
        return DataNormOutput(thresholds, scales, reference, 1.0, 0)

    def create_input_neurons(self, pre_convert_output) -> Neuron:
        neuron = super().create_input_neurons(pre_convert_output)
        if isinstance(neuron, IntegrateFireInput):
            neuron.v = 0.5 * neuron.v_thresh
        return neuron

    def create_neurons(self, keras_layer, pre_convert_output, is_output: bool) -> Neuron:
        if is_output and self.readout is Readout.ANALOG:
            return Integrator()
        theta = float(pre_convert_output.thresholds[keras_layer])
        return IntegrateFire(v_thresh=theta, v=0.5 * theta, reset="subtract",
                             readout="spike_count" if is_output else None)

    def connection_scale(self, source, target, pre_convert_output) -> float:
        return pre_convert_output.scales[source] / pre_convert_output.reference[target]

    def convert_bias(self, spec, pre_convert_output):
        if spec.bias is None:
            return None
        return spec.bias / pre_convert_output.reference[spec]

    def parameters(self) -> dict:
        params = super().parameters()
        del params["reset"]  # always by subtraction
        return params
