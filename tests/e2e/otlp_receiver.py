"""An OTLP/HTTP metrics receiver for tests/e2e/otlp.rs.

Decodes each POST with the official OpenTelemetry protobuf definitions
(the PyPI package opentelemetry-proto, installed by ./dev setup): binary
protobuf, or OTLP/JSON when the Content-Type is application/json; and
appends one JSON line per request to OUT: the status answered, the
request's headers that matter, and the decoded ExportMetricsServiceRequest
in the protobuf JSON mapping (field names as in the .proto; 64-bit
integers as strings; enums by name).

    python otlp_receiver.py OUT [--fail-first N] [--fail-while PATH] [--status CODE] [--partial N]

Prints the port it listens on (127.0.0.1, chosen by the system), then
serves until killed. --fail-first N answers 503 with `Retry-After: 1` to
the first N requests; --fail-while PATH answers 503 while PATH exists;
--status CODE answers CODE to every request;
--partial N answers 200 with a partial_success rejecting N data points.
"""
import gzip
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict, Parse
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

out_path = sys.argv[1]
fail_first = 0
fail_while = None
always = None
partial = 0
args = sys.argv[2:]
while args:
    a = args.pop(0)
    if a == "--fail-first":
        fail_first = int(args.pop(0))
    elif a == "--fail-while":
        fail_while = args.pop(0)
    elif a == "--partial":
        partial = int(args.pop(0))
    elif a == "--status":
        always = int(args.pop(0))
    else:
        sys.exit(f"unknown argument {a}")

lock = threading.Lock()
seen = 0


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        global seen
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        record = {
            "path": self.path,
            "content_type": self.headers.get("Content-Type"),
            "content_encoding": self.headers.get("Content-Encoding"),
            "authorization": self.headers.get("Authorization"),
            "x_tenant": self.headers.get("X-Tenant"),
        }
        try:
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            req = metrics_service_pb2.ExportMetricsServiceRequest()
            if self.headers.get("Content-Type") == "application/json":
                # The OTLP/JSON encoding, read by protobuf's own JSON parser
                # (which refuses unknown fields).
                Parse(body.decode("utf-8"), req)
            else:
                req.ParseFromString(body)
            record["request"] = MessageToDict(
                req,
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
            )
            with lock:
                seen += 1
                n = seen
            if always is not None:
                status = always
            elif fail_while is not None and os.path.exists(fail_while):
                status = 503
            elif n <= fail_first:
                status = 503
            else:
                status = 200
        except Exception as e:  # a body the official decoder refuses
            record["error"] = repr(e)
            status = 400
        record["status"] = status
        with lock:
            with open(out_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        if status == 200:
            r = metrics_service_pb2.ExportMetricsServiceResponse()
            if partial:
                r.partial_success.rejected_data_points = partial
                r.partial_success.error_message = "points too old"
            resp = r.SerializeToString()
        else:
            resp = b"not now"
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(resp)))
        self.end_headers()
        self.wfile.write(resp)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
