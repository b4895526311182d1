"""The OpenAPI 3 document of every route (``GET /docs.json``; the Swagger UI at ``/``
reads it), built once per worker from the models it serves, so the examples are
real requests for those models."""

from __future__ import annotations

from typing import Any

from modelport import __version__
from service import v2
from service.runtime import ModelSet

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid request: the message names the field.",
        404: "No such model (or version) served here.",
        413: "Body or batch over the configured limit.",
        415: "Body not declared as JSON.",
        500: "Internal error (a bug: see the server log).",
        503: "Not ready (loading, a model failed its checks, or draining).",
    }
    out: dict[str, Any] = {
        str(c): {"description": text[c], "content": _json(_ERROR)} for c in codes
    }
    if "404" in out:
        # A path no route can match (a name with a newline, say) gets BentoML's own 404.
        out["404"]["content"]["text/plain"] = {"schema": {"type": "string"}}
    return out


def _plain(summary: str, *codes: int) -> dict[str, Any]:
    text = {"text/plain": {"schema": {"type": "string"}}}
    return {
        "summary": summary,
        "tags": ["health"],
        "responses": {
            "200": {"description": "OK", "content": text},
            **{str(c): {"description": "Not ready.", "content": text} for c in codes},
        },
    }


def _op(
    summary: str,
    tag: str,
    ok: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    errors: tuple[int, ...] = (),
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "responses": {"200": {"description": "OK", "content": _json(ok)}, **_errors(*errors)},
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    if params:
        op["parameters"] = params
    return op


def document(models: ModelSet) -> dict[str, Any]:
    names = sorted(models.models)
    name_param = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", **({"enum": names} if names else {})},
        "description": "Model name.",
    }
    version_param = {
        "name": "version",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "Model version.",
    }
    first = models.models[names[0]] if names else None
    instances = first.card.sample.instances[:2] if first else []
    predict_example = {"model": names[0], "instances": instances} if first else None
    infer_example = None
    if first is not None:
        inputs, _ = v2.tensors(first.card)
        infer_example = {
            "id": "example-1",
            "inputs": [
                {
                    **t.doc(),
                    "shape": [len(instances), 1],
                    "data": [row[t.name] for row in instances],
                }
                for t in inputs
            ],
        }
    feedback_example = None
    if first is not None:
        sample = first.card.sample
        feedback_example = {
            "model": first.name,
            "items": [{"prediction": p, "label": p} for p in sample.predictions[:2]],
        }
    predict_body = _json({"$ref": "#/components/schemas/PredictRequest"}, predict_example)
    path_predict_body = _json(
        {"$ref": "#/components/schemas/PredictRequest"},
        {"instances": instances} if first else None,
    )
    infer_body = _json({"$ref": "#/components/schemas/InferRequest"}, infer_example)
    errors_in = (400, 404, 413, 415)
    paths: dict[str, Any] = {
        "/predict": {
            "post": _op(
                "Predict: rows of named feature values in, labels (and probabilities) out.",
                "predict",
                {"$ref": "#/components/schemas/PredictResponse"},
                body=predict_body,
                errors=errors_in,
            )
        },
        "/models/{name}/predict": {
            "post": _op(
                "Predict with the model named in the path.",
                "predict",
                {"$ref": "#/components/schemas/PredictResponse"},
                body=path_predict_body,
                params=[name_param],
                errors=errors_in,
            )
        },
        "/explain": {
            "post": _op(
                "Explain predictions: per row, a base value and one attribution per input "
                "feature that add up to the output (predicted class probability, or value).",
                "explain",
                {"$ref": "#/components/schemas/ExplainResponse"},
                body=_json({"$ref": "#/components/schemas/ExplainRequest"}, predict_example),
                errors=(*errors_in, 503),
            )
        },
        "/models/{name}/explain": {
            "post": _op(
                "Explain predictions of the model named in the path.",
                "explain",
                {"$ref": "#/components/schemas/ExplainResponse"},
                body=_json(
                    {"$ref": "#/components/schemas/ExplainRequest"},
                    {"instances": instances} if first else None,
                ),
                params=[name_param],
                errors=(*errors_in, 503),
            )
        },
        "/feedback": {
            "post": _op(
                "Record ground truth for earlier predictions (online accuracy).",
                "feedback",
                {"$ref": "#/components/schemas/FeedbackResponse"},
                body=_json({"$ref": "#/components/schemas/FeedbackRequest"}, feedback_example),
                errors=errors_in,
            )
        },
        "/models": {
            "get": _op(
                "The served models, their features and a sample request each.",
                "models",
                {"type": "object", "required": ["models", "failed"]},
            )
        },
        "/v2": {
            "get": _op("Server metadata (Open Inference Protocol V2).", "v2", {"type": "object"})
        },
        "/v2/health/live": {"get": _op("Liveness.", "v2", {"type": "object"})},
        "/v2/health/ready": {
            "get": _op(
                "Readiness (every model loaded and checked).",
                "v2",
                {"type": "object"},
                errors=(503,),
            )
        },
        "/v2/models/{name}": {
            "get": _op(
                "Model metadata: input and output tensors.",
                "v2",
                {"$ref": "#/components/schemas/ModelMetadata"},
                params=[name_param],
                errors=(404,),
            )
        },
        "/v2/models/{name}/ready": {
            "get": _op(
                "Model readiness.", "v2", {"type": "object"}, params=[name_param], errors=(404, 503)
            )
        },
        "/v2/models/{name}/infer": {
            "post": _op(
                "Inference with tensors (JSON, or the binary tensor data extension).",
                "v2",
                {"$ref": "#/components/schemas/InferResponse"},
                body=infer_body,
                params=[name_param],
                errors=errors_in,
            )
        },
        "/v2/models/{name}/versions/{version}": {
            "get": _op(
                "Metadata of one model version.",
                "v2",
                {"$ref": "#/components/schemas/ModelMetadata"},
                params=[name_param, version_param],
                errors=(404,),
            )
        },
        "/v2/models/{name}/versions/{version}/ready": {
            "get": _op(
                "Readiness of one model version.",
                "v2",
                {"type": "object"},
                params=[name_param, version_param],
                errors=(404, 503),
            )
        },
        "/v2/models/{name}/versions/{version}/infer": {
            "post": _op(
                "Inference with one model version.",
                "v2",
                {"$ref": "#/components/schemas/InferResponse"},
                body=infer_body,
                params=[name_param, version_param],
                errors=errors_in,
            )
        },
        "/livez": {"get": _plain("Process liveness (BentoML's; the probes use it).")},
        "/readyz": {"get": _plain("Readiness (BentoML's; the probes use it).", 503)},
    }
    scalar = {"oneOf": [{"type": "number"}, {"type": "string"}]}
    tensor_in = {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": [*v2.DTYPES, "BYTES"]},
            "parameters": {"type": "object"},
            "data": {"type": "array"},
        },
    }
    schemas = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string", "description": "What is wrong, naming the field."}
            },
        },
        "PredictRequest": {
            "type": "object",
            "required": ["instances"],
            "properties": {
                "model": {"type": "string", "description": "Model name (optional with one model)."},
                "instances": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "object", "additionalProperties": scalar},
                    "description": "Rows of feature name -> value.",
                },
            },
        },
        "PredictResponse": {
            "type": "object",
            "required": ["model_name", "model_version", "predictions", "probabilities"],
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "predictions": {"type": "array"},
                "probabilities": {
                    "type": "array",
                    "items": {"type": "array", "items": {"type": "number"}},
                    "nullable": True,
                    "description": "Class probabilities (classifiers); null for regressors.",
                },
            },
        },
        "ExplainRequest": {
            "type": "object",
            "required": ["instances"],
            "properties": {
                "model": {"type": "string"},
                "instances": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "object", "additionalProperties": scalar},
                },
                "all_classes": {
                    "type": "boolean",
                    "description": "Explain every class's probability, not only the predicted one.",
                },
            },
        },
        "ExplainResponse": {
            "type": "object",
            "required": ["model_name", "model_version", "method", "output", "explanations"],
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "method": {"type": "string", "enum": ["linear-exact", "tree-shap", "permutation"]},
                "output": {"type": "string"},
                "tolerance": {"type": "number"},
                "explanations": {"type": "array", "items": {"type": "object"}},
            },
        },
        "FeedbackRequest": {
            "type": "object",
            "required": ["items"],
            "properties": {
                "model": {"type": "string"},
                "model_version": {"type": "string"},
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["prediction", "label"],
                        "properties": {"prediction": scalar, "label": scalar},
                    },
                },
            },
        },
        "FeedbackResponse": {
            "type": "object",
            "required": ["model_name", "model_version", "accepted"],
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "accepted": {"type": "integer"},
            },
        },
        "InferRequest": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "inputs": {"type": "array", "minItems": 1, "items": tensor_in},
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "parameters": {"type": "object"},
                        },
                    },
                },
            },
        },
        "InferResponse": {
            "type": "object",
            "required": ["model_name", "model_version", "outputs"],
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "outputs": {"type": "array", "items": {"type": "object"}},
            },
        },
        "ModelMetadata": {
            "type": "object",
            "required": ["name", "versions", "platform", "inputs", "outputs"],
            "properties": {
                "name": {"type": "string"},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array"},
                "outputs": {"type": "array"},
            },
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "modelport",
            "version": __version__,
            "description": "Predictions (JSON and Open Inference Protocol V2), feedback and "
            f"health. Models served: {', '.join(names) or '(none)'}.",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
