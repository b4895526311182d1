"""The HTTP ceiling: a bare Starlette app on uvicorn (one worker) doing the identical
work of modelport's ``/predict``: the same JSON parsing and validation
(``service.transport``, ``service.validation``), the same predictor loaded the same
way (``service.runtime``: linear form or compiled fast path), the same response
body. Nothing else: no metrics, no model lookup, no BentoML.
``MODELPORT_BENCH_MODEL`` names the model (default breast-cancer).

    uvicorn bench.bare:app --port 3001
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.transport import FastJSON, InputError, error_response, parse_json
from service.validation import parse_instances

_state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    from modelport.settings import ServiceSettings
    from service.runtime import _load

    settings = ServiceSettings()
    loaded = _load(os.environ.get("MODELPORT_BENCH_MODEL", "breast-cancer"), settings)
    name, version = loaded.tag.split(":", 1)
    _state.update(loaded=loaded, name=name, version=version, max_rows=settings.max_batch_rows)
    gc.freeze()  # as modelport does after loading: keeps the two comparable
    yield


async def predict(request: Request) -> Response:
    loaded = _state["loaded"]
    try:
        body = parse_json(await request.body())
        if not isinstance(body, dict):
            raise InputError("body: expected a JSON object with 'instances'")
        batch = parse_instances(body.get("instances"), loaded.schema, _state["max_rows"])
    except InputError as exc:
        return error_response(exc.status, exc.message)
    out = loaded.predictor.predict(batch.model_input)
    return FastJSON(
        {
            "model_name": _state["name"],
            "model_version": _state["version"],
            "predictions": out.predictions,
            "probabilities": out.probabilities,
        }
    )


app = Starlette(routes=[Route("/predict", predict, methods=["POST"])], lifespan=lifespan)
