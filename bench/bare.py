"""The HTTP ceiling: a bare Starlette app on uvicorn (one worker) doing the same
predict as modelport with nothing else: no validation messages, no metrics, no
BentoML. ``MODELPORT_BENCH_MODEL`` names the model (default breast-cancer).

    uvicorn bench.bare:app --port 3001
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    import pandas as pd
    import sklearn

    from modelport import store

    model = store.resolve(os.environ.get("MODELPORT_BENCH_MODEL", "breast-cancer"))
    card = store.card_of(model)
    predictor = store.predictor_of(model, card)
    sample = pd.DataFrame(card.sample.instances, columns=card.feature_names).astype(float)
    predictor.enable_fast_path(card.feature_names, sample)
    sklearn.set_config(assume_finite=True, skip_parameter_validation=True)
    _state.update(names=card.feature_names, predictor=predictor)
    gc.collect()
    gc.freeze()  # as modelport does after loading: keeps the two comparable
    yield


async def predict(request: Request) -> Response:
    body = orjson.loads(await request.body())
    names = _state["names"]
    X = np.array([[row[n] for n in names] for row in body["instances"]], dtype=float)
    out = _state["predictor"].predict(X)
    payload = {"predictions": out.predictions, "probabilities": out.probabilities}
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json"
    )


app = Starlette(routes=[Route("/predict", predict, methods=["POST"])], lifespan=lifespan)
