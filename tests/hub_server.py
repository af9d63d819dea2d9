"""A local stand-in for the Hugging Face Hub: a real HTTP server speaking what `huggingface_hub` downloads use.

Endpoints (as `huggingface_hub` calls them):

    GET  /api/models/{repo}[/revision/{rev}]   model_info: {"id", "sha", "siblings": [{"rfilename"}], "gated"}
    GET  /api/models/{repo}/tree/{rev}[/{path}] list_repo_tree / list_repo_files
    POST /api/models/{repo}/paths-info/{rev}    get_paths_info
    HEAD|GET /{repo}/resolve/{rev}/{filename}   file metadata and content: ETag, X-Repo-Commit, Content-Length;
                                                large ("LFS") files answer 302 to a CDN on another origin, with
                                                X-Linked-Etag (their sha256) and X-Linked-Size
    HEAD|GET /cdn/{sha256}                      the CDN: content, with Range requests (206) for resuming

Errors carry `X-Error-Code` like the Hub's: `RepoNotFound` (404), `RevisionNotFound` (404), `EntryNotFound`
(404), `GatedRepo` (401 without a valid token, 403 with a token that was not granted access).
Faults for tests: `drop_after` cuts a file's connection mid-body, optionally followed by an outage (503s).
"""

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple, Union
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".msgpack", ".h5", ".model")


@dataclass
class Repo:
    files: Dict[str, bytes]
    sha: str
    gated: bool = False


@dataclass
class Fault:
    """Cut the connection once a GET of `filename` has sent the file up to byte `offset`."""

    filename: str
    offset: int
    times: int = 1
    outage: bool = False  # after the cut, answer everything with 503 until `end_outage()`


@dataclass
class Request:
    method: str
    path: str
    status: int
    range: Optional[str] = None
    authorization: Optional[str] = None


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _is_lfs(filename: str, data: bytes) -> bool:
    return filename.endswith(LFS_SUFFIXES) or len(data) > 10 * 1024 * 1024


class FakeHub:
    """A Hub on 127.0.0.1 (random port) with its CDN on a second port; use as a context manager.

    `endpoint` is what HF_ENDPOINT should be set to; `requests` records every request served.
    """

    def __init__(self, tokens: Tuple[str, ...] = (), redirect_lfs: bool = True) -> None:
        self.repos: Dict[str, Repo] = {}
        self.tokens: Set[str] = set(tokens)
        self.redirect_lfs = redirect_lfs
        self.requests: List[Request] = []
        self.faults: List[Fault] = []
        self.in_outage = False
        self._blobs: Dict[str, Tuple[str, bytes]] = {}  # sha256 -> (filename, content), what the CDN serves
        self._lock = threading.Lock()
        self._servers: List[ThreadingHTTPServer] = []

    # ---- content -----------------------------------------------------------------------------------

    def add_repo(self, repo_id: str, files: Dict[str, Union[bytes, str, Path]], gated: bool = False) -> str:
        """Publish a repo; values are bytes, text, or paths of files to read. Returns its commit sha."""
        contents = {}
        for name, value in files.items():
            if isinstance(value, Path):
                value = value.read_bytes()
            contents[name] = value.encode() if isinstance(value, str) else value
        digest = hashlib.sha1(repo_id.encode())
        for name in sorted(contents):
            digest.update(name.encode() + _git_blob_sha1(contents[name]).encode())
        repo = Repo(contents, digest.hexdigest(), gated)
        self.repos[repo_id] = repo
        for name, data in contents.items():
            self._blobs[hashlib.sha256(data).hexdigest()] = (name, data)
        return repo.sha

    @staticmethod
    def add_folder_files(folder: Path) -> Dict[str, Path]:
        """Every file in `folder` (recursively), keyed by its repo path."""
        return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}

    # ---- faults ------------------------------------------------------------------------------------

    def drop_after(self, filename: str, offset: int, times: int = 1, outage: bool = False) -> None:
        """Cut the next `times` GETs of `filename` after byte `offset`; with `outage`, then answer 503s."""
        self.faults.append(Fault(filename, offset, times, outage))

    def end_outage(self) -> None:
        self.in_outage = False

    def served(self, method: str = "GET", filename: Optional[str] = None) -> List[Request]:
        """The requests of `method` that asked for `filename` (by repo path or, on the CDN, by content)."""
        found = []
        for r in self.requests:
            if r.method != method:
                continue
            if filename is None or r.path.endswith("/" + filename) or self._cdn_name(r.path) == filename:
                found.append(r)
        return found

    def _cdn_name(self, path: str) -> Optional[str]:
        m = re.fullmatch(r"/cdn/([0-9a-f]{64})", path)
        return self._blobs[m.group(1)][0] if m and m.group(1) in self._blobs else None

    # ---- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> "FakeHub":
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        for _ in range(2):  # the Hub, then the CDN: another origin, as on the real Hub
            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects
    hub: FakeHub

    def log_message(self, format, *args) -> None:  # quiet
        pass

    # ---- plumbing ----------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes = b"", headers: Optional[Dict[str, str]] = None, head: bool = False) -> None:
        self.send_response(status)
        headers = {"Content-Length": str(len(body)), **(headers or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)
        self._record(status)

    def _record(self, status: int) -> None:
        with self.hub._lock:
            self.hub.requests.append(
                Request(self.command, urlsplit(self.path).path, status, self.headers.get("Range"), self.headers.get("Authorization"))
            )

    def _json(self, status: int, payload, head: bool = False) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"}, head)

    def _error(self, status: int, code: str, message: str, head: bool = False) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
        self._send(status, json.dumps({"error": message}).encode(), headers, head)

    def _repo(self, repo_id: str, revision: Optional[str], head: bool = False) -> Optional[Repo]:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found", head)
        elif revision not in (None, "main", repo.sha):
            self._error(404, "RevisionNotFound", "Invalid rev id: " + revision, head)
        else:
            return repo
        return None

    def _token(self) -> Optional[str]:
        value = self.headers.get("Authorization", "")
        return value[len("Bearer "):] if value.startswith("Bearer ") else None

    # ---- verbs -------------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/paths-info/([^/]+)", urlsplit(self.path).path)
        if self.hub.in_outage:
            return self._error(503, "ServiceUnavailable", "Service unavailable")
        if not m:
            return self._error(404, "NotFound", "Not found")
        repo = self._repo(unquote(m.group(1)), unquote(m.group(2)))
        if repo is None:
            return
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = json.loads(body).get("paths", [])
        else:
            paths = parse_qs(body).get("paths", [])
        self._json(200, [self._tree_entry(repo, p) for p in paths if p in repo.files])

    def _route(self, head: bool) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        if self.hub.in_outage:
            return self._error(503, "ServiceUnavailable", "Service unavailable", head)
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
            return self._model_info(m.group(1), m.group(2), head)
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path):
            return self._tree(m.group(1), m.group(2), m.group(3) or "", parse_qs(url.query), head)
        if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            return self._resolve(m.group(1), m.group(2), m.group(3), head)
        if m := re.fullmatch(r"/cdn/([0-9a-f]{64})", path):
            if m.group(1) not in self.hub._blobs:
                return self._error(404, "NotFound", "No such blob", head)
            name, data = self.hub._blobs[m.group(1)]
            return self._content(name, data, {"ETag": f'"{m.group(1)}"'}, head)
        self._error(404, "NotFound", "Not found", head)

    # ---- API ---------------------------------------------------------------------------------------

    def _model_info(self, repo_id: str, revision: Optional[str], head: bool) -> None:
        repo = self._repo(repo_id, revision, head)
        if repo is None:
            return
        payload = {
            "_id": repo.sha[:24], "id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0],
            "sha": repo.sha, "private": False, "gated": "manual" if repo.gated else False, "disabled": False,
            "tags": [], "siblings": [{"rfilename": name} for name in sorted(repo.files)],
        }
        self._json(200, payload, head)

    def _tree_entry(self, repo: Repo, name: str) -> dict:
        data = repo.files[name]
        entry = {"type": "file", "oid": _git_blob_sha1(data), "size": len(data), "path": name}
        if _is_lfs(name, data):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    def _tree(self, repo_id: str, revision: str, folder: str, query: dict, head: bool) -> None:
        repo = self._repo(repo_id, revision, head)
        if repo is None:
            return
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        prefix = folder.rstrip("/") + "/" if folder else ""
        entries, folders = [], set()
        for name in sorted(repo.files):
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix):]
            if "/" in rest:
                parts = rest.split("/")[:-1]
                for depth in range(1, len(parts) + 1 if recursive else 2):
                    folders.add(prefix + "/".join(parts[:depth]))
                if not recursive:
                    continue
            entries.append(self._tree_entry(repo, name))
        entries += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in sorted(folders)]
        self._json(200, entries, head)

    # ---- files -------------------------------------------------------------------------------------

    def _resolve(self, repo_id: str, revision: str, filename: str, head: bool) -> None:
        repo = self._repo(repo_id, revision, head)
        if repo is None:
            return
        if repo.gated and self._token() not in self.hub.tokens:
            message = f"Access to model {repo_id} is restricted. You must have access to it and be authenticated to access it."
            return self._error(403 if self._token() else 401, "GatedRepo", message, head)
        if filename not in repo.files:
            return self._error(404, "EntryNotFound", f"{filename} does not exist on main", head)
        data = repo.files[filename]
        headers = {"X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes"}
        if _is_lfs(filename, data) and self.hub.redirect_lfs:
            sha256 = hashlib.sha256(data).hexdigest()
            headers.update({
                "ETag": f'"{_git_blob_sha1(data)}"', "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(data)),
                "Location": f"{self.hub.cdn}/cdn/{sha256}",
            })
            return self._send(302, b"", headers, head)
        etag = hashlib.sha256(data).hexdigest() if _is_lfs(filename, data) else _git_blob_sha1(data)
        self._content(filename, data, {**headers, "ETag": f'"{etag}"'}, head)

    def _content(self, filename: str, data: bytes, headers: Dict[str, str], head: bool) -> None:
        headers = {
            **headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{Path(filename).name}";',
        }
        start, status = 0, 200
        if not head and (m := re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))):
            start = int(m.group(1))
            end = int(m.group(2)) + 1 if m.group(2) else len(data)
            if start >= len(data):
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            headers["Content-Range"] = f"bytes {start}-{min(end, len(data)) - 1}/{len(data)}"
            data, status = data[start:end], 206
        if head:
            return self._send(200, data, headers, head=True)
        fault = self._take_fault(filename, start, len(data))
        if fault is None:
            return self._send(status, data, headers)
        # promise the whole body, send part of it, hang up: what a dropped connection looks like
        self.send_response(status)
        for key, value in {"Content-Length": str(len(data)), **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data[: fault.offset - start])
        self.wfile.flush()
        self.close_connection = True
        self._record(-status)  # negative: cut short
        if fault.outage:
            self.hub.in_outage = True

    def _take_fault(self, filename: str, start: int, length: int) -> Optional[Fault]:
        with self.hub._lock:
            for fault in self.hub.faults:
                if fault.filename == filename and fault.times > 0 and start < fault.offset < start + length:
                    fault.times -= 1
                    return fault
        return None
