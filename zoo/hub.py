"""Transport: downloads, the local cache, offline mode, and the Hugging Face Hub (files, folders, push).

What to fetch for a weight name, and whether a folder is fit to push, is decided one layer up, in
:mod:`zoo.pretrained`; this module only moves verified bytes.

Two kinds of remote weights:

- ``hf-hub:org/repo[@revision]`` and registry weights with ``hf_hub_id``: fetched by ``huggingface_hub``
  itself, so its cache (``HF_HOME`` / ``HF_HUB_CACHE``), ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, tokens
  and revisions behave exactly as in every other Hub library.
- plain ``https://`` files (torchvision's published weights): cached under ``$ZOO_HOME/weights/``
  (default: the user cache dir, ``~/.cache/zoo`` on Linux) in a folder named after the file's sha256.
  A file lock makes concurrent loads download once; the download goes to ``<file>.part`` and is
  renamed into place only after its sha256 matched, so the cache never holds a partial or wrong
  file; a ``.part`` left by a killed process is resumed with an HTTP ``Range`` request.
  ``ZOO_WEIGHTS_MIRROR=http://host/prefix`` fetches published files from a mirror (same paths).

Offline (``HF_HUB_OFFLINE=1`` or ``ZOO_OFFLINE=1``) only the caches are read; ``zoo pull NAME`` /
:func:`prefetch` fills them beforehand.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from zoo.errors import WeightsError, ZooError
from zoo.files import (
    CARD_FILE,
    CONFIG_FILE,
    FOLDER_FILES,
    METRICS_FILE,
    WEIGHTS_FILE,
    check_sha256,
    sha256_file,
    verify_folder,
)

log = logging.getLogger(__name__)

HF_PREFIX = "hf-hub:"
DEFAULT_TIMEOUT_S = 30.0
REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


# ---- settings, read at call time so that tests and long-lived processes can change them ------------
def cache_dir() -> Path:
    """Where plain-URL downloads are kept: ``$ZOO_HOME``, else the user cache dir (``~/.cache/zoo``)."""
    home = os.environ.get("ZOO_HOME")
    if home:
        return Path(home).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("zoo"))


def is_offline() -> bool:
    """True under ``ZOO_OFFLINE=1`` or huggingface_hub's offline mode (``HF_HUB_OFFLINE=1``)."""
    value = os.environ.get("ZOO_OFFLINE", "").strip().upper()
    if value in ("1", "ON", "YES", "TRUE"):
        return True
    if value not in ("", "0", "OFF", "NO", "FALSE"):  # a typo must not silently go online
        raise ZooError(f"ZOO_OFFLINE must be 1 (offline) or 0, got {os.environ['ZOO_OFFLINE']!r}")
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _timeout() -> float:
    """``$ZOO_DOWNLOAD_TIMEOUT`` in seconds (a positive number), else 30."""
    text = os.environ.get("ZOO_DOWNLOAD_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ZooError(f"ZOO_DOWNLOAD_TIMEOUT must be a number of seconds > 0, got {text!r}; unset it for 30 s")
    return value


def _mirrored(url: str) -> str:
    """``url`` on ``$ZOO_WEIGHTS_MIRROR`` (same path), for air-gapped sites and tests."""
    mirror = os.environ.get("ZOO_WEIGHTS_MIRROR")
    if not mirror:
        return url
    parts = urlparse(url)
    return mirror.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


def _offline_error(what: str, pull: str, where: str) -> WeightsError:
    return WeightsError(
        f"{what} is not in {where} and offline mode is on (HF_HUB_OFFLINE/ZOO_OFFLINE); "
        f"run `zoo pull {pull}` while online"
    )


# ---- plain URLs ----------------------------------------------------------------------------------
def published_hash_prefix(url: str) -> str | None:
    """torchvision names its files ``<arch>-<first hex digits of the sha256>.pth``, like torch.hub checks."""
    match = re.search(r"-([0-9a-f]{8,64})\.\w+$", Path(urlparse(url).path).name)
    return match.group(1) if match else None


def _check_hash(path: Path, sha256: str | None, hash_prefix: str | None, label: str, action: str) -> None:
    if sha256 is not None:
        check_sha256(path, sha256, label=label, action=action)
    elif hash_prefix is not None:
        actual = sha256_file(path)
        if not actual.startswith(hash_prefix):
            raise WeightsError(
                f"sha256 of {label} is {actual[:12]}…, but the published name promises {hash_prefix}…: "
                f"the file is corrupt or was tampered with; {action}"
            )


def _http_error(url: str, code: int, reason: str) -> WeightsError:
    hint = {404: "no file at that address", 401: "access denied", 403: "access denied"}.get(code)
    if hint is None:
        hint = "the server failed; try again later" if code >= 500 else "the server refused the request"
    return WeightsError(f"download of {url} failed: HTTP {code} {reason} ({hint})")


def _stream(url: str, part: Path, label: str) -> bool:
    """Download ``url`` into ``part``, resuming from its current size; True if it resumed."""
    import http.client
    import urllib.error
    import urllib.request

    from huggingface_hub.utils import tqdm

    from zoo._version import __version__

    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"zoo/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=_timeout())
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the .part is already complete or longer than the file: start over
            part.unlink()
            return _stream(url, part, label)
        raise _http_error(url, err.code, err.reason) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise WeightsError(
            f"cannot download {url} ({reason or 'timed out'}); check the network or ZOO_WEIGHTS_MIRROR"
        ) from None
    resumed = bool(offset) and response.status == 206
    length = response.headers.get("Content-Length")
    total = int(length) + (offset if resumed else 0) if length is not None else None
    with (
        response,
        open(part, "ab" if resumed else "wb") as out,
        tqdm(
            total=total, initial=offset if resumed else 0, unit="B", unit_scale=True, unit_divisor=1024, desc=label
        ) as bar,
    ):
        try:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
        except (TimeoutError, http.client.HTTPException, OSError) as err:
            raise WeightsError(
                f"download of {url} broke off after {out.tell():,} bytes ({err or 'timed out'}); try again"
            ) from None
        received = out.tell()
    if total is not None and received != total:
        raise WeightsError(f"download of {url} stopped at {received:,} of {total:,} bytes; try again")
    return resumed


def download_url(
    url: str, *, sha256: str | None = None, hash_prefix: str | None = None, name: str | None = None
) -> Path:
    """The cached copy of ``url``, downloaded once (across processes) and verified before use.

    Cached under ``cache_dir()/weights/<sha256>/<file name>`` (``url-<hash of the url>`` when the
    content hash is not known beforehand). A cached file that no longer matches its hash is removed
    and reported; a download that does not match is never moved into the cache.
    """
    filename = Path(urlparse(url).path).name or "download"
    key = sha256 or "url-" + hashlib.sha256(url.encode()).hexdigest()[:16]
    target = cache_dir() / "weights" / key / filename
    if target.is_file():
        return _verified_cached(target, sha256, hash_prefix)
    if is_offline():
        raise _offline_error(filename, name or url, f"the zoo cache ({cache_dir()})")
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.is_file():  # another process downloaded it while this one waited for the lock
            return _verified_cached(target, sha256, hash_prefix)
        part = target.with_name(target.name + ".part")
        if part.exists():
            log.info("resuming the interrupted download of %s at %s bytes", filename, f"{part.stat().st_size:,}")
        try:
            resumed = _stream(_mirrored(url), part, filename)
            discarded = "the download was discarded"
            try:
                _check_hash(part, sha256, hash_prefix, _mirrored(url), discarded)
            except WeightsError:
                if not resumed:
                    raise
                log.info("resumed download of %s does not verify; downloading it again from the start", filename)
                part.unlink()
                _stream(_mirrored(url), part, filename)
                _check_hash(part, sha256, hash_prefix, _mirrored(url), discarded)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, target)
    return target


def _verified_cached(path: Path, sha256: str | None, hash_prefix: str | None) -> Path:
    try:
        _check_hash(
            path,
            sha256,
            hash_prefix,
            f"cached {path}",
            "the cached copy was removed: loading again downloads a fresh one",
        )
    except WeightsError:
        path.unlink(missing_ok=True)
        raise
    return path


# ---- Hugging Face Hub ----------------------------------------------------------------------------
def parse_hf(spec: str) -> tuple[str, str | None]:
    """``"org/repo@revision"`` → ``("org/repo", "revision")``; the revision is optional."""
    repo_id, _, revision = spec.removeprefix(HF_PREFIX).partition("@")
    if not REPO_ID.fullmatch(repo_id):
        raise WeightsError(f"{spec!r} is not a hub repo; write hf-hub:org/name or hf-hub:org/name@revision")
    return repo_id, revision or None


def _hf_error(err: Exception, repo_id: str, revision: str | None, filename: str, pull: str) -> WeightsError:
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    at = f"{repo_id}@{revision or 'main'}"
    if isinstance(err, LocalEntryNotFoundError):
        if is_offline():
            return _offline_error(f"{at}/{filename}", pull, "the Hugging Face cache")
        if isinstance(err.__cause__, HfHubHTTPError):  # the hub answered, with an error: say which
            return _hf_error(err.__cause__, repo_id, revision, filename, pull)
        return WeightsError(
            f"cannot reach the hub at {constants.ENDPOINT} for {at}/{filename} and it is not cached; "
            f"check the network or HF_ENDPOINT, or run `zoo pull {pull}` where the hub is reachable"
        )
    if isinstance(err, RepositoryNotFoundError):
        return WeightsError(
            f"hub repository {repo_id} not found at {constants.ENDPOINT} "
            "(if it is private, log in with `hf auth login` or set HF_TOKEN)"
        )
    if isinstance(err, RevisionNotFoundError):
        return WeightsError(f"{repo_id} has no revision {revision!r}; give a branch, tag or commit that exists")
    if isinstance(err, RemoteEntryNotFoundError):
        return WeightsError(
            f"{at} has no {filename}; a zoo repo holds {', '.join(FOLDER_FILES[:2])} (upload one with `zoo push`)"
        )
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        status = err.response.status_code
        hint = "try again later" if status >= 500 else "check the repo id, the revision and your token"
        return WeightsError(f"the hub at {constants.ENDPOINT} answered HTTP {status} for {at}/{filename}; {hint}")
    return WeightsError(
        f"cannot fetch {at}/{filename} from the hub at {constants.ENDPOINT} ({type(err).__name__}: {err}); try again later".splitlines()[
            0
        ]
    )


def hf_file(
    repo_id: str,
    filename: str,
    revision: str | None = None,
    *,
    pull: str | None = None,
    optional: bool = False,
    **options: Any,
) -> Path | None:
    """One file of a hub repo through huggingface_hub's cache (``None`` for a missing ``optional`` file).

    ``options`` are ``hf_hub_download``'s own: ``token``, ``cache_dir``, ``force_download``,
    ``local_files_only`` (also on under ``HF_HUB_OFFLINE``/``ZOO_OFFLINE``).
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RemoteEntryNotFoundError

    options = {k: v for k, v in options.items() if v is not None}
    options["local_files_only"] = bool(options.get("local_files_only")) or is_offline()
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, **options))
    except Exception as err:  # huggingface_hub's own errors, translated into one line with what to do
        offline = options["local_files_only"]
        if optional and (
            isinstance(err, RemoteEntryNotFoundError) or (isinstance(err, LocalEntryNotFoundError) and offline)
        ):
            return None
        if isinstance(err, (EntryNotFoundError, OSError, ValueError)) or type(err).__module__.startswith("httpx"):
            raise _hf_error(err, repo_id, revision, filename, pull or f"{HF_PREFIX}{repo_id}") from None
        raise


def hf_folder(spec: str, *, name: str | None = None, **options: Any) -> Path:
    """The local snapshot folder of a zoo repo on the hub (``org/repo[@revision]``).

    ``config.json`` is fetched first; the other files are then pinned to the commit it came from, so a
    push landing in between cannot mix two versions of the weights.
    """
    repo_id, revision = parse_hf(spec)
    pull = name or f"{HF_PREFIX}{spec.removeprefix(HF_PREFIX)}"
    config = hf_file(repo_id, CONFIG_FILE, revision, pull=pull, **options)
    commit = config.parent.name  # snapshots/<commit sha>/config.json
    weights = hf_file(repo_id, WEIGHTS_FILE, commit, pull=pull, **options)
    metrics = hf_file(repo_id, METRICS_FILE, commit, pull=pull, optional=True, **options)
    hf_file(repo_id, CARD_FILE, commit, pull=pull, optional=True, **options)
    try:  # checked at download, so that a bad file is dropped from the cache, not kept
        if metrics is None:  # a repo of another library (timm's): the Hub's own sha256 of the LFS file
            check_lfs_blob(weights, label=f"{repo_id}@{commit[:12]}/{WEIGHTS_FILE}")
        verify_folder(
            config.parent,
            label=f"{repo_id}@{commit[:12]}/{WEIGHTS_FILE}",
            action="the cached copy was removed: loading again downloads a fresh one",
        )
    except WeightsError:
        _remove_cached_blob(weights)
        _remove_cached_blob(config)  # the record covers both files: either may be the bad one
        raise
    return config.parent


def check_lfs_blob(path: Path, *, label: str) -> None:
    """A Hub file stored with Git LFS against the sha256 the Hub gave for it (``X-Linked-Etag``), which
    huggingface_hub's cache names the blob by; a regular (non-LFS) file's blob is named by its git sha1."""
    blob = path.resolve()
    if re.fullmatch(r"[0-9a-f]{64}", blob.name):
        check_sha256(
            blob, blob.name, label=label, action="the cached copy was removed: loading again downloads a fresh one"
        )


def _remove_cached_blob(path: Path) -> None:
    """Drop a file from the Hugging Face cache: the snapshot link and the blob it points to."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def hf_file_verified(
    repo_id: str, filename: str, revision: str | None, sha256: str | None, *, pull: str, **options: Any
) -> Path:
    """One published file of a hub repo, held to its known sha256 (a bad cached copy is removed)."""
    path = hf_file(repo_id, filename, revision, pull=pull, **options)
    if sha256:
        try:
            check_sha256(path, sha256, label=f"{repo_id}/{filename}", action="the cached copy was removed")
        except WeightsError:
            _remove_cached_blob(path)
            raise
    return path


# ---- upload --------------------------------------------------------------------------------------
def push_folder(
    folder: Path,
    repo_id: str,
    name: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    create_pr: bool = False,
) -> str:
    """Upload a weight folder (checked by the caller) to the hub as a model repo, created if needed.

    Returns the commit URL. Only the four files of the layout are uploaded. ``revision`` names a branch,
    created from ``main`` when it does not exist yet; ``create_pr`` opens a pull request instead.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    repo_id, _ = parse_hf(repo_id)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            revision=revision,
            allow_patterns=list(FOLDER_FILES),
            commit_message=commit_message or f"Upload {name} with zoo",
            create_pr=create_pr,
        )
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        hint = (
            "log in with `hf auth login` or set HF_TOKEN to a token with write access"
            if status in (401, 403)
            else "try again later"
        )
        raise WeightsError(
            f"push of {folder} to {repo_id} failed: HTTP {status} from {api.endpoint} ({hint})"
        ) from None
    except Exception as err:  # httpx / requests connection errors are not OSError
        if not isinstance(err, OSError) and not type(err).__module__.startswith(("httpx", "requests", "urllib3")):
            raise
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise WeightsError(
            f"cannot reach the hub at {api.endpoint} to push {folder} ({reason}); check the network or HF_ENDPOINT"
        ) from None
    log.info("pushed %s to %s (commit %s)", folder, repo_id, (commit.oid or "")[:12])
    return str(commit)
