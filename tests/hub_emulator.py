"""A small emulator of the Hugging Face Hub's HTTP API, for tests: the real ``huggingface_hub`` client
talks to it through ``HF_ENDPOINT``.

It speaks the parts of the protocol that ``create_repo`` / ``upload_folder`` / ``hf_hub_download``
use when ``hf_xet`` is disabled (``HF_HUB_DISABLE_XET=1``):

- ``POST /api/repos/create``; ``POST /api/validate-yaml``; ``POST /api/models/{repo}/branch/{name}``
- ``GET /api/models/{repo}[/revision/{rev}]`` (repo info) and ``/api/models/{repo}/tree/{rev}``
- ``POST /api/models/{repo}/preupload/{rev}``: weight files (``*.safetensors``, ``*.bin``, ``*.pt``...)
  go through Git LFS like on the Hub, everything else is a regular file inlined in the commit
- ``POST /{repo}.git/info/lfs/objects/batch`` + ``PUT /lfs-upload/{oid}`` (LFS "basic" transfer)
- ``POST /api/models/{repo}/commit/{rev}`` (the NDJSON commit payload)
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` with ``ETag`` (git blob sha1) or ``X-Linked-Etag``
  (LFS sha256), ``X-Repo-Commit``, ``Content-Length`` and ``Range`` support

Plain files can be served too (``server.static["/models/x.pth"] = data``) for URL downloads. Every
``GET`` of a file body is counted (``server.downloads(path)``), and faults can be injected per path:
an HTTP status, a hang longer than the client's timeout, a slow body, or a body cut off half-way.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Fault:
    """What to do instead of serving a path normally.

    ``status``: answer with this HTTP status. ``hang``: sleep this long before answering.
    ``bytes_per_second``: serve the body slowly. ``cut_at``: send this many bytes of the body, then close.
    ``times``: how many requests it applies to (None: all).
    """

    status: int | None = None
    hang: float = 0.0
    bytes_per_second: int | None = None
    cut_at: int | None = None
    times: int | None = None


@dataclass
class Repo:
    private: bool = False
    branches: dict[str, str] = field(default_factory=dict)  # name → commit sha
    commits: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)  # sha → {path: (kind, blob key)}


class HubEmulator(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.lock = threading.Lock()
        self.repos: dict[str, Repo] = {}
        self.blobs: dict[str, bytes] = {}  # git sha1 (regular) or sha256 (LFS) → content
        self.static: dict[str, bytes] = {}
        self.faults: dict[str, Fault] = {}
        self.counts: collections.Counter[str] = collections.Counter()  # path → body GETs started
        self.log: list[tuple[str, str, str]] = []  # (method, path, Range header)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def handle_error(self, request, client_address) -> None:
        """Clients that time out or are killed mid-download close the socket: expected here, not noise."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def start(self) -> HubEmulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def downloads(self, suffix: str) -> int:
        """How many GETs of a file body whose path ends with ``suffix`` the server answered."""
        with self.lock:
            return sum(n for path, n in self.counts.items() if path.endswith(suffix))

    def reset_counts(self) -> None:
        with self.lock:
            self.counts.clear()
            self.log.clear()

    # ---- repository state -------------------------------------------------------------------------
    def commit(self, repo_id: str, revision: str, files: dict[str, tuple[str, str]], deleted: set[str]) -> str:
        repo = self.repos[repo_id]
        parent = repo.branches.get(revision)
        tree = dict(repo.commits.get(parent, {})) if parent else {}
        tree.update(files)
        for path in deleted:
            tree.pop(path, None)
        sha = hashlib.sha1(json.dumps([parent, sorted(tree.items()), time.time_ns()]).encode()).hexdigest()
        repo.commits[sha] = tree
        repo.branches[revision] = sha
        return sha

    def resolve(self, repo_id: str, revision: str) -> tuple[str, dict[str, tuple[str, str]]] | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            return None
        sha = repo.branches.get(revision, revision if revision in repo.commits else None)
        return (sha, repo.commits[sha]) if sha else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HubEmulator

    def log_message(self, format: str, *args) -> None:  # keep pytest output clean
        pass

    # ---- plumbing ---------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, payload, status: int = 200) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(
            status,
            json.dumps({"error": message}).encode(),
            {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message},
        )

    def _fault(self, path: str) -> Fault | None:
        with self.server.lock:
            fault = self.server.faults.get(path)
            if fault is None or fault.times == 0:
                return None
            if fault.times is not None:
                fault.times -= 1
            return fault

    def _serve_bytes(self, path: str, data: bytes, headers: dict[str, str]) -> None:
        """A file body with Range support, counted, with the faults injected for ``path``."""
        fault = self._fault(path)
        if fault and fault.hang:
            time.sleep(fault.hang)
        if fault and fault.status:
            self._send(fault.status, b"injected failure", {"Content-Type": "text/plain"})
            return
        start, status = 0, 200
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match and int(match.group(1)) < len(data):
            start, status = int(match.group(1)), 206
            headers = {**headers, "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        if self.command == "GET":
            with self.server.lock:
                self.server.counts[path] += 1
                self.server.log.append((self.command, path, self.headers.get("Range", "")))
        body = data[start:]
        self.send_response(status)
        for key, value in {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if fault and fault.cut_at is not None:
            self.wfile.write(body[: fault.cut_at])
            self.wfile.flush()
            self.close_connection = True
            return
        step = max(1, (fault.bytes_per_second or 0) // 20) if fault and fault.bytes_per_second else len(body) or 1
        for offset in range(0, len(body), step):
            self.wfile.write(body[offset : offset + step])
            if fault and fault.bytes_per_second:
                self.wfile.flush()
                time.sleep(0.05)

    # ---- routes -----------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = unquote(urlparse(self.path).path)
        if path in self.server.static:
            self._serve_bytes(
                path, self.server.static[path], {"ETag": f'"{hashlib.sha256(self.server.static[path]).hexdigest()}"'}
            )
        elif match := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/(.+))?", path):
            self._repo_info(match.group(1), match.group(2) or "main")
        elif match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)/?(.*)", path):
            self._tree(match.group(1), match.group(2))
        elif match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            self._resolve(match.group(1), match.group(2), match.group(3), path)
        else:
            self._error(404, "NotFound", f"no route for GET {path}")

    def do_POST(self) -> None:
        path = unquote(urlparse(self.path).path)
        body = self._body()
        if not self.headers.get("Authorization", "").startswith("Bearer "):  # every write needs a token
            self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            return
        if path == "/api/repos/create":
            self._create_repo(json.loads(body))
        elif path == "/api/validate-yaml":
            self._json({"errors": [], "warnings": []})
        elif match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/(.+)", path):
            self._preupload(match.group(1), json.loads(body))
        elif match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/(.+)", path):
            self._commit(match.group(1), match.group(2), body)
        elif match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/branch/(.+)", path):
            self._branch(match.group(1), match.group(2), json.loads(body or b"{}"))
        elif match := re.fullmatch(r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path):
            self._lfs_batch(json.loads(body))
        else:
            self._error(404, "NotFound", f"no route for POST {path}")

    def do_PUT(self) -> None:
        path = unquote(urlparse(self.path).path)
        match = re.fullmatch(r"/lfs-upload/([0-9a-f]{64})", path)
        data = self._body()
        if not match or hashlib.sha256(data).hexdigest() != match.group(1):
            self._error(400, "BadRequest", "LFS upload does not match its oid")
            return
        with self.server.lock:
            self.server.blobs[match.group(1)] = data
        self._send(200)

    # ---- API --------------------------------------------------------------------------------------
    def _create_repo(self, payload: dict) -> None:
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        with self.server.lock:
            if repo_id in self.server.repos:  # the Hub answers 409 with the repo's address
                self._send(
                    409,
                    json.dumps(
                        {"error": "You already created this model repo", "url": f"{self.server.url}/{repo_id}"}
                    ).encode(),
                    {"Content-Type": "application/json"},
                )
                return
            repo = self.server.repos[repo_id] = Repo(private=payload.get("visibility") == "private")
            attributes = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES).encode()
            key = git_blob_sha1(attributes)
            self.server.blobs[key] = attributes
            self.server.commit(repo_id, "main", {".gitattributes": ("regular", key)}, set())
        self._json({"url": f"{self.server.url}/{repo_id}", "name": repo_id, "id": repo_id, "private": repo.private})

    def _resolve_or_404(self, repo_id: str, revision: str):
        """(commit, tree) of a revision, or None after answering 404 the way the Hub does."""
        found = self.server.resolve(repo_id, revision)
        if found is None:
            code = "RepoNotFound" if repo_id not in self.server.repos else "RevisionNotFound"
            self._error(404, code, f"{repo_id}@{revision} not found")
        return found

    def _repo_info(self, repo_id: str, revision: str) -> None:
        found = self._resolve_or_404(repo_id, revision)
        if found is None:
            return
        sha, tree = found
        siblings = [{"rfilename": p, "size": len(self.server.blobs[k])} for p, (_, k) in sorted(tree.items())]
        self._json(
            {
                "id": repo_id,
                "modelId": repo_id,
                "sha": sha,
                "private": self.server.repos[repo_id].private,
                "siblings": siblings,
                "tags": [],
                "downloads": 0,
                "likes": 0,
            }
        )

    def _tree(self, repo_id: str, revision: str) -> None:
        found = self.server.resolve(repo_id, revision)
        if found is None:
            self._error(404, "RevisionNotFound", f"{repo_id}@{revision} not found")
            return
        entries = []
        for path, (kind, key) in sorted(found[1].items()):
            size = len(self.server.blobs[key])
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{key}\nsize {size}\n".encode()
            entry = {
                "type": "file",
                "path": path,
                "size": size,
                "oid": key if kind == "regular" else git_blob_sha1(pointer),
            }
            if kind == "lfs":
                entry["lfs"] = {"oid": key, "size": size, "pointerSize": len(pointer)}
            entries.append(entry)
        self._json(entries)

    def _preupload(self, repo_id: str, payload: dict) -> None:
        if repo_id not in self.server.repos:
            self._error(404, "RepoNotFound", f"repository {repo_id} not found")
            return
        files = [
            {
                "path": f["path"],
                "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) else "regular",
                "shouldIgnore": False,
                "oid": None,
            }
            for f in payload["files"]
        ]
        self._json({"files": files})

    def _lfs_batch(self, payload: dict) -> None:
        objects = []
        for obj in payload["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.server.blobs:  # already stored objects need no upload, like git-lfs
                entry["actions"] = {"upload": {"href": f"{self.server.url}/lfs-upload/{obj['oid']}"}}
            objects.append(entry)
        self._json({"transfer": "basic", "objects": objects})

    def _commit(self, repo_id: str, revision: str, body: bytes) -> None:
        if repo_id not in self.server.repos:
            self._error(404, "RepoNotFound", f"repository {repo_id} not found")
            return
        files: dict[str, tuple[str, str]] = {}
        deleted: set[str] = set()
        with self.server.lock:
            if revision not in self.server.repos[repo_id].branches:
                self._error(404, "RevisionNotFound", f"branch {revision} does not exist; create it first")
                return
            for line in body.splitlines():
                item = json.loads(line)
                value = item["value"]
                if item["key"] == "file":
                    data = base64.b64decode(value["content"])
                    key = git_blob_sha1(data)
                    self.server.blobs[key] = data
                    files[value["path"]] = ("regular", key)
                elif item["key"] == "lfsFile":
                    if value["oid"] not in self.server.blobs:
                        self._error(400, "BadRequest", f"LFS object {value['oid']} was never uploaded")
                        return
                    files[value["path"]] = ("lfs", value["oid"])
                elif item["key"] in ("deletedFile", "deletedFolder"):
                    deleted.add(value["path"])
            sha = self.server.commit(repo_id, revision, files, deleted)
        self._json({"commitUrl": f"{self.server.url}/{repo_id}/commit/{sha}", "commitOid": sha, "success": True})

    def _branch(self, repo_id: str, branch: str, payload: dict) -> None:
        with self.server.lock:
            repo = self.server.repos.get(repo_id)
            if repo is None:
                self._error(404, "RepoNotFound", f"repository {repo_id} not found")
                return
            if branch in repo.branches:
                self._error(409, "Conflict", f"branch {branch} already exists")
                return
            found = self.server.resolve(repo_id, payload.get("startingPoint") or "main")
            repo.branches[branch] = found[0]
        self._json({})

    def _resolve(self, repo_id: str, revision: str, filename: str, path: str) -> None:
        found = self._resolve_or_404(repo_id, revision)
        if found is None:
            return
        sha, tree = found
        if filename not in tree:
            self._send(404, b"Entry not found", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": sha})
            return
        kind, key = tree[filename]
        data = self.server.blobs[key]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{key}"'}
        if kind == "lfs":
            headers.update({"X-Linked-Etag": f'"{key}"', "X-Linked-Size": str(len(data))})
        self._serve_bytes(path, data, headers)
