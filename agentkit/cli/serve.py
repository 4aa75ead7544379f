"""``agentkit serve``: any backend as an OpenAI-compatible endpoint (``/v1/chat/completions``)."""

from __future__ import annotations

from typing import Annotated

import typer


def serve(
    model: Annotated[
        str | None,
        typer.Option(
            help="hf:PATH | openai:URL#MODEL (default: $AGENTKIT_MODEL or hf:agentkit-mllm)."
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Bind address; 0.0.0.0 exposes it beyond this machine.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    model_name: Annotated[
        str | None, typer.Option(help="The id /v1/models lists (default: the backend's name).")
    ] = None,
) -> None:
    """Serve a model over HTTP so other agents (or agentkit on another machine) can use it."""
    from agentkit.cli._common import fail
    from agentkit.errors import AgentkitError
    from agentkit.graph import default_model_spec
    from agentkit.mllm.serve import serve as run

    try:
        run(model or default_model_spec(), host, port, model_name=model_name)
    except AgentkitError as e:
        fail(str(e))
