"""Downloads, the local cache, and the Hugging Face Hub.

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
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from zoo.errors import WeightsError
from zoo.weights import CARD_FILE, CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE, Weights, check_sha256, sha256_file

log = logging.getLogger(__name__)

HF_PREFIX = "hf-hub:"
FOLDER_FILES = (CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE, CARD_FILE)  # what a zoo repo holds
DEFAULT_TIMEOUT_S = 30.0
_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


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
    if os.environ.get("ZOO_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _timeout() -> float:
    return float(os.environ.get("ZOO_DOWNLOAD_TIMEOUT", DEFAULT_TIMEOUT_S))


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
def _published_hash_prefix(url: str) -> str | None:
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
    import socket
    import urllib.error
    import urllib.request

    from huggingface_hub.utils import tqdm

    from zoo import __version__

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
        raise WeightsError(f"cannot download {url} ({reason or 'timed out'}); check the network or ZOO_WEIGHTS_MIRROR") from None
    resumed = bool(offset) and response.status == 206
    length = response.headers.get("Content-Length")
    total = int(length) + (offset if resumed else 0) if length is not None else None
    with response, open(part, "ab" if resumed else "wb") as out, tqdm(
        total=total, initial=offset if resumed else 0, unit="B", unit_scale=True, unit_divisor=1024, desc=label
    ) as bar:
        try:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
        except (http.client.HTTPException, socket.timeout, OSError) as err:
            raise WeightsError(f"download of {url} broke off after {out.tell():,} bytes ({err or 'timed out'}); try again") from None
        received = out.tell()
    if total is not None and received != total:
        raise WeightsError(f"download of {url} stopped at {received:,} of {total:,} bytes; try again")
    return resumed


def download_url(url: str, *, sha256: str | None = None, hash_prefix: str | None = None, name: str | None = None) -> Path:
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
        _check_hash(path, sha256, hash_prefix, f"cached {path}", "the cached copy was removed: loading again downloads a fresh one")
    except WeightsError:
        path.unlink(missing_ok=True)
        raise
    return path


# ---- Hugging Face Hub ----------------------------------------------------------------------------
def parse_hf(spec: str) -> tuple[str, str | None]:
    """``"org/repo@revision"`` → ``("org/repo", "revision")``; the revision is optional."""
    repo_id, _, revision = spec.removeprefix(HF_PREFIX).partition("@")
    if not _REPO_ID.fullmatch(repo_id):
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
        return WeightsError(f"{at} has no {filename}; a zoo repo holds {', '.join(FOLDER_FILES[:2])} (upload one with `zoo push`)")
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        status = err.response.status_code
        hint = "try again later" if status >= 500 else "check the repo id, the revision and your token"
        return WeightsError(f"the hub at {constants.ENDPOINT} answered HTTP {status} for {at}/{filename}; {hint}")
    return WeightsError(f"cannot fetch {at}/{filename} from the hub at {constants.ENDPOINT} ({type(err).__name__}: {err}); try again later".splitlines()[0])


def hf_file(repo_id: str, filename: str, revision: str | None = None, *, pull: str | None = None, optional: bool = False) -> Path | None:
    """One file of a hub repo through huggingface_hub's cache (``None`` for a missing ``optional`` file)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RemoteEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, local_files_only=is_offline()))
    except Exception as err:  # huggingface_hub's own errors, translated into one line with what to do
        if optional and (isinstance(err, RemoteEntryNotFoundError) or (isinstance(err, LocalEntryNotFoundError) and is_offline())):
            return None
        if isinstance(err, (EntryNotFoundError, OSError, ValueError)) or type(err).__module__.startswith("httpx"):
            raise _hf_error(err, repo_id, revision, filename, pull or f"{HF_PREFIX}{repo_id}") from None
        raise


def hf_folder(spec: str, *, name: str | None = None) -> Path:
    """The local snapshot folder of a zoo repo on the hub (``org/repo[@revision]``).

    ``config.json`` is fetched first; the other files are then pinned to the commit it came from, so a
    push landing in between cannot mix two versions of the weights.
    """
    repo_id, revision = parse_hf(spec)
    pull = name or f"{HF_PREFIX}{spec.removeprefix(HF_PREFIX)}"
    config = hf_file(repo_id, CONFIG_FILE, revision, pull=pull)
    commit = config.parent.name  # snapshots/<commit sha>/config.json
    weights = hf_file(repo_id, WEIGHTS_FILE, commit, pull=pull)
    metrics = hf_file(repo_id, METRICS_FILE, commit, pull=pull, optional=True)
    hf_file(repo_id, CARD_FILE, commit, pull=pull, optional=True)
    expected = json.loads(metrics.read_text()).get("sha256") if metrics else None
    if expected:  # checked here too, so that a bad download is dropped from the cache, not kept
        try:
            check_sha256(weights, expected, label=f"{repo_id}@{commit[:12]}/{WEIGHTS_FILE}",
                         action="the cached copy was removed: loading again downloads a fresh one")
        except WeightsError:
            _remove_cached_blob(weights)
            raise
    return config.parent


def _remove_cached_blob(path: Path) -> None:
    """Drop a file from the Hugging Face cache: the snapshot link and the blob it points to."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


# ---- registry weights ----------------------------------------------------------------------------
def fetch_weights(name: str, weights: Weights) -> Path:
    """The local file of registered weights published at a URL or as one file of a hub repo, verified."""
    if weights.url:
        prefix = None if weights.sha256 else _published_hash_prefix(weights.url)
        return download_url(weights.url, sha256=weights.sha256, hash_prefix=prefix, name=name)
    repo_id, revision = parse_hf(weights.hf_hub_id or "")
    path = hf_file(repo_id, weights.filename or WEIGHTS_FILE, revision, pull=name)
    if weights.sha256:
        try:
            check_sha256(path, weights.sha256, label=f"{repo_id}/{weights.filename}", action="the cached copy was removed")
        except WeightsError:
            _remove_cached_blob(path)
            raise
    return path


def registered_url(url: str) -> str | None:
    """The ``arch.tag`` whose published file is at ``url``, if any (so its hash and converter apply)."""
    from zoo.registry import get_weights, list_weights

    return next((name for name in list_weights() if get_weights(name).url == url), None)


def prefetch(*sources: str) -> list[Path]:
    """Download weights into the caches ahead of going offline; returns where each one is.

    Each source is ``arch.tag``, ``hf-hub:org/repo[@revision]`` or an ``https://`` URL, as for
    :func:`zoo.load`. Bundled weights need nothing and return their folder.
    """
    from zoo.registry import get_weights, split_name
    from zoo.weights import bundled_cards_dir

    paths = []
    for source in sources:
        if source.startswith(HF_PREFIX):
            paths.append(hf_folder(source))
            continue
        if source.startswith(("https://", "http://")):
            registered = registered_url(source)
            if registered is None:
                paths.append(download_url(source))
                continue
            source = registered
        weights = get_weights(source)
        name = f"{split_name(source)[0]}.{weights.tag}"
        folder = bundled_cards_dir() / name
        if folder.is_dir():
            paths.append(folder)
        elif weights.hf_hub_id and not weights.filename:
            paths.append(hf_folder(weights.hf_hub_id, name=name))
        elif weights.url or weights.hf_hub_id:
            paths.append(fetch_weights(name, weights))
        else:
            raise WeightsError(f"weights {name} are not bundled and have no download source; train them with `zoo fit --config {weights.recipe}`")
    return paths


def pull(source: str) -> Path:
    """:func:`prefetch` for one source: its local folder or file."""
    return prefetch(source)[0]


# ---- upload --------------------------------------------------------------------------------------
def _check_folder(folder: Path) -> str:
    """A folder about to be pushed must load: registered architecture, weights matching metrics.json."""
    from zoo.weights import config_task_args, read_json

    if not (folder / WEIGHTS_FILE).is_file():
        raise WeightsError(f"{folder} has no {WEIGHTS_FILE}; push a folder written by `zoo fit --card.name` or model.save_pretrained()")
    config = read_json(folder / CONFIG_FILE)
    arch, _ = config_task_args(config, folder / CONFIG_FILE)
    if (folder / METRICS_FILE).is_file():
        expected = read_json(folder / METRICS_FILE).get("sha256")
        if expected:
            check_sha256(folder / WEIGHTS_FILE, expected)
    return str(config.get("name", arch))


def push(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> str:
    """Upload a weight folder to the hub as a model repo (created if needed); returns the commit URL.

    Only the four files of the layout are uploaded. ``revision`` names a branch, created from ``main``
    when it does not exist yet.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    folder = Path(folder)
    name = _check_folder(folder)
    repo_id, _ = parse_hf(repo_id)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=folder, revision=revision, allow_patterns=list(FOLDER_FILES),
            commit_message=commit_message or f"Upload {name} with zoo",
        )
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        hint = "log in with `hf auth login` or set HF_TOKEN to a token with write access" if status in (401, 403) else "try again later"
        raise WeightsError(f"push of {folder} to {repo_id} failed: HTTP {status} from {api.endpoint} ({hint})") from None
    except OSError as err:
        raise WeightsError(f"cannot reach the hub at {api.endpoint} to push {folder} ({err}); check the network or HF_ENDPOINT") from None
    log.info("pushed %s to %s (commit %s)", folder, repo_id, commit.oid[:12])
    return str(commit)


# ---- the task mixin ------------------------------------------------------------------------------
DESCRIPTIVE_METRICS = ("dataset", "license", "recipe", "source")  # still true once the weights change


class HubMixin:
    """``save_pretrained`` / ``push_to_hub`` / ``from_pretrained`` for zoo's LightningModules.

    huggingface_hub's ``ModelHubMixin`` was considered: its two hooks (``_save_pretrained``,
    ``_from_pretrained``) are exactly what zoo replaces with its own folder layout and safe loader,
    while its ``__new__`` would record every constructor argument (optimizer settings included) as a
    second, competing ``config.json``. What remains of it is ``create_repo`` + ``upload_folder``,
    called directly in :func:`push`.
    """

    def save_pretrained(self, save_directory: str | Path, *, name: str | None = None) -> Path:
        """Write ``model.safetensors`` + ``config.json`` + ``metrics.json`` + ``README.md`` (the card).

        The numbers measured for the loaded weights travel with them only while the weights are
        unchanged (same sha256); after fine-tuning, only what still holds (dataset, license...) is kept.
        """
        from safetensors.torch import save

        from zoo.cards import model_config, write_folder
        from zoo.inspect import count_flops

        name = name or getattr(self, "weights_name", None) or self.hparams.model_name
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        metrics = dict(getattr(self, "card_metrics", None) or {})
        if metrics.get("sha256") != hashlib.sha256(save(state, metadata={"format": "pt"})).hexdigest():
            metrics = {k: metrics[k] for k in DESCRIPTIVE_METRICS if k in metrics}
        metrics["name"] = name
        metrics["params"] = sum(p.numel() for p in self.net.parameters())
        metrics["flops"] = count_flops(self.net, self.input_size)
        return write_folder(save_directory, state, model_config(self, name), metrics)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        revision: str | None = None,
        commit_message: str | None = None,
        token: str | None = None,
    ) -> str:
        """:meth:`save_pretrained` into a temporary folder, then :func:`push` it; returns the commit URL."""
        with tempfile.TemporaryDirectory(prefix="zoo-push-") as tmp:
            folder = self.save_pretrained(Path(tmp) / "model")
            return push(folder, repo_id, private=private, revision=revision, commit_message=commit_message, token=token)

    @classmethod
    def from_pretrained(cls, source: str | Path, **overrides: Any):
        """:func:`zoo.load`; a bare ``"org/repo[@revision]"`` that is not a local path means the hub."""
        from zoo.weights import load

        text = str(source)
        if _REPO_ID.fullmatch(text.partition("@")[0]) and not Path(text).exists():
            text = HF_PREFIX + text
        return load(text, **overrides)


# ---- zoo push / zoo pull -------------------------------------------------------------------------
def cmd_push(argv: Iterable[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="zoo push", description="Upload a weight folder to the Hugging Face Hub (HF_ENDPOINT, HF_TOKEN apply).")
    parser.add_argument("folder", help="a folder laid out like model_cards/<arch.tag>/")
    parser.add_argument("--repo", required=True, help="org/name of the model repo (created if needed)")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--revision", default=None, help="branch to push to (created from main if needed)")
    parser.add_argument("--message", default=None, help="commit message")
    args = parser.parse_args(list(argv))
    url = push(args.folder, args.repo, private=args.private or None, revision=args.revision, commit_message=args.message)
    _print(f"pushed {args.folder} → {url}")


def cmd_pull(argv: Iterable[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="zoo pull", description="Download weights into the caches, for offline use later.")
    parser.add_argument("sources", nargs="+", help="arch.tag, hf-hub:org/repo[@revision] or an https:// URL")
    args = parser.parse_args(list(argv))
    for source, path in zip(args.sources, prefetch(*args.sources)):
        _print(f"{source}: {path}")


def _print(text: str) -> None:
    from rich.console import Console

    Console().print(text, highlight=False, soft_wrap=True)
