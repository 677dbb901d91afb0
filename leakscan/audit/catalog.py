"""What an audit walks: a registry's repositories and tags (``/v2/_catalog`` and
``tags/list``, paginated with ``n``, ``last`` and ``Link``), or every image a docker engine
holds. Each tag resolves to its images, one per platform, through the registry source."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from leakscan.audit.referrers import UNLISTED, Listing, listing_of
from leakscan.audit.target import DAEMON as DAEMON
from leakscan.audit.target import MAX_PAGES, PAGE
from leakscan.audit.target import Target as Target
from leakscan.audit.target import parse_target as parse_target
from leakscan.audit.target import read_repos_file as read_repos_file
from leakscan.audit.target import select_repositories as select_repositories
from leakscan.errors import LeakscanError, SourceError
from leakscan.model import SourceImage
from leakscan.sources.reference import ImageReference, parse_reference
from leakscan.sources.registry import ACCEPT as MANIFEST_ACCEPT
from leakscan.sources.registry import RegistrySource, referrers_api
from leakscan.sources.registry_client import RegistryClient

# manifests and configs fetched at a time while walking
WALK_THREADS = 8


def _client(target: Target, repository: str) -> RegistryClient:
    assert target.host is not None
    return RegistryClient(ImageReference(target.host, repository, None, None), target.options)


def _paged(client: RegistryClient, path: str, key: str, what: str) -> Iterator[str]:
    """Every string of ``key`` in a paginated listing: the ``Link: <...>; rel="next"``
    header is followed (only its path and query: it never sends us to another host)."""
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        resp = client.get(path, stream=False)
        with resp:
            if resp.status_code == 404 and key == "repositories":
                raise SourceError(
                    f"{client.host} does not list its repositories (_catalog answered 404): "
                    "name them with --repo or --repos-from"
                )
            if resp.status_code != 200:
                raise SourceError(
                    f"{client.host}: {what} answered {resp.status_code} {resp.reason}"
                )
            try:
                body: Any = resp.json()
            except ValueError:
                raise SourceError(f"{client.host}: {what} is not JSON") from None
            link = resp.links.get("next", {}).get("url")
        names = body.get(key) if isinstance(body, dict) else None
        if names is None:
            names = []
        if not isinstance(names, list):
            raise SourceError(f"{client.host}: {what} has no {key} list")
        for name in names:
            if isinstance(name, str) and name not in seen:
                seen.add(name)
                yield name
        if not link:
            return
        parts = urlsplit(link)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
    raise SourceError(f"{client.host}: {what} has more than {MAX_PAGES} pages")


def root_client(target: Target) -> RegistryClient:
    """A client for the registry itself (its catalog): the one that finds the scheme and
    whose connections every repository's client shares (:meth:`RegistryClient.sibling`)."""
    return _client(target, "catalog")


def repositories(
    target: Target, page: int = PAGE, client: RegistryClient | None = None
) -> Iterator[str]:
    """Every repository ``/v2/_catalog`` lists (through ``client``, which is left open, or
    a client of its own)."""
    own = client is None
    client = client or root_client(target)
    try:
        yield from _paged(client, f"/v2/_catalog?n={page}", "repositories", "_catalog")
    except LeakscanError as exc:
        if "--repo" in str(exc):
            raise
        # many registries keep the catalog to administrators: the way round is to name them
        raise SourceError(
            f"{exc}; cannot list repositories: name them with --repo or --repos-from"
        ) from None
    finally:
        if own:
            client.close()


def tags(client: RegistryClient, page: int = PAGE) -> Iterator[str]:
    """Every tag of the client's repository."""
    path = f"/v2/{client.repository}/tags/list?n={page}"
    yield from _paged(client, path, "tags", f"tags/list of {client.repository}")


@dataclass(frozen=True)
class Tagged:
    """One platform image of a repository's tag (``tag`` None: untagged in the engine);
    ``top`` is the digest the tag names (an index or the manifest), when known."""

    repository: str
    tag: str | None
    image: SourceImage
    top: str | None = None


@dataclass(frozen=True)
class Failed:
    """A repository or tag that could not be read, and why."""

    repository: str
    tag: str | None
    reason: str


@dataclass(frozen=True)
class Unchanged:
    """A tag that names the same manifest (or index) ``digest`` as at the last audit: its
    images were not read again (the caller holds what it made of them)."""

    repository: str
    tag: str
    digest: str


Resolved = Tagged | Failed | Unchanged


def referrers_now(
    root: RegistryClient, pairs: Sequence[tuple[str, str]], threads: int = WALK_THREADS
) -> dict[tuple[str, str], Listing] | None:
    """What the referrers API (OCI distribution 1.1) lists now for each (repository,
    subject digest), ``threads`` requests at a time. None when the registry has no such
    API (the first pair is asked alone first): then referrers live in the tag schema's
    ``sha256-HEX`` tags, which the walk of the tags sees. A subject the API does not
    answer for as one that has the API does is UNLISTED."""
    if not pairs:
        return {}
    clients = {repository: root.sibling(repository) for repository, _ in pairs}

    def listed(pair: tuple[str, str]) -> Listing | None:
        repository, subject = pair
        try:
            found = referrers_api(clients[repository], repository, subject)
        except LeakscanError:
            return UNLISTED
        if found is None:
            return None
        return listing_of({"manifests": found})

    first = listed(pairs[0])
    if first is None:
        return None
    out: dict[tuple[str, str], Listing] = {pairs[0]: first}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for pair, got in zip(pairs[1:], pool.map(listed, pairs[1:]), strict=True):
            out[pair] = UNLISTED if got is None else got
    return out


class _TagSource(RegistrySource):
    """A registry source that remembers the digest its tag named."""

    top: str | None = None

    def _manifest(
        self, ref: str, expected: str | None, top: bool = False, *args: Any, **kwargs: Any
    ) -> tuple[Any, str, str]:
        doc, digest, media = super()._manifest(ref, expected, top, *args, **kwargs)
        if top:
            self.top = digest
        return doc, digest, media


def resolve_registry(
    target: Target,
    repos: Sequence[str],
    tag_filter: re.Pattern[str] | None,
    page: int = PAGE,
    on_client: Callable[[RegistryClient], None] | None = None,
    threads: int = WALK_THREADS,
    remembered: Mapping[tuple[str, str], str] | None = None,
    root: RegistryClient | None = None,
    only: Collection[tuple[str, str]] | None = None,
) -> Iterator[Resolved]:
    """Every platform image of every tag of ``repos``, in order; one repository or tag that
    fails is a :class:`Failed` and the walk goes on. Only manifests and configs are fetched
    here, ``threads`` requests at a time: each is a round trip, and a registry of a hundred
    thousand tags is mostly waiting.

    A tag that ``remembered`` (``(repository, tag)`` to digest) knows is first asked for
    its digest alone (HEAD): while it is the same, the tag is :class:`Unchanged` and its
    configs are not fetched. Every repository's client shares ``root``'s scheme and
    connections (one probe of the registry, connections kept open between repositories).
    ``only``: those (repository, tag) pairs alone."""
    assert target.host is not None
    if root is None:
        root = root_client(target)
        if on_client is not None:
            on_client(root)
    try:
        root.connect()
    except LeakscanError as exc:
        # nothing can be read: each repository says why, as it would have alone
        for repository in repos:
            yield Failed(repository, None, str(exc))
        return
    clients = {repository: root.sibling(repository) for repository in repos}
    known = remembered or {}

    def listed(repository: str) -> list[str] | Failed:
        try:
            return sorted(tags(clients[repository], page))
        except LeakscanError as exc:
            return Failed(repository, None, str(exc))

    def same(repository: str, tag: str, digest: str) -> bool:
        try:
            resp = clients[repository].head(
                f"/v2/{repository}/manifests/{tag}", {"Accept": MANIFEST_ACCEPT}
            )
        except LeakscanError:
            return False  # the GET that follows says what is wrong
        with resp:
            return resp.status_code == 200 and resp.headers.get("Docker-Content-Digest") == digest

    def resolve(pair: tuple[str, str]) -> list[Resolved]:
        repository, tag = pair
        digest = known.get(pair)
        if digest is not None and same(repository, tag, digest):
            return [Unchanged(repository, tag, digest)]
        reference = f"{target.host}/{repository}:{tag}"
        try:
            source = _TagSource(reference, parse_reference(reference), target.options)
            # one client per repository: its connections and token serve every tag
            source.client = clients[repository]
            found = list(source.images(()))
            return [Tagged(repository, tag, image, source.top) for image in found]
        except LeakscanError as exc:
            return [Failed(repository, tag, str(exc))]
        except ValueError as exc:  # a name the registry listed that is no reference
            return [Failed(repository, tag, f"{reference}: {exc}")]

    with ThreadPoolExecutor(max(1, threads)) as pool:
        pairs: list[tuple[str, str]] = []
        for repository, names in zip(repos, pool.map(listed, repos), strict=True):
            if isinstance(names, Failed):
                yield names
                continue
            pairs += [
                (repository, t)
                for t in names
                if (tag_filter is None or tag_filter.search(t))
                and (only is None or (repository, t) in only)
            ]
        for found in pool.map(resolve, pairs):
            yield from found


# --- the docker engine -----------------------------------------------------------------------


@dataclass(frozen=True)
class EngineImage:
    """An image the engine holds, with every name it has (none: untagged or intermediate)."""

    image_id: str
    names: tuple[tuple[str, str], ...]  # (repository, tag)


def engine_images() -> list[EngineImage]:
    """Every image of the engine, untagged and intermediate ones included (``docker images
    -a``): builder stages of a multi-stage build stay there, with their build arguments."""
    from leakscan.sources.daemon import _close_quietly, _connect

    client = _connect(15.0)
    try:
        listed = client.api.images(all=True)
    except Exception as exc:  # noqa: BLE001 - docker-py raises many kinds
        raise SourceError(
            f"cannot list the docker engine's images ({type(exc).__name__})"
        ) from None
    finally:
        _close_quietly(client)
    out = []
    for entry in listed or []:
        image_id = entry.get("Id") if isinstance(entry, dict) else None
        if not isinstance(image_id, str):
            continue
        names = []
        for repo_tag in entry.get("RepoTags") or []:
            if not isinstance(repo_tag, str) or repo_tag == "<none>:<none>":
                continue
            repository, _, tag = repo_tag.rpartition(":")
            if "/" in tag or not repository:  # a port, not a tag
                repository, tag = repo_tag, "latest"
            names.append((repository, tag))
        out.append(EngineImage(image_id, tuple(sorted(names))))
    return sorted(out, key=lambda e: (not e.names, e.names, e.image_id))


UNTAGGED = "<none>"
