"""mlGeNN-compatible converters: ``Converter``, ``Simple``, ``DataNorm`` and ``FewSpike``.

``convert(model)`` plans the network with the model's front-end (Keras or ONNX, see
:mod:`~distsnn.convert.frontends`), then
calls the overridable steps in mlGeNN's order: ``pre_convert``, ``create_input_neurons`` /
``create_neurons`` per population, the connections, and ``post_convert``. Two extra hooks,
``connection_scale`` and ``convert_bias``, let the rate-coded data normalisation rescale
weights and biases consistently with its thresholds.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from distsnn.convert.enums import LINEAR, RELU, SOFTMAX, InputType, Readout, clip_value
from distsnn.convert.errors import ConversionError, NormDataError
from distsnn.convert.frontends import open_model
from distsnn.convert.maxpool import (
    check_not_output,
    few_spike_tree,
    max_pool_op,
    settle_trees,
    term_max_pool,
)
from distsnn.convert.norm import NormData, RunningStat, Statistics, collect
from distsnn.convert.plan import ConversionGraph, LayerInfo, PopulationSpec, layer_error
from distsnn.convert.terms import lower
from distsnn.network import Network, Population
from distsnn.neurons import (
    FEW_SPIKE_ROUNDINGS,
    RESET_MODES,
    AnalogInput,
    BinarySpikeInput,
    FewSpikeRelu,
    FewSpikeReluInput,
    IntegrateFire,
    IntegrateFireInput,
    Integrator,
    Neuron,
    PoissonInput,
    SpikingMax,
)

log = logging.getLogger(__name__)
BIAS_MODES = ("current", "reject")


class Converter:
    """Base class of all converters (mlGeNN's ``ml_genn_tf.converters.Converter``)."""

    method = "custom"
    biases = "current"
    #: Whether the method reproduces clipped ReLUs (ReLU6) exactly.
    clips = False

    # -- mlGeNN's overridable steps -------------------------------------------------------
    def pre_convert(self, model) -> Any:
        """Converter-specific state computed from the Keras model before conversion."""
        return None

    def create_input_neurons(self, pre_convert_output) -> Neuron:
        """The neuron model of the input populations."""
        raise NotImplementedError

    def create_neurons(self, keras_layer, pre_convert_output, is_output: bool) -> Neuron:
        """The neuron model of the population owned by ``keras_layer``."""
        raise NotImplementedError

    def post_convert(self, network: Network, inputs: list[Population],
                     outputs: list[Population]) -> None:
        """Post-process the complete network (in place)."""

    def validate_tf_layer(self, keras_layer, config: LayerInfo) -> None:
        """Reject activations a spiking network cannot reproduce (and biases if asked)."""
        kind = config.activation
        if clip_value(kind) is not None:
            if not self.clips:
                raise layer_error(keras_layer, f"is a ReLU clipped at {clip_value(kind):g}, which "
                                               f"{self.method} conversion does not reproduce",
                                  "use data-norm, qcfs or few-spike (DataNorm, QCFSConverter, "
                                  "FewSpike), which reproduce the clip")
        elif kind is not None and kind not in (LINEAR, RELU):
            if kind == SOFTMAX:
                if not config.is_output:
                    raise layer_error(keras_layer, "softmax is only supported on output layers",
                                      "use relu in hidden layers")
            elif kind.startswith("ReLU("):
                raise layer_error(keras_layer, f"{kind} is not supported (a spiking neuron "
                                               f"approximates a plain ReLU)",
                                  "use ReLU() without negative_slope or threshold")
            elif kind.startswith("Clip("):
                raise layer_error(keras_layer, f"{kind} is not supported: a spiking neuron's "
                                               f"output starts at 0",
                                  "clip from 0 (Relu, or Clip(0, m) as ReLU6 exports)")
            else:
                raise layer_error(keras_layer, f"activation {kind!r} is not supported",
                                  "use relu in hidden layers and relu, softmax or linear on "
                                  "outputs")
        if config.has_bias and self.biases == "reject":
            raise layer_error(keras_layer, "has a bias, and biases='reject' was asked",
                              "use use_bias=False, or biases='current' (constant input current)")

    def create_max_pool_neurons(self, spec: PopulationSpec, pre_convert_output) -> Neuron:
        """The neurons of a max-pool population (rate methods: spike-count maxima)."""
        return SpikingMax()

    def connect_term(self, network: Network, source: Population, target: Population, term,
                     scale: float) -> None:
        """Connect ``source`` to ``target`` as planned term ``term`` with weights * ``scale``."""
        network.connect(source, target, lower(term, scale))

    def create_compiler(self, **kwargs):
        """A compiler for the networks this converter makes."""
        from distsnn.compilers import InferenceCompiler

        return InferenceCompiler(**kwargs)

    # -- distsnn extensions ---------------------------------------------------------------
    def connection_scale(self, source: PopulationSpec, target: PopulationSpec,
                         pre_convert_output) -> float:
        """Factor applied to the weights of the connection ``source -> target``."""
        return 1.0

    def convert_bias(self, spec: PopulationSpec, pre_convert_output) -> Optional[np.ndarray]:
        """The neurons' ``bias`` (per neuron, population shape) for a population's ANN bias."""
        return spec.bias

    def parameters(self) -> dict:
        """The method's parameters, recorded in ``network.metadata``."""
        return {}

    def conversion_graph(self, model) -> ConversionGraph:
        """The planned populations of ``model`` (computed once per model object)."""
        cached = getattr(self, "_graph_cache", None)
        if cached is None or cached[0] is not model:
            graph = open_model(model).build_graph(self._validate_layer)
            self._graph_cache = (model, graph)
        return self._graph_cache[1]

    def _validate_layer(self, layer, config: LayerInfo) -> None:
        """``validate_tf_layer`` with ``config.tf_layer`` set, as mlGeNN's config has it."""
        if config.tf_layer is None:
            config.tf_layer = layer
        self.validate_tf_layer(layer, config)

    # -- conversion -----------------------------------------------------------------------
    def convert(self, model):
        """Convert a ``keras.Model``, a ``.keras``/``.h5`` file, an ``onnx.ModelProto`` or an
        ``.onnx`` file.

        Returns ``(network, input_populations, output_populations, {layer: Population})``,
        the layers being Keras layers or ONNX nodes (:class:`~distsnn.convert.onnx_graph.Node`).
        """
        frontend = open_model(model)
        model = frontend.model
        graph = frontend.build_graph(self._validate_layer)
        self._graph_cache = (model, graph)
        pre = self.pre_convert(model)
        network = Network()
        pops: dict[PopulationSpec, Population] = {}
        for spec in graph.populations:
            if spec.is_input:
                neuron = self.create_input_neurons(pre)
            elif max_pool_op(spec) is not None:
                check_not_output(spec)
                neuron = self.create_max_pool_neurons(spec, pre)
            else:
                neuron = self.create_neurons(spec.layer, pre, spec.is_output)
                self._set_bias(spec, neuron, pre)
            pops[spec] = network.add_population(spec.name, spec.shape, neuron)
        for spec in graph.populations:
            for term in spec.terms:
                scale = self.connection_scale(term.source, spec, pre)
                self.connect_term(network, pops[term.source], pops[spec], term, scale)
        network.inputs = [pops[s] for s in graph.inputs]
        network.outputs = [pops[s] for s in graph.outputs]
        inputs, outputs = list(network.inputs), list(network.outputs)
        self.post_convert(network, inputs, outputs)
        network.metadata.update(self._metadata(graph, network, pre))
        layer_pops = {layer: pops[spec] for layer, spec in graph.layer_pops.items()}
        return network, inputs, outputs, layer_pops

    def _set_bias(self, spec: PopulationSpec, neuron: Neuron, pre) -> None:
        bias = self.convert_bias(spec, pre)
        if bias is None or not np.any(bias):
            return  # no bias, or an all-zero one (Keras' default initialiser): nothing to add
        if not hasattr(neuron, "bias"):
            raise layer_error(spec.layer, f"has a bias but {type(neuron).__name__} neurons "
                                          f"cannot take one")
        neuron.bias = np.ascontiguousarray(np.broadcast_to(bias, spec.shape),
                                           np.float32).reshape(-1)

    def _metadata(self, graph: ConversionGraph, network: Network, pre) -> dict:
        thresholds, alphas = {}, {}
        for pop in network.populations:
            if isinstance(pop.neuron, (IntegrateFire, IntegrateFireInput)):
                thresholds[pop.name] = _scalar(pop.neuron.v_thresh)
            if isinstance(pop.neuron, (FewSpikeRelu, FewSpikeReluInput)):
                alphas[pop.name] = float(pop.neuron.alpha)
        meta = {
            "method": self.method,
            "method_params": self.parameters(),
            "framework": graph.frontend.framework,
            **graph.frontend.metadata(graph),
            "norm_examples": getattr(pre, "num_examples", 0),
        }
        if thresholds:
            meta["thresholds"] = thresholds
        if alphas:
            meta["alphas"] = alphas
        scales = getattr(pre, "scales", None)
        if scales:
            meta["scales"] = {spec.name: float(v) for spec, v in scales.items()}
        return meta


def _scalar(value) -> Any:
    array = np.asarray(value)
    return float(array) if array.ndim == 0 else array.astype(float).tolist()


def _parse_options(converter, options: dict, allowed: tuple[str, ...]) -> dict:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"{type(converter).__name__}() got unknown option(s) {unknown}; "
                        f"options are {list(allowed)}")
    biases = options.get("biases", "current")
    if biases not in BIAS_MODES:
        raise ConversionError(f"biases must be one of {BIAS_MODES}, not {biases!r}")
    converter.biases = biases
    return options


# ---------------------------------------------------------------------------------------------
# rate-coded conversion


class Simple(Converter):
    """Integrate-and-fire neurons with threshold 1 and unchanged weights (rate coding).

    A neuron then fires at about ``max(0, W r + b)`` spikes per step for source rates r, so
    a Keras bias b is the constant current ``b`` added to ``V`` every step (the scale of every
    population is 1; see :class:`DataNorm` for the general case).

    ``input_type=InputType.ANALOG`` drives the first weighted layer with its exact ANN
    input ``W x + b`` (computed once per example) instead of input spikes; ``readout="analog"``
    makes the output layer non-spiking and predicts the largest mean input (both as the
    PyTorch converters do; mlGeNN's defaults are Poisson input and spike counts).

    Options: ``reset`` ("subtract", the default, which keeps the residual and makes the rate
    exactly proportional to the input, as in snntoolbox, SpikingJelly and Sinabs; or "zero",
    mlGeNN's IntegrateFire, which loses accuracy), ``biases`` ("current", the
    default, or "reject" to refuse models with biases as mlGeNN does), ``readout``
    ("spikes", the default, or "analog").
    """

    method = "simple"
    _options = ("reset", "biases", "readout")

    def __init__(self, evaluate_timesteps: int, signed_input: bool = False,
                 input_type: InputType = InputType.POISSON, **options):
        self.evaluate_timesteps = int(evaluate_timesteps)
        if self.evaluate_timesteps < 1:
            raise ConversionError(f"evaluate_timesteps must be at least 1, not "
                                  f"{evaluate_timesteps}")
        self.signed_input = bool(signed_input)
        value = input_type.value if isinstance(input_type, InputType) else str(input_type)
        try:
            self.input_type = InputType(value.lower())
        except ValueError:
            raise ConversionError(f"input_type must be one of {[t.value for t in InputType]}, "
                                  f"not {input_type!r}") from None
        options = _parse_options(self, options, self._options)
        self.reset = options.get("reset", "subtract")
        if self.reset not in RESET_MODES:
            raise ConversionError(f"reset must be one of {RESET_MODES}, not {self.reset!r}")
        readout = options.get("readout", Readout.SPIKES)
        try:
            self.readout = Readout(readout.value if isinstance(readout, Readout) else readout)
        except ValueError:
            raise ConversionError(f"readout must be one of {[r.value for r in Readout]}, not "
                                  f"{readout!r}") from None

    def input_threshold(self, pre_convert_output) -> float:
        return 1.0

    def create_input_neurons(self, pre_convert_output) -> Neuron:
        if self.input_type is InputType.ANALOG:
            return AnalogInput()
        if self.input_type is InputType.IF:
            return IntegrateFireInput(v_thresh=self.input_threshold(pre_convert_output),
                                      reset=self.reset, signed_input=self.signed_input)
        if self.input_type is InputType.SPIKE:
            return BinarySpikeInput(signed_input=self.signed_input)
        return PoissonInput(signed_input=self.signed_input)

    def threshold(self, keras_layer, pre_convert_output) -> float:
        return 1.0

    def create_neurons(self, keras_layer, pre_convert_output, is_output: bool) -> Neuron:
        if is_output and self.readout is Readout.ANALOG:
            return Integrator()
        return IntegrateFire(v_thresh=self.threshold(keras_layer, pre_convert_output),
                             reset=self.reset, readout="spike_count" if is_output else None)

    def create_compiler(self, **kwargs):
        from distsnn.compilers import InferenceCompiler

        return InferenceCompiler(evaluate_timesteps=self.evaluate_timesteps, **kwargs)

    def parameters(self) -> dict:
        return {"evaluate_timesteps": self.evaluate_timesteps, "signed_input": self.signed_input,
                "input_type": self.input_type.value, "reset": self.reset,
                "biases": self.biases, "readout": self.readout.value}


@dataclass
class DataNormOutput:
    """``DataNorm.pre_convert``'s result: thresholds by Keras layer and scales λ by population.

    ``reference[spec]`` is the largest λ of the population's sources (its "previous layer").
    """

    thresholds: dict
    scales: dict
    reference: dict
    input_scale: float
    num_examples: int


class DataNorm(Simple):
    """Data-based threshold balancing (Diehl et al. 2015), through residual branches.

    Each population P gets a scale λ_P: the maximum (or ``percentile``, of the non-zero
    values, as in snntoolbox) of its ANN activation ``relu(value)`` over the normalisation
    data, so that P fires at the rate ``r_P = a_P / λ_P`` spikes per step. The input's λ is
    the threshold of IF input neurons (the data's maximum, or maximum magnitude when signed),
    and 1 for Poisson/spike/analog inputs (whose rate, or current, is x itself).

    With sources S feeding P and ``λ_ref = max_S λ_S``, the neuron integrates per step
    ``I = sum_S (λ_S / λ_ref) W_S r_S + b / λ_ref`` and fires at ``I / θ_P`` with
    ``θ_P = λ_P / λ_ref``, i.e. at ``(sum_S W_S a_S + b) / λ_P = a_P / λ_P`` as required:

    * weights from each source are scaled by ``λ_S / λ_ref`` (exactly 1, the Keras kernel,
      for a single source, which is mlGeNN's threshold balancing; at most 1 on Add merges);
    * the Keras bias b becomes the constant per-step current ``b / λ_ref``;
    * a population that never fires on the data keeps ``λ_P = λ_ref`` (threshold 1);
    * a clipped ReLU (ReLU6, ``Clip(0, m)``) takes ``λ_P = m`` whatever the data: an IF
      neuron with reset by subtraction fires at most one spike per step, so its rate
      ``min(I / θ_P, 1)`` is ``min(a, m) / m``, the clip itself (exact for the constant
      current of analog input; a rate-coded input is exact on average, as for a ReLU).

    Unlike mlGeNN, the walk does not stop at the first branch, an output's λ comes from its
    pre-softmax value (what its neurons integrate) and the kernels' maxima are not mixed in.

    Options: those of :class:`Simple`, plus ``x_name`` (array name in .npz/.h5 files) and
    ``norm_batch_size`` (examples per batch of the statistics pass, 256).
    """

    method = "data-norm"
    clips = True
    _options = Simple._options + ("x_name", "norm_batch_size")

    def __init__(self, evaluate_timesteps: int, signed_input: bool = False, norm_data=None,
                 input_type: InputType = InputType.POISSON, percentile: float = 100.0,
                 **options):
        extra = {k: options.pop(k) for k in ("x_name", "norm_batch_size") if k in options}
        super().__init__(evaluate_timesteps, signed_input, input_type, **options)
        if norm_data is None:
            raise NormDataError("DataNorm needs normalisation data: pass norm_data= an array "
                                "of training inputs, an array file (.npz/.npy/.h5) or "
                                "[batched tf.data.Dataset]")
        self.percentile = float(percentile)
        if not 0.0 < self.percentile <= 100.0:
            raise ConversionError(f"percentile must be in (0, 100], not {percentile}")
        self.norm_data = NormData(norm_data, x_name=extra.get("x_name", "x"),
                                  batch_size=extra.get("norm_batch_size", 256))

    def pre_convert(self, model) -> DataNormOutput:
        graph = self.conversion_graph(model)
        stats, by_spec = population_statistics(graph, self.norm_data, self.percentile)
        if self.input_type is InputType.IF:
            in_scale = stats.input_abs_max if self.signed_input else stats.input_max
            in_scale = in_scale if in_scale > 0 else 1.0
        else:
            in_scale = 1.0
            if stats.input_abs_max > 1.0 and self.input_type is not InputType.ANALOG:
                log.warning("inputs reach %.3g, but %s input rates above 1 spike per step "
                            "saturate; scale the data to [0, 1] or use input_type='if'",
                            stats.input_abs_max, self.input_type.value)
        scales, reference, thresholds = {}, {}, {}
        for spec in graph.populations:
            if spec.is_input:
                scales[spec] = in_scale
                continue
            ref = max(scales[t.source] for t in spec.terms)
            if max_pool_op(spec) is not None:  # keeps its source's units, has no threshold
                scales[spec] = reference[spec] = ref
                continue
            # a clipped ReLU: saturating at one spike per step is the clip, exactly
            lam = spec.clip if spec.clip is not None else by_spec[spec].percentile(
                self.percentile)
            if lam <= 0.0:
                log.warning("population %r is never active on the normalisation data; it keeps "
                            "threshold 1", spec.name)
                lam = ref
            scales[spec], reference[spec] = lam, ref
            thresholds[spec.layer] = lam / ref
        return DataNormOutput(thresholds, scales, reference, in_scale, stats.num_examples)

    def input_threshold(self, pre_convert_output) -> float:
        return float(pre_convert_output.input_scale)

    def threshold(self, keras_layer, pre_convert_output) -> float:
        return float(pre_convert_output.thresholds[keras_layer])

    def connection_scale(self, source, target, pre_convert_output) -> float:
        return pre_convert_output.scales[source] / pre_convert_output.reference[target]

    def convert_bias(self, spec, pre_convert_output):
        if spec.bias is None:
            return None
        return spec.bias / np.float32(pre_convert_output.reference[spec])

    def parameters(self) -> dict:
        return {**super().parameters(), "percentile": self.percentile,
                "norm_data": self.norm_data.description}


# ---------------------------------------------------------------------------------------------
# few-spike conversion


@dataclass
class FewSpikeOutput:
    """``FewSpike.pre_convert``'s result: α by Keras layer and the input's α."""

    layer_alpha: dict
    input_alpha: float
    num_examples: int = 0


class FewSpike(Converter):
    """Few-spike conversion (Stöckl & Maass 2021): K steps per value, α per layer.

    With normalisation data each population's α is the maximum of its ANN activation over the
    data divided by ``1 - 2^-K`` (so the maximum is representable); the unsigned input's α is
    ``max(x) / (1 - 2^-K)`` and the signed input's ``max|x| / (1 - 2^-(K/2))`` (K even).
    Every population keeps its own α, the finest code for its range (mlGeNN makes the sources
    of a target share the largest of theirs); the GeNN lowering scales the weights of a source
    by its α over the largest α among its target's sources, which decodes them all.
    Biases are added to the pre-activation ``W x_hat + bias`` in ANN units.
    A clipped ReLU at m (ReLU6) takes ``α = m / (1 - 2^-K)`` whatever the data: its code
    saturates at ``α (1 - 2^-K) = m``, which is the clip, exactly.
    ``rounding`` (distsnn's): ``"floor"`` (mlGeNN's code) or ``"nearest"``, which rounds every
    code to the nearest of its steps: errors of zero mean, which add up far less over deep
    networks (``benchmarks/torchvision_models.py``). ``headroom`` (distsnn's) multiplies
    the hidden populations' data-derived α: inputs that drive activations up to ``headroom``
    times the normalisation data's maxima are coded without saturating, at the cost of
    ``log2(headroom)`` bits of resolution.
    """

    method = "few-spike"
    clips = True
    _options = ("biases", "x_name", "norm_batch_size")

    def __init__(self, k: int = 10, alpha: float = 25, signed_input: bool = False,
                 norm_data=None, rounding: str = "floor", headroom: float = 1.0, **options):
        options = _parse_options(self, options, self._options)
        self.k, self.alpha, self.signed_input = int(k), float(alpha), bool(signed_input)
        if rounding not in FEW_SPIKE_ROUNDINGS:
            raise ConversionError(f"few-spike rounding must be one of "
                                  f"{', '.join(FEW_SPIKE_ROUNDINGS)}, not {rounding!r}")
        self.rounding = rounding
        if not headroom >= 1.0:
            raise ConversionError(f"few-spike headroom must be at least 1 (a factor on the "
                                  f"normalisation data's maxima), not {headroom}")
        self.headroom = float(headroom)
        if self.k < 1:
            raise ConversionError(f"k must be at least 1, not {k}")
        if self.signed_input and self.k % 2:
            raise ConversionError(f"signed few-spike input needs an even k (K/2 positive and K/2 "
                             f"negative steps), not k={self.k}")
        self.norm_data = None if norm_data is None else NormData(
            norm_data, x_name=options.get("x_name", "x"),
            batch_size=options.get("norm_batch_size", 256))

    def pre_convert(self, model) -> FewSpikeOutput:
        self._max_pool_trees: list = []
        graph = self.conversion_graph(model)
        full = 1.0 - 2.0 ** -self.k
        clipped = {spec.layer: spec.clip / full for spec in graph.populations
                   if spec.clip is not None}
        if self.norm_data is None:
            return FewSpikeOutput(clipped, self.alpha)
        stats, by_spec = population_statistics(graph, self.norm_data, 100.0)
        layer_alpha = {spec.layer: self.headroom * stat.maximum / full
                       for spec, stat in by_spec.items()
                       if stat.maximum > 0 and spec.clip is None}
        # A population never active on the data gets the smallest α found.
        fallback = min(layer_alpha.values(), default=self.alpha)
        layer_alpha.update(clipped)
        for spec, stat in by_spec.items():
            if stat.maximum <= 0 and spec.clip is None:
                log.warning("population %r is never active on the normalisation data; it uses "
                            "alpha=%g", spec.name, fallback)
                layer_alpha[spec.layer] = fallback
        if self.signed_input:
            input_alpha = stats.input_abs_max / (1.0 - 2.0 ** -(self.k // 2))
        else:
            input_alpha = stats.input_max / full
            if stats.input_min < 0:
                log.warning("the normalisation data have negative inputs, which unsigned "
                            "few-spike input encodes as 0; use signed_input=True")
        return FewSpikeOutput(layer_alpha, input_alpha if input_alpha > 0 else self.alpha,
                              stats.num_examples)

    def create_max_pool_neurons(self, spec, pre_convert_output) -> Neuron:
        """The pool's FewSpikeRelu, on its source's alpha (made equal in post_convert)."""
        return self.create_neurons(spec.layer, pre_convert_output, False)

    def connect_term(self, network, source, target, term, scale) -> None:
        """Max-pools become trees of ReLU populations (:func:`few_spike_tree`)."""
        pool = term_max_pool(term)
        if pool is None:
            super().connect_term(network, source, target, term, scale)
            return
        k, alpha = self.k, float(source.neuron.alpha)  # settle_trees sets their rounding
        tree = few_spike_tree(network, source, target, pool,
                              lambda: FewSpikeRelu(k=k, alpha=alpha))
        self._max_pool_trees.append((target, source, tree))

    def create_input_neurons(self, pre_convert_output) -> Neuron:
        return FewSpikeReluInput(k=self.k, alpha=float(pre_convert_output.input_alpha),
                                 signed_input=self.signed_input, rounding=self.rounding)

    def create_neurons(self, keras_layer, pre_convert_output, is_output: bool) -> Neuron:
        alpha = pre_convert_output.layer_alpha.get(keras_layer, self.alpha)
        return FewSpikeRelu(k=self.k, alpha=float(alpha), readout="var" if is_output else None,
                            rounding=self.rounding)

    def post_convert(self, network, inputs, outputs) -> None:
        """Refuse mixed signed and unsigned sources; give every max-pool its source's α
        (:func:`settle_trees`)."""
        check_source_codes(network)
        settle_trees(getattr(self, "_max_pool_trees", []))

    def create_compiler(self, **kwargs):
        from distsnn.compilers import FewSpikeCompiler

        return FewSpikeCompiler(k=self.k, **kwargs)

    def parameters(self) -> dict:
        return {"k": self.k, "alpha": self.alpha, "signed_input": self.signed_input,
                "rounding": self.rounding, "headroom": self.headroom, "biases": self.biases,
                "norm_data": None if self.norm_data is None else self.norm_data.description}


def check_source_codes(network: Network) -> None:
    """Refuse a population fed by the signed input and by unsigned codes: a target decodes
    all its sources' bits with one pattern. (Their alphas may differ: the GeNN lowering scales
    each source's weights by its alpha over the target's largest source alpha.)"""
    for pop in network.populations:
        sources = [c.source for c in network.incoming(pop)]
        signed = [p for p in sources if getattr(p.neuron, "signed_input", False)]
        if signed and len(signed) < len(sources):
            raise ConversionError(f"few-spike: the signed input {signed[0].name!r} and "
                                  f"{[p.name for p in sources if p not in signed]} feed the "
                                  f"same population, but their codes differ; use "
                                  f"signed_input=False")


# ---------------------------------------------------------------------------------------------
# statistics


def population_statistics(graph: ConversionGraph, norm: NormData, percentile: float
                          ) -> tuple[Statistics, dict[PopulationSpec, RunningStat]]:
    """Statistics of every non-input population's ANN value over the normalisation data."""
    if len(graph.inputs) != 1:
        raise ConversionError(f"data-based conversion supports models with one input, this one "
                              f"has {len(graph.inputs)}")
    specs = [s for s in graph.populations if not s.is_input]
    frontend = graph.frontend
    stats = collect(norm, frontend.example_shape(graph), frontend.probe_runner(graph, specs),
                    len(specs), percentile, prepare=frontend.model_layout)
    return stats, dict(zip(specs, stats.values))
