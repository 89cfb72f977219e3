"""The yardstick: a bare uvicorn + Starlette endpoint calling the model's predict.

No validation, no batching, no metrics: parse the v2 body, predict, answer. Run by
run.py as ``python bare.py MODEL.joblib PORT``.
"""

from __future__ import annotations

import os
import sys

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import joblib  # noqa: E402
import numpy as np  # noqa: E402
import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

model = joblib.load(sys.argv[1])
model.n_jobs = 1


async def infer(request: Request) -> Response:
    doc = await request.json()
    tensor = doc["inputs"][0]
    X = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
    pred = model.predict(X)
    return JSONResponse(
        {
            "model_name": "iris",
            "outputs": [
                {
                    "name": "predict",
                    "datatype": "INT64",
                    "shape": [len(pred)],
                    "data": pred.tolist(),
                }
            ],
        }
    )


async def ready(request: Request) -> Response:
    return JSONResponse({"ready": True})


app = Starlette(
    routes=[
        Route("/v2/models/iris/infer", infer, methods=["POST"]),
        Route("/v2/health/ready", ready),
    ]
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
