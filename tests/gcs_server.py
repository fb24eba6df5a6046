"""A local Google Cloud Storage server for the tests: no network, the real clients.

`GcsTestServer` serves the JSON API of `gcp-storage-emulator` (its handlers and its in-memory
storage) from a thread of the test process, and adds what that emulator lacks but gcsfs,
tensorstore (Orbax) and google-cloud-storage (tensorboardX) use:

1. downloads carry `x-goog-generation` / `x-goog-metageneration` (tensorstore takes the object's
   generation from them; without them it fails "Malformed StorageGeneration" re-opening OCDBT data);
2. `startOffset` / `endOffset` on list (tensorstore lists a key range with them and no prefix);
3. `ifGenerationMatch` / `ifGenerationNotMatch` (and the metageneration ones) on reads, uploads,
   deletes, copies, composes and moves: 412 when a write's precondition fails, 304 when a read's
   `ifGenerationNotMatch` holds; each check and its write happen under one lock;
4. `moveTo` (gcsfs's rename: one request, instead of 501, ~34 s of retries, then copy + delete).

Besides: `forbid(url)` answers 403 to requests under a gs:// prefix (a bucket or folder that cannot
be written), `requiring_credentials()` answers 401 to requests that carry none (what GCS answers an
anonymous caller on a private bucket: a machine without credentials), cancelling a resumable upload
(DELETE on its session) answers 499 as GCS does, HTTP/1.1 (keep-alive, `Expect: 100-continue`
answered, TCP_NODELAY: else ~45 ms a request), one request at a time on the storage (a lock),
`requests` keeps (method, path, status) of what was served, and `listing(url)` reads objects past
the HTTP layer.

The clients find it through environment variables (`client_env`); gcsfs and tensorstore read
some of them once per process, so a test session starts one server and gives each test a fresh
prefix (tests/conftest.py: fixtures `gcs_server`, `gcs_prefix`).
"""
from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import re
import sys
import threading
import traceback
import uuid
from functools import partial
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from types import SimpleNamespace

from gcp_storage_emulator import server as emu
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import buckets as emu_buckets
from gcp_storage_emulator.handlers import objects as emu_objects
from gcp_storage_emulator.storage import RESUMABLE_DIR, Storage

logger = logging.getLogger(__name__)

_CLIENT_CLOSED = SimpleNamespace(value=499, phrase="Client Closed Request")  # not in http.HTTPStatus

BUCKET = "arner-test"

# Read when gcsfs / google-auth / fsspec are imported (or once per process): set before anything imports them.
# GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false: otherwise gcsfs probes each bucket over gRPC (60 s here).
# GCE_METADATA_ROOT/HOST point google-auth's metadata-server requests at a closed port (a guard: with
# the settings below no client asks it; GCE_METADATA_IP is left alone, JAX's TPU-pod detection reads it).
IMPORT_TIME_ENV = {
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    "GCE_METADATA_ROOT": "127.0.0.1:1",
    "GCE_METADATA_HOST": "127.0.0.1:1",
    "NO_GCE_CHECK": "true",
    # fsspec reads FSSPEC_<PROTOCOL>_<ARG> when imported: gcsfs (and etils.epath) connect anonymously
    "FSSPEC_GCS_TOKEN": "anon",
}


def client_env(url: str) -> dict[str, str]:
    """Every variable the clients need to talk to the server at `url` (http://127.0.0.1:PORT)."""
    return {
        **IMPORT_TIME_ENV,
        # gcsfs and google-cloud-storage (anonymous credentials when this is set)
        "STORAGE_EMULATOR_HOST": url,
        # tensorstore: endpoint and a fixed bearer token (a spec-level endpoint is rejected)
        "TENSORSTORE_GCS_HTTP_URL": url,
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "fake",
    }


def split_url(url: str) -> tuple[str, str]:
    """gs://bucket/some/key -> ("bucket", "some/key")."""
    if not url.startswith("gs://"):
        raise ValueError(f"not a gs:// URL: {url}")
    bucket, _, key = url[len("gs://"):].partition("/")
    return bucket, key


def _error(response, status: HTTPStatus, message: str, reason: str) -> None:
    response.status = status
    response.json({"error": {"code": status.value, "message": message,
                             "errors": [{"message": message, "domain": "global", "reason": reason}]}})


class _MemoryStorage(Storage):
    """The emulator's in-memory storage, minus re-serialising all metadata to JSON on every write."""

    def _write_config_to_file(self):
        pass


class _Response(emu.Response):
    """No body and no Content-Length on 204/304 (HTTP/1.1 keep-alive)."""

    def close(self):
        if self.status.value not in (204, 304):
            return super().close()
        self._handler.send_response(self.status.value, self.status.phrase)
        for key, value in self._headers.items():
            self._handler.send_header(key, value)
        self._handler.end_headers()


# Routes the emulator lacks, tried before its own (object names arrive percent-encoded: no literal
# "/" inside a name, so "/moveTo/o/" splits source from destination).
_MOVE = re.compile(r"^(?:/storage/v1)?/b/(?P<bucket_name>[-.\w]+)/o/(?P<object_id>[^/]+)"
                   r"/moveTo/o/(?P<dest_object_id>[^/]+)$")
_UPLOAD = re.compile(r"^/upload/storage/v1/b/(?P<bucket_name>[-.\w]+)/o$")


_XML_HEADERS = {"ifGenerationMatch": "x-goog-if-generation-match",
                "ifMetagenerationMatch": "x-goog-if-metageneration-match"}


def _query(request, name: str) -> str | None:
    """A query parameter, or its XML API header."""
    values = request.query.get(name)
    if values:
        return values[0]
    return request.get_header(_XML_HEADERS[name]) if name in _XML_HEADERS else None


def _preconditions(request, obj: dict | None, *, read: bool, prefix: str = "") -> HTTPStatus | None:
    """The status a failed precondition answers (None: the request goes on).

    GCS semantics: ifGenerationMatch=0 holds when no live object exists, =N when the live object's
    generation is N; ifGenerationNotMatch=N holds when a live object exists with another generation
    (a read that fails it is 304 Not Modified, a write 412). `prefix` selects the source's
    conditions of a copy or move (ifSourceGenerationMatch...).
    """
    for field, match in (("generation", True), ("generation", False), ("metageneration", True),
                         ("metageneration", False)):
        name = f"if{prefix}{field.capitalize()}{'' if match else 'Not'}Match"
        raw = _query(request, name)
        if raw is None:
            continue
        try:
            wanted = int(raw)
        except ValueError:
            return HTTPStatus.BAD_REQUEST
        current = int(obj[field]) if obj is not None else None
        if match:
            holds = current is None if wanted == 0 and field == "generation" else current == wanted
            if not holds:
                return HTTPStatus.PRECONDITION_FAILED
        else:
            if current is None:
                return HTTPStatus.NOT_FOUND if read else HTTPStatus.PRECONDITION_FAILED
            if current == wanted:
                return HTTPStatus.NOT_MODIFIED if read else HTTPStatus.PRECONDITION_FAILED
    return None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, owner: GcsTestServer):
        self.owner = owner
        super().__init__(address, handler)

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], ConnectionError):  # a client dropped a kept-alive connection
            return
        super().handle_error(request, client_address)


class _RequestHandler(emu.RequestHandler):
    """HTTP/1.1; every method goes through GcsTestServer.handle."""

    protocol_version = "HTTP/1.1"
    # headers and body leave in two writes: with Nagle, each answer would wait ~40 ms for a delayed ACK
    disable_nagle_algorithm = True

    def _route(self, method):
        self.server.owner.handle(self, method)

    def do_GET(self):  # noqa: N802 (http.server's names)
        self._route(emu.GET)

    def do_POST(self):  # noqa: N802 (http.server's names)
        self._route(emu.POST)

    def do_PUT(self):  # noqa: N802 (http.server's names)
        self._route(emu.PUT)

    def do_PATCH(self):  # noqa: N802 (http.server's names)
        self._route(emu.PATCH)

    def do_DELETE(self):  # noqa: N802 (http.server's names)
        self._route(emu.DELETE)

    def log_message(self, fmt, *args):
        logger.debug(fmt, *args)


class GcsTestServer:
    """One local GCS server: `with GcsTestServer() as server: os.environ.update(server.env)`."""

    def __init__(self, bucket: str = BUCKET, host: str = "127.0.0.1", port: int = 0):
        logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)  # "Resource not found" on 404s
        self.bucket = bucket
        self.storage = _MemoryStorage(use_memory_fs=True)
        self.lock = threading.Lock()
        self.forbidden: list[tuple[str, str, bool]] = []  # (bucket, key prefix, reads too)
        self.credentials_required = False
        self.requests: collections.deque = collections.deque(maxlen=100_000)
        self._httpd = _HTTPServer((host, port), partial(_RequestHandler, self.storage), self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="gcs-test-server",
                                        daemon=True)
        self.create_bucket(bucket)

    # ------------------------------------------------------------------------------------- lifetime
    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def env(self) -> dict[str, str]:
        return client_env(self.url)

    def start(self) -> GcsTestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> GcsTestServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------------- for tests, direct
    def create_bucket(self, name: str) -> None:
        with self.lock:
            emu_buckets.create_bucket(name, self.storage)
            # no soft delete: a deleted object's bytes are dropped at once
            self.storage.buckets[name]["softDeletePolicy"] = {"retentionDurationSeconds": "0"}

    def new_prefix(self, hint: str = "t") -> str:
        """A fresh gs://bucket/<hint>-<random> (nothing is created)."""
        hint = re.sub(r"[^A-Za-z0-9_.-]+", "-", hint)[:60].strip("-") or "t"
        return f"gs://{self.bucket}/{hint}-{uuid.uuid4().hex[:8]}"

    def listing(self, url: str) -> dict[str, bytes]:
        """{object name: content} of every object under a gs:// prefix, read past the HTTP layer."""
        bucket, key = split_url(url)
        with self.lock:
            names = [n for n in self.storage.objects.get(bucket, {}) if n.startswith(key)]
            return {n: self.storage.get_file(bucket, n) for n in sorted(names)}

    def metadata(self, url: str) -> dict | None:
        bucket, key = split_url(url)
        with self.lock:
            obj = self.storage.objects.get(bucket, {}).get(key)
            return dict(obj) if obj is not None else None

    @contextlib.contextmanager
    def forbid(self, url: str, reads: bool = False):
        """Answer 403 to writes (and reads, with reads=True) of objects under gs://bucket/prefix."""
        entry = (*split_url(url), reads)
        with self.lock:
            self.forbidden.append(entry)
        try:
            yield
        finally:
            with self.lock:
                self.forbidden.remove(entry)

    @contextlib.contextmanager
    def requiring_credentials(self):
        """Answer 401 to every request without an Authorization header, as GCS answers an anonymous caller."""
        self.credentials_required = True
        try:
            yield
        finally:
            self.credentials_required = False

    def _is_forbidden(self, bucket: str | None, name: str | None, write: bool) -> bool:
        if bucket is None:
            return False
        return any(bucket == b and (name or "").startswith(p) and (write or reads)
                   for b, p, reads in self.forbidden)

    # ---------------------------------------------------------------------------------- serving
    def handle(self, handler, method: str) -> None:
        method = handler.headers.get("x-http-method-override") or method
        request = emu.Request(handler, method)
        request.set_match(None)
        response = _Response(handler)
        try:
            _ = request.data  # read the body now (outside the lock; keep-alive needs it consumed)
        except Exception as e:  # a malformed body is the client's error
            _error(response, HTTPStatus.BAD_REQUEST, f"unreadable body: {e}", "invalid")
        else:
            with self.lock:
                try:
                    self._dispatch(request, response)
                except Exception:  # answer 500 with the traceback, keep serving
                    logger.error("GCS test server: %s %s\n%s", method, request.full_url, traceback.format_exc())
                    response = _Response(handler)
                    _error(response, HTTPStatus.INTERNAL_SERVER_ERROR, traceback.format_exc(limit=3), "backendError")
        self.requests.append((method, handler.path, response.status.value))
        try:
            response.close()
        except ConnectionError:
            logger.debug("GCS test server: the client left before the answer to %s %s", method, handler.path)
            handler.close_connection = True

    def _match(self, request):
        """The emulator's handler for this request (and set the request's path parameters)."""
        for regex, handlers in emu.HANDLERS:
            match = re.fullmatch(regex, request.path)
            if match:
                request.set_match(match)
                return handlers.get(request.method)
        return None

    def _dispatch(self, request, response) -> None:
        path, method = request.path, request.method
        if self.credentials_required and not request._request_handler.headers.get("Authorization"):
            return _error(response, HTTPStatus.UNAUTHORIZED,
                          "Anonymous caller does not have storage.objects.list access to the Google Cloud Storage "
                          "bucket. Permission 'storage.objects.list' denied on resource (or it may not exist).",
                          "required")
        move = _MOVE.fullmatch(path)
        if move and method == emu.POST:
            request.set_match(move)
            return self._move(request, response)
        upload = _UPLOAD.fullmatch(path)
        if upload and method == emu.DELETE and request.query.get("upload_id"):
            request.set_match(upload)
            return self._cancel_upload(request, response)

        handler = self._match(request)
        if handler is None and method == emu.POST and request.query.get("uploadType") and path.endswith("/o"):
            handler = emu_objects.insert  # uploads to .../b/B/o without /upload (the emulator allows them)
        if handler is None:
            _error(response, HTTPStatus.NOT_IMPLEMENTED, f"{method} {path} is not implemented", "notImplemented")
            return
        params = request.params or {}
        bucket = params.get("bucket_name")

        if handler is emu_objects.batch:
            return self._batch(request, response)
        if handler is emu_objects.ls:
            return self._list(request, response, handler)
        if handler in (emu_objects.get, emu_objects.download, emu_objects.acl_list):
            if self._is_forbidden(bucket, params.get("object_id"), write=False):
                return self._forbidden(response, bucket, params.get("object_id"), "get")
            obj = self._object(bucket, params.get("object_id"))
            if obj is not None and (status := _preconditions(request, obj, read=True)):
                response.status = status
                return
            handler(request, response, self.storage)
            media = handler is emu_objects.download or (request.query.get("alt") or [""])[0] == "media"
            if media and obj is not None and response.status.value in (200, 206):
                self._generation_headers(response, obj)
            return
        if method == emu.GET:  # a bucket's metadata, IAM policy or ACLs
            if self._is_forbidden(bucket, None, write=False):
                return self._forbidden(response, bucket, None, "get")
            return handler(request, response, self.storage)

        # writes: the object they create, replace or delete (None: a bucket)
        name, source = self._write_target(request, handler, params)
        if handler in (emu_objects.copy, emu_objects.rewrite):
            bucket = params.get("dest_bucket_name")
        if self._is_forbidden(bucket, name, write=True):
            return self._forbidden(response, bucket, name, "create" if method != emu.DELETE else "delete")
        if source is not None and self._is_forbidden(params.get("bucket_name"), source, write=False):
            return self._forbidden(response, params.get("bucket_name"), source, "get")
        if name is not None:
            obj = self._object(bucket, name)
            if handler in (emu_objects.delete, emu_objects.patch) and obj is None:
                response.status = HTTPStatus.NOT_FOUND
                return
            if status := _preconditions(request, obj, read=False):
                response.status = status
                return
        if source is not None:
            src = self._object(params.get("bucket_name"), source)
            if src is not None and (status := _preconditions(request, src, read=False, prefix="Source")):
                response.status = status
                return
        handler(request, response, self.storage)

    def _object(self, bucket: str | None, name: str | None) -> dict | None:
        if bucket is None or name is None:
            return None
        return self.storage.objects.get(bucket, {}).get(name)

    def _write_target(self, request, handler, params) -> tuple[str | None, str | None]:
        """(object written, object read) of a write request."""
        if handler in (emu_objects.copy, emu_objects.rewrite):
            return params.get("dest_object_id"), params.get("object_id")
        if handler in (emu_objects.insert, emu_objects.upload_partial):
            upload_id = (request.query.get("upload_id") or [None])[0]
            if upload_id is not None:
                session = self.storage.resumable.get(upload_id)
                return (session or {}).get("name"), None
            if request.query.get("name"):
                return request.query["name"][0], None
            data = request.data
            if isinstance(data, dict):
                meta = data.get("meta", data)
                return meta.get("name"), None
            return None, None
        return params.get("object_id"), None

    def _forbidden(self, response, bucket, name, action) -> None:
        _error(response, HTTPStatus.FORBIDDEN,
               f"anonymous caller does not have storage.objects.{action} access to the Google Cloud Storage "
               f"object. Permission 'storage.objects.{action}' denied on resource (or it may not exist): "
               f"{bucket}/{name or ''}", "forbidden")

    @staticmethod
    def _generation_headers(response, obj: dict) -> None:
        response["x-goog-generation"] = str(obj["generation"])
        response["x-goog-metageneration"] = str(obj.get("metageneration") or 1)
        response["x-goog-storage-class"] = obj.get("storageClass") or "STANDARD"
        response["x-goog-stored-content-length"] = str(obj.get("size"))
        response["x-goog-stored-content-encoding"] = obj.get("contentEncoding") or "identity"

    # ------------------------------------------------------------------------- fixed and added
    def _list(self, request, response, handler) -> None:
        params = request.params
        prefix = (request.query.get("prefix") or [""])[0]
        if self._is_forbidden(params["bucket_name"], prefix, write=False):
            return self._forbidden(response, params["bucket_name"], prefix, "list")
        handler(request, response, self.storage)
        if response.status.value != 200:
            return
        start = (request.query.get("startOffset") or [None])[0]
        end = (request.query.get("endOffset") or [None])[0]
        if start is None and end is None:
            return
        in_range = lambda name: (start is None or name >= start) and (end is None or name < end)
        body = json.loads(response._content)
        body["items"] = [item for item in body.get("items") or [] if in_range(item["name"])]
        body["prefixes"] = [p for p in body.get("prefixes") or [] if in_range(p)]
        response.json(body)

    def _move(self, request, response) -> None:
        """objects.move within a bucket: the destination gets a new generation, the source goes."""
        params = request.params
        bucket, source, dest = params["bucket_name"], params["object_id"], params["dest_object_id"]
        if self._is_forbidden(bucket, dest, write=True) or self._is_forbidden(bucket, source, write=True):
            return self._forbidden(response, bucket, dest, "create")
        src = self._object(bucket, source)
        wanted = (request.query.get("sourceGeneration") or [None])[0]
        if src is None or (wanted is not None and str(src["generation"]) != wanted):
            _error(response, HTTPStatus.NOT_FOUND, f"No such object: {bucket}/{source}", "notFound")
            return
        status = (_preconditions(request, self._object(bucket, dest), read=False)
                  or _preconditions(request, src, read=False, prefix="Source"))
        if status:
            response.status = status
            return
        moved = emu_objects._copy(request.base_url, self.storage, bucket, source, bucket, dest)
        self.storage.delete_file(bucket, source)
        response.json(moved)

    def _cancel_upload(self, request, response) -> None:
        """DELETE on a resumable session: GCS answers 499 and the object is never created."""
        upload_id = request.query["upload_id"][0]
        try:
            self.storage.delete_resumable_file_obj(upload_id)
        except NotFound:
            response.status = HTTPStatus.NOT_FOUND
            return
        self.storage._delete_file(RESUMABLE_DIR, self.storage.safe_id(upload_id))
        response.status = _CLIENT_CLOSED

    def _batch(self, request, response) -> None:
        """The emulator's batch, with 403 parts for forbidden items."""
        boundary = "batch_" + uuid.uuid4().hex
        response["Content-Type"] = f"multipart/mixed; boundary={boundary}"
        for item in request.data or []:
            response._content += f"--{boundary}\r\nContent-Type: application/http\r\n"
            method, bucket, name = item.get("method"), item.get("bucket_name"), item.get("object_id")
            target = item.get("dest_object_id") or name
            if self._is_forbidden(bucket, target, write=True):
                message = f"anonymous caller does not have storage.objects.delete access to {bucket}/{target}"
                self._batch_part(response, "HTTP/1.1 403 Forbidden",
                                 {"error": {"code": 403, "message": message,
                                            "errors": [{"message": message, "domain": "global",
                                                        "reason": "forbidden"}]}})
                continue
            part = emu_objects._BATCH_METHOD_HANDLERS.get(method)
            if part is None or not part(request, item, self.storage, bucket, name, item.get("meta"), _Sink(response)):
                message = f"No such object: {bucket}/{name}"
                self._batch_part(response, "HTTP/1.1 404 Not Found",
                                 {"error": {"code": 404, "message": message,
                                            "errors": [{"message": message, "domain": "global",
                                                        "reason": "notFound"}]}})
        response._content += f"--{boundary}--"

    @staticmethod
    def _batch_part(response, status_line: str, payload: dict) -> None:
        response._content += (f"{status_line}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
                              f"{json.dumps(payload)}\r\n\r\n")


class _Sink:
    """What the emulator's batch helpers write to (its Response.write warns on every call)."""

    def __init__(self, response):
        self._response = response

    def write(self, text: str) -> None:
        self._response._content += text


@contextlib.contextmanager
def bare_emulator(bucket: str = BUCKET):
    """The unmodified gcp-storage-emulator (in memory, a free port), for comparisons; yields its URL."""
    logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)
    server = emu.create_server("127.0.0.1", 0, in_memory=True, default_bucket=bucket)
    server.start()
    try:
        host, port = server._api._httpd.server_address[:2]
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def disarm_tensorboardx_gcs_writers() -> int:
    """Stop every live tensorboardX GCSRecordWriter from uploading again; returns how many.

    SummaryWriter.close() uploads the event file, but tensorboardX's atexit hook keeps the writer
    alive and GCSRecordWriter.__del__ uploads once more at interpreter exit: after a test server has
    stopped, that is 120 s of retries before the process ends.
    """
    import gc

    module = sys.modules.get("tensorboardX.record_writer")
    if module is None:
        return 0
    writers = [obj for obj in gc.get_objects() if type(obj) is module.GCSRecordWriter]
    for writer in writers:
        writer.flush = lambda: None
    return len(writers)


@contextlib.contextmanager
def serve(bucket: str = BUCKET, set_env: bool = True):
    """Start a server, put its variables in os.environ (restored after), yield it."""
    server = GcsTestServer(bucket).start()
    saved = {key: os.environ.get(key) for key in server.env}
    if set_env:
        os.environ.update(server.env)
    try:
        yield server
    finally:
        if disarm_tensorboardx_gcs_writers():
            logger.warning("GCS test server: tensorboardX GCS writers were still alive at the end (disarmed)")
        server.stop()
        if set_env:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
