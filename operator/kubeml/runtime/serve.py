"""`kubeml serve`: the model server the operator runs in each serving pod.

Input: $KUBEML_MODEL, $KUBEML_MODEL_VERSION, $KUBEML_MODELVERSION, $KUBEML_ARTIFACT_URI,
$KUBEML_ARTIFACT_SHA256, $KUBEML_SIGNATURE (JSON), optional $KUBEML_PROFILE_URI, the
batching and size limits ($KUBEML_MAX_BATCH_SIZE, $KUBEML_MAX_BATCH_DELAY_MS,
$KUBEML_MAX_REQUEST_BYTES, $KUBEML_MAX_BATCH_REQUESTS, $KUBEML_MAX_CONNECTIONS),
$KUBEML_HOST / $KUBEML_PORT, $KUBEML_GRPC_PORT (0: no gRPC), and the S3 settings of
kubeml.storage.S3Settings.from_env. Endpoints and behaviour: kubeml.serving.

Exit codes: 0 after a graceful shutdown (SIGTERM), 2 when the environment does not
describe a servable model. A model that fails verification does not exit: the
server stays up, unready, with the reason at /v2/health/ready, and verifies again
with back-off (ready once the artifact's bytes are right).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

EXIT_OK = 0
EXIT_BAD_CONFIG = 2

log = logging.getLogger("kubeml.serve")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubeml serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", help="bind address (default $KUBEML_HOST or 0.0.0.0)")
    p.add_argument("--port", type=int, help="port (default $KUBEML_PORT or 8080)")
    p.add_argument(
        "--http",
        choices=("native", "uvicorn"),
        default="native",
        help="HTTP stack: the native httptools protocol (default, faster) or uvicorn",
    )
    p.add_argument("--log-level", default="INFO")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Before numpy/scikit-learn load their thread pools, where that is still possible.
    from ..serving.runner import bounded_malloc, single_threaded_env

    single_threaded_env()
    bounded_malloc()
    from dataclasses import replace

    from prometheus_client import disable_created_metrics

    from ..serving.config import ConfigError, ServerConfig
    from ..serving.runner import Runner, write_termination_log

    try:
        cfg = ServerConfig.from_env()
    except ConfigError as err:
        log.error("cannot serve: %s", err)
        import os

        write_termination_log(os.environ.get("KUBEML_TERMINATION_LOG"), "InvalidConfig", str(err))
        return EXIT_BAD_CONFIG
    if args.host:
        cfg = replace(cfg, host=args.host)
    if args.port:
        cfg = replace(cfg, port=args.port)
    # *_created series double the exposition for no use to our alerts.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    runner = Runner(cfg)
    return _run(runner.run(http=args.http))


def _run(coro: object) -> int:
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # plain asyncio works, a little slower
        pass
    with asyncio.Runner(loop_factory=factory) as r:
        return int(r.run(coro))  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
