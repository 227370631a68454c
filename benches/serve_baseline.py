"""The Python baseline of `make bench-serve`: a TorchScript model behind the standard library's
ThreadingHTTPServer, the minimal way to serve `torch.jit.load` from Python. It speaks the
JSON form of torchbook serve's POST /v1/predict ({"inputs": [...]} -> {"outputs": [...]}), one
thread per connection, HTTP/1.1 keep-alive, inference under torch.inference_mode(). Two
settings of the standard library are changed from their defaults, or the baseline would
measure them rather than serving: Nagle's algorithm off (the handler writes headers and body
separately, and with Nagle on each response waits ~40 ms for the client's delayed ACK), and a
listen backlog of 128 instead of 5 (64 clients connecting at once otherwise wait for SYN
retries, seconds).

Usage: python serve_baseline.py MODEL.pt [--port P] [--threads N]   (prints "listening on http://…")
"""

import argparse
import json
import sys
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: PyTorch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = torch.jit.load(args.model)
    model.eval()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self):
            try:
                length = int(self.headers.get("Content-Length", "0"))
                inputs = json.loads(self.rfile.read(length))["inputs"]
                with torch.inference_mode():
                    outputs = model(torch.tensor(inputs, dtype=torch.float32))
                body = json.dumps({"outputs": outputs.tolist()}).encode()
                status = 200
            except Exception as error:  # a bad request must not stop the server
                body = json.dumps({"error": str(error)}).encode()
                status = 400
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

    server = Server(("127.0.0.1", args.port), Handler)
    host, port = server.server_address[:2]
    print(f"python baseline: listening on http://{host}:{port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
