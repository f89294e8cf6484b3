"""What skl2onnx 1.20 needs to convert our pipelines exactly: every workaround, in one place.

A twin is only useful if it predicts what the sklearn model predicts, so the graph is
built in double precision end to end. skl2onnx 1.20 (with scikit-learn 1.9 and
onnxruntime 1.31) gets four things wrong or leaves them out; `install()` fixes them by
re-registering converters, never by editing the library:

1. Tree ensembles (random forest, histogram gradient boosting) in double. skl2onnx
   computes double thresholds and leaf weights but writes them with `TreeEnsemble*`
   opset 1, whose attributes are float32 lists: thresholds round, paths change. We
   rewrite the node to ai.onnx.ml opset 3 with the `*_as_tensor` double attributes.
2. `HistGradientBoosting*` under scikit-learn 1.9: the predictor's node records hold
   `feature_idx`, `left` and `right` as numpy uint32 (`missing_go_to_left` as uint8),
   which skl2onnx passes through to `onnx.helper.make_node`; it refuses them ("Unable
   to create node 'TreeEnsembleRegressor'"). We cast integer attributes to int64.
3. `SimpleImputer` on double columns: skl2onnx emits ai.onnx.ml `Imputer`, which has
   float32 values and no double kernel in onnxruntime. We emit `IsNaN` + `Where` with
   the statistics in double. On string columns, where the twin's inputs carry a missing
   category as `features.MISSING_CATEGORY` and can hold no NaN, the imputer that turns
   NaN into that marker is an identity.
4. `DummyRegressor` / `DummyClassifier` have no converter: a constant per row.
5. Gradient boosting and extra trees: the same double/float fix as the forests (their
   trees, like every scikit-learn tree, compare float32(x) with float32 thresholds).
6. XGBoost and LightGBM: skl2onnx knows neither; onnxmltools' converters are registered
   inside skl2onnx (as onnxmltools documents), wrapped like the tree ensembles above.
   XGBoost compares float32(x) with float32 thresholds, so its trees read float32;
   LightGBM compares doubles with double thresholds, so its trees stay in double
   (opset 3 tensors). Each is registered only where its library is installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

_OPSET_ML = 3
_TREE_OPS = frozenset({"TreeEnsembleRegressor", "TreeEnsembleClassifier"})
_TREE_DOUBLES = ("nodes_values", "nodes_hitrates", "target_weights", "class_weights",
                 "base_values")
_installed = False


def install() -> None:
    """Register the fixed converters (idempotent)."""
    global _installed
    if _installed:
        return
    from skl2onnx.common._registration import get_converter, register_converter

    for alias in ("SklearnRandomForestRegressor", "SklearnRandomForestClassifier",
                  "SklearnHistGradientBoostingRegressor",
                  "SklearnHistGradientBoostingClassifier",
                  "SklearnGradientBoostingRegressor", "SklearnGradientBoostingClassifier",
                  "SklearnExtraTreesRegressor", "SklearnExtraTreesClassifier"):
        registered = get_converter(alias)
        register_converter(alias, _double_trees(registered._fct), overwrite=True,
                           options=registered.get_allowed_options())
    original_imputer = get_converter("SklearnSimpleImputer")._fct
    register_converter("SklearnSimpleImputer", _imputer(original_imputer), overwrite=True)
    _register_dummies()
    _register_boosters()
    _installed = True


# --- 1 and 2: tree ensembles ---------------------------------------------------------------


class _TreeNodeContainer:
    """The converter's container, with `TreeEnsemble*` nodes rewritten on the way in."""

    def __init__(self, container: Any, double: bool) -> None:
        self._container = container
        self._double = double

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, op_type: str, inputs: Any, outputs: Any, op_domain: str = "",
                 op_version: int | None = None, **attrs: Any) -> Any:
        if op_type in _TREE_OPS:
            attrs = {k: _plain_ints(v) for k, v in attrs.items()}
            if self._double:
                attrs, op_version = _as_double_tensors(attrs), _OPSET_ML
        return self._container.add_node(op_type, inputs, outputs, op_domain=op_domain,
                                        op_version=op_version, **attrs)


def _plain_ints(value: Any) -> Any:
    if isinstance(value, list) and value and isinstance(value[0], np.integer):
        return [int(v) for v in value]
    if isinstance(value, np.ndarray) and value.dtype.kind in "iub":
        return value.astype(np.int64)
    return value


def _as_double_tensors(attrs: dict[str, Any]) -> dict[str, Any]:
    from onnx import numpy_helper

    out = dict(attrs)
    for key in _TREE_DOUBLES:
        if key in out and key != "nodes_hitrates":
            out[f"{key}_as_tensor"] = numpy_helper.from_array(
                np.asarray(out.pop(key), dtype=np.float64).ravel(), name=f"{key}_as_tensor")
    out.pop("nodes_hitrates", None)  # all 1.0: optional, and float-only in opset 1
    return out


def _double_trees(convert: Any, *, versioned: bool = True) -> Any:
    def convert_in_double(scope: Any, operator: Any, container: Any) -> Any:
        from skl2onnx.common.data_types import DoubleTensorType

        if not isinstance(operator.inputs[0].type, DoubleTensorType):
            return convert(scope, operator, _TreeNodeContainer(container, double=False))
        float_input = _is_forest(operator.raw_operator)
        with _float_variables(scope, operator, container, inputs=float_input):
            if float_input:
                return convert(scope, operator, _TreeNodeContainer(container, double=False))
            # op_version 3 makes the classifier keep its thresholds in double, too
            return convert(scope, operator, _TreeNodeContainer(container, double=True),
                           **({"op_version": _OPSET_ML} if versioned else {}))

    return convert_in_double


def _is_forest(estimator: Any) -> bool:
    """Trees that compare float32(x) to their thresholds: scikit-learn's (they cast X to
    float32) and XGBoost's (float32 features and split values)."""
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )

    return isinstance(estimator, RandomForestClassifier | RandomForestRegressor
                      | ExtraTreesClassifier | ExtraTreesRegressor
                      | GradientBoostingClassifier | GradientBoostingRegressor) \
        or type(estimator).__module__.startswith(("xgboost.", "modelio.xgboost_kind"))


@contextmanager
def _float_variables(scope: Any, operator: Any, container: Any, *, inputs: bool
                     ) -> Iterator[None]:
    """Let a tree converter work in float32 where onnxruntime's tree ops do.

    `TreeEnsemble*` opset 3 outputs float32 whatever its input, so the converter writes
    its double outputs into float32 variables, cast back to double here (a relative
    rounding of 6e-8, well inside the parity tolerance). With `inputs`, the converter
    also reads float32: sklearn's forests compare float32(x) with thresholds that
    skl2onnx then rounds down to float32, which decides every split the same way
    (and converts a forest in seconds instead of minutes of double-threshold search).
    """
    from onnx import TensorProto
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    saved_inputs, saved_outputs = list(operator.inputs), list(operator.outputs)
    if inputs:
        source = operator.inputs[0]
        cast = scope.declare_local_variable("tree_input", FloatTensorType(source.type.shape))
        container.add_node("Cast", [source.full_name], [cast.full_name], to=TensorProto.FLOAT,
                           name=scope.get_unique_operator_name("Cast"))
        operator.inputs.set_element(0, cast)
    casts = []
    for index, variable in enumerate(saved_outputs):
        if isinstance(variable.type, DoubleTensorType):
            narrow = scope.declare_local_variable(f"{variable.onnx_name}_float",
                                                  FloatTensorType(variable.type.shape))
            operator.outputs.set_element(index, narrow)
            casts.append((narrow, variable))
    try:
        yield
    finally:
        for index, variable in enumerate(saved_inputs):
            operator.inputs.set_element(index, variable)
        for index, variable in enumerate(saved_outputs):
            operator.outputs.set_element(index, variable)
    for narrow, variable in casts:
        container.add_node("Cast", [narrow.full_name], [variable.full_name],
                           to=TensorProto.DOUBLE, name=scope.get_unique_operator_name("Cast"))


# --- 3: SimpleImputer ----------------------------------------------------------------------


def _imputer(original: Any) -> Any:
    def convert_imputer(scope: Any, operator: Any, container: Any) -> Any:
        from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

        op = operator.raw_operator
        kind = operator.inputs[0].type
        if isinstance(kind, DoubleTensorType) and _is_nan(op.missing_values):
            return _impute_doubles(scope, operator, container)
        if isinstance(kind, StringTensorType) and _is_nan(op.missing_values):
            return _string_identity(scope, operator, container)
        return original(scope, operator, container)

    return convert_imputer


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)


def _impute_doubles(scope: Any, operator: Any, container: Any) -> None:
    from onnx import TensorProto
    from skl2onnx.operator_converters.common import concatenate_variables

    features = concatenate_variables(scope, operator.inputs, container)
    statistics = np.asarray(operator.raw_operator.statistics_, dtype=np.float64)
    fill = scope.get_unique_variable_name("impute_fill")
    container.add_initializer(fill, TensorProto.DOUBLE, [1, statistics.size],
                              statistics.tolist())
    missing = scope.get_unique_variable_name("impute_missing")
    container.add_node("IsNaN", [features], [missing],
                       name=scope.get_unique_operator_name("IsNaN"))
    container.add_node("Where", [missing, fill, features], [operator.outputs[0].full_name],
                       name=scope.get_unique_operator_name("Where"))


def _string_identity(scope: Any, operator: Any, container: Any) -> None:
    from skl2onnx.operator_converters.common import concatenate_variables

    features = concatenate_variables(scope, operator.inputs, container)
    container.add_node("Identity", [features], [operator.outputs[0].full_name],
                       name=scope.get_unique_operator_name("Identity"))


# --- 4: the dummy baselines --------------------------------------------------------------------


def _register_dummies() -> None:
    from skl2onnx import update_registered_converter
    from skl2onnx.shape_calculators.linear_classifier import (
        calculate_linear_classifier_output_shapes,
    )
    from skl2onnx.shape_calculators.linear_regressor import (
        calculate_linear_regressor_output_shapes,
    )
    from sklearn.dummy import DummyClassifier, DummyRegressor

    update_registered_converter(DummyRegressor, "MlopsDummyRegressor",
                                calculate_linear_regressor_output_shapes, _dummy_regressor)
    update_registered_converter(DummyClassifier, "MlopsDummyClassifier",
                                calculate_linear_classifier_output_shapes, _dummy_classifier,
                                options={"zipmap": [True, False, "columns"],
                                         "nocl": [True, False]})


def _rows_of(scope: Any, container: Any, features: str, width: int, value: np.ndarray,
             onnx_type: int) -> str:
    """A (rows, width) tensor with `value` in every row, rows taken from `features`.

    `Where` broadcasts a per-row condition (is the first feature NaN?) against the
    constant on both sides: no operator whose output size is read at run time
    (`ConstantOfShape`), which the server's graph allowlist refuses.
    """
    from onnx import TensorProto

    index = scope.get_unique_variable_name("first_column")
    container.add_initializer(index, TensorProto.INT64, [1], [0])
    column = scope.get_unique_variable_name("column")
    container.add_node("Gather", [features, index], [column], axis=1,
                       name=scope.get_unique_operator_name("Gather"))
    per_row = scope.get_unique_variable_name("per_row")
    container.add_node("IsNaN", [column], [per_row], name=scope.get_unique_operator_name("IsNaN"))
    constant = scope.get_unique_variable_name("constant")
    container.add_initializer(constant, onnx_type, [1, width], value.ravel().tolist())
    out: str = scope.get_unique_variable_name("filled")
    container.add_node("Where", [per_row, constant, constant], [out],
                       name=scope.get_unique_operator_name("Where"))
    return out


def _dummy_regressor(scope: Any, operator: Any, container: Any) -> None:
    from onnx import TensorProto
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.operator_converters.common import concatenate_variables

    op = operator.raw_operator
    double = isinstance(operator.inputs[0].type, DoubleTensorType)
    features = concatenate_variables(scope, operator.inputs, container)
    constant = np.asarray(op.constant_, dtype=np.float64 if double else np.float32).ravel()
    out = _rows_of(scope, container, features, constant.size, constant,
                   TensorProto.DOUBLE if double else TensorProto.FLOAT)
    container.add_node("Identity", [out], [operator.outputs[0].full_name],
                       name=scope.get_unique_operator_name("Identity"))


def _dummy_classifier(scope: Any, operator: Any, container: Any) -> None:
    from onnx import TensorProto
    from skl2onnx.operator_converters.common import concatenate_variables

    op = operator.raw_operator
    if op.strategy not in ("prior", "most_frequent") or np.ndim(op.classes_[0]) > 0:
        raise NotImplementedError(f"DummyClassifier(strategy={op.strategy!r}) has no twin")
    from skl2onnx.common.data_types import DoubleTensorType

    features = concatenate_variables(scope, operator.inputs, container)
    double = isinstance(operator.outputs[1].type, DoubleTensorType)
    kind = TensorProto.DOUBLE if double else TensorProto.FLOAT
    prior = np.asarray(op.class_prior_, dtype=np.float64)
    if op.strategy == "most_frequent":  # predict_proba is one-hot on the most frequent class
        prior = np.eye(prior.size)[int(np.argmax(op.class_prior_))]
    probabilities = _rows_of(scope, container, features, prior.size, prior, kind)
    container.add_node("Identity", [probabilities], [operator.outputs[1].full_name],
                       name=scope.get_unique_operator_name("Identity"))
    best = scope.get_unique_variable_name("best")
    container.add_node("ArgMax", [probabilities], [best], axis=1, keepdims=0,
                       name=scope.get_unique_operator_name("ArgMax"))
    classes = scope.get_unique_variable_name("classes")
    labels = np.asarray(op.classes_)
    if labels.dtype.kind in "iub":
        container.add_initializer(classes, TensorProto.INT64, [labels.size],
                                  labels.astype(np.int64).tolist())
    else:
        container.add_initializer(classes, TensorProto.STRING, [labels.size],
                                  [str(v).encode() for v in labels])
    container.add_node("Gather", [classes, best], [operator.outputs[0].full_name], axis=0,
                       name=scope.get_unique_operator_name("Gather"))


# --- 6: XGBoost and LightGBM ---------------------------------------------------------------


def _register_boosters() -> None:
    """onnxmltools' converters for the estimators whose library is installed."""
    import importlib.util

    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    if importlib.util.find_spec("xgboost") is not None:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from xgboost import XGBClassifier, XGBRegressor

        from modelio.xgboost_kind import XGBLabelClassifier

        update_registered_converter(XGBRegressor, "XGBoostXGBRegressor",
                                    calculate_linear_regressor_output_shapes,
                                    _double_trees(convert_xgboost))
        for cls in (XGBClassifier, XGBLabelClassifier):
            update_registered_converter(cls, f"XGBoost{cls.__name__}",
                                        calculate_linear_classifier_output_shapes,
                                        _double_trees(convert_xgboost),
                                        options=classifier_options)
    if importlib.util.find_spec("lightgbm") is not None:
        from lightgbm import LGBMClassifier, LGBMRegressor
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        update_registered_converter(LGBMRegressor, "LightGbmLGBMRegressor",
                                    calculate_linear_regressor_output_shapes,
                                    _double_trees(convert_lightgbm, versioned=False),
                                    options={"split": None})
        update_registered_converter(LGBMClassifier, "LightGbmLGBMClassifier",
                                    calculate_linear_classifier_output_shapes,
                                    _double_trees(convert_lightgbm, versioned=False),
                                    options={**classifier_options, "split": None})


SINGLE_PRECISION_TOLERANCE = 1e-5
"""Relative parity tolerance for a model that computes in float32 itself (XGBoost): its
own predictions are rounded to float32, so the twin, summing the same trees in another
order, differs by a few units in the last place (measured: 1.3e-6 of the largest price)."""


def single_precision(model: Any) -> bool:
    """True when the model's final estimator predicts in float32 (XGBoost)."""
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    return type(final).__module__.startswith(("xgboost.", "modelio.xgboost_kind"))
