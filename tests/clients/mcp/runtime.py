"""An agent runtime as a framework that speaks MCP would be one: it serves
`agentshare.runtime.v1.AgentRuntimeService/Run` with grpcio, and inside each
run it opens an MCP session with the official SDK at `RunRequest.mcp_url`,
with `RunRequest.run_token` as the bearer, to use the five workspace tools.

Each run lists the tools, writes the input under NOTE_KEY with
workspace_write, reads it back with workspace_read, tries workspace_list on
an agent that is not its own, and answers with what it read. What it saw
goes into `runs` (by run id) for the test to check; a failure is the run's
RunError, so the caller reads what went wrong.
"""

import json
import threading
import uuid
from concurrent import futures

import anyio
import grpc
from agentshare.runtime.v1 import runtime_pb2, runtime_pb2_grpc
from gateway import mcp_session

NOTE_KEY = "mcp-note"


class McpRuntime(runtime_pb2_grpc.AgentRuntimeServiceServicer):
    def __init__(self):
        self.runs = {}
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        runtime_pb2_grpc.add_AgentRuntimeServiceServicer_to_server(self, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.url = f"http://127.0.0.1:{port}"
        self.server.start()

    def stop(self):
        self.server.stop(grace=None)

    def Run(self, request, context):
        seen = {
            "run_token": request.run_token,
            "mcp_url": request.mcp_url,
            "workspace_tools": [t.name for t in request.workspace_tools],
        }
        with self._lock:
            self.runs[request.run_id] = seen
        try:
            anyio.run(self._use_tools, request, seen)
        except Exception as error:  # noqa: BLE001 - the caller reads it
            yield runtime_pb2.RunResponse(
                error=runtime_pb2.RunError(
                    code=runtime_pb2.RUN_ERROR_CODE_INTERNAL,
                    message=f"the MCP runtime failed: {type(error).__name__}: {error}"[:1000],
                )
            )
            return
        answer = f"read back: {seen['read']}"
        yield runtime_pb2.RunResponse(text_delta=runtime_pb2.TextDelta(text=answer))
        yield runtime_pb2.RunResponse(
            result=runtime_pb2.RunResult(
                output_text=answer,
                status=runtime_pb2.RUN_RESULT_STATUS_COMPLETED,
                usage=runtime_pb2.TokenUsage(model_calls=1),
            )
        )

    async def _use_tools(self, request, seen):
        async with mcp_session(request.mcp_url, token=request.run_token) as client:
            seen["protocol_version"] = client.protocol_version
            listed = await client.list_tools()
            seen["tools"] = {tool.name: tool.input_schema for tool in listed.tools}

            written = await client.call_tool(
                "workspace_write", {"key": NOTE_KEY, "value": request.input}
            )
            if written.is_error:
                raise RuntimeError(f"workspace_write: {text_of(written)}")
            seen["written"] = written.structured_content

            read = await client.call_tool("workspace_read", {"key": NOTE_KEY})
            if read.is_error:
                raise RuntimeError(f"workspace_read: {text_of(read)}")
            seen["read"] = read.structured_content["item"]["value"]

            # The token is bound to this run's agent: naming another is
            # refused as a tool error, not a broken session.
            other = await client.call_tool("workspace_list", {"agent_id": str(uuid.uuid4())})
            seen["other_agent"] = {
                "is_error": other.is_error,
                "text": text_of(other),
                "structured": other.structured_content,
            }


def text_of(result):
    return "".join(getattr(block, "text", "") for block in result.content) or json.dumps(
        result.structured_content
    )
