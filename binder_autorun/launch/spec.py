"""What the user pastes -> the ``{provider}/{spec}`` path of BinderHub's build API.

BinderHub reads the spec from the raw request path, and each of its repo
providers quotes differently: ``gh`` and ``gist`` take the ref as is (it may
contain ``/``), ``gl`` wants the whole project path quoted with ``safe=''``,
``git`` the whole repository URL, ``ckan`` the dataset URL, and the DOI
providers the bare DOI. Everything here is pure: a spec we cannot understand
fails with one sentence before any network call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

from ..errors import SpecError

DEFAULT_REF = "HEAD"  # BinderHub resolves it to the default branch; never assume master

#: BinderHub's own repo providers (binderhub.app.BinderHub.repo_providers)
PROVIDERS = ("gh", "gist", "git", "gl", "zenodo", "figshare", "hydroshare", "dataverse", "ckan")
_DOI_PROVIDERS = {"zenodo": "Zenodo", "figshare": "Figshare", "dataverse": "Dataverse"}
_NO_REF = {**_DOI_PROVIDERS, "hydroshare": "HydroShare", "ckan": "CKAN"}

_ACCEPTED = (
    "give owner/repo (GitHub), a GitHub, GitLab, gist or other git URL (with --ref if needed), "
    "a DOI or a Zenodo, Figshare, Dataverse, HydroShare or CKAN URL, a prefixed spec like "
    "gh:owner/repo/ref, or a Binder link like https://mybinder.org/v2/gh/owner/repo/HEAD"
)

_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_REPO = re.compile(r"[A-Za-z0-9._-]+")
_SHORT = re.compile(r"(?P<owner>[^/\s]+)/(?P<repo>[^/\s]+)(?:/(?P<ref>.+))?")
_DOI = re.compile(r"(?:doi:|https?://(?:dx\.)?doi\.org/)?(?P<doi>10\.\d{4,9}/\S+)", re.IGNORECASE)
_PREFIXED = re.compile(r"(?P<provider>[a-z]+):(?!//)(?P<rest>.+)")
_GIT_SSH = re.compile(r"[\w.-]+@[\w.-]+:.+")  # git@host:path, as BinderHub's git provider accepts
_HYDROSHARE_ID = re.compile(r"[0-9a-f]{32}")
_BARE_HOST = re.compile(r"(?:www\.)?(?:github\.com|gitlab\.com|gist\.github\.com)/", re.IGNORECASE)
_CODE_HOSTS = {"github.com", "gist.github.com", "gitlab.com"}


@dataclass(frozen=True)
class RepoSpec:
    """A repository as BinderHub's build API names it, plus what to call it for humans.

    ``spec`` is already quoted for ``GET {hub}/build/{provider}/{spec}``; ``hub``
    is set when the input was a Binder launch link, which names its hub.
    """

    provider: str
    spec: str
    repo: str
    ref: str | None = None
    hub: str | None = None

    @property
    def build_path(self) -> str:
        """The path below the hub's URL: ``build/{provider}/{spec}``."""
        return f"build/{self.provider}/{self.spec}"

    @property
    def label(self) -> str:
        """``owner/repo @ ref`` (or just the record) for progress lines and messages."""
        return f"{self.repo} @ {self.ref}" if self.ref else self.repo


def parse_spec(text: str, ref: str | None = None) -> RepoSpec:
    """Understand any form a user may paste; ``ref`` (e.g. ``--ref``) overrides the input's ref."""
    text = text.strip()
    if _BARE_HOST.match(text):
        text = "https://" + text
    ref = ref.strip() if ref else None
    for parser in (_from_link, _from_doi, _from_prefixed, _from_url, _from_short):
        spec = parser(text, ref or None)
        if spec is not None:
            return spec
    raise _unrecognised(text)


def _from_link(text: str, ref: str | None) -> RepoSpec | None:
    """``https://<hub>/v2/<provider>/<spec>?labpath=...``: hub and spec from the link."""
    parts = urlsplit(text)
    index = parts.path.find("/v2/")
    if parts.scheme not in ("http", "https") or index < 0 or (parts.hostname or "") in _CODE_HOSTS:
        return None
    hub = urlunsplit((parts.scheme, parts.netloc, parts.path[: index + 1], "", ""))
    provider, _, raw = parts.path[index + 4 :].partition("/")
    raw = raw.rstrip("/")
    if not provider or not raw:
        raise _unrecognised(text)
    if provider in PROVIDERS:
        spec = _from_provider(provider, raw, ref, text)
    elif ref:
        raise SpecError(f"Cannot apply a ref to the {provider!r} spec of that Binder link; drop --ref or put the ref in the link.")
    else:  # a hub's own provider: the hub knows how to read its spec
        spec = RepoSpec(provider, raw, unquote(raw))
    return RepoSpec(spec.provider, spec.spec, spec.repo, spec.ref, hub)


def _from_doi(text: str, ref: str | None) -> RepoSpec | None:
    match = _DOI.fullmatch(text)
    return _doi(unquote(match["doi"]), ref) if match else None


def _from_prefixed(text: str, ref: str | None) -> RepoSpec | None:
    """``gh:owner/repo/ref``, ``gl:group%2Frepo/ref``, ``zenodo:10.5281/zenodo.1``..."""
    match = _PREFIXED.fullmatch(text)
    if not match or match["provider"] not in PROVIDERS:
        return None
    return _from_provider(match["provider"], match["rest"], ref, text)


def _from_provider(provider: str, rest: str, ref: str | None, text: str) -> RepoSpec:
    """Read a spec in BinderHub's form for ``provider`` (or a friendlier unquoted one)."""
    if provider == "gh":
        owner, _, tail = rest.partition("/")
        repo, _, given = tail.partition("/")
        return _github(owner, repo, ref or unquote(given), text)
    if provider == "gist":
        user, _, tail = rest.partition("/")
        gist_id, _, given = tail.partition("/")
        return _gist(user, gist_id, ref or unquote(given), text)
    if provider == "gl":
        first, _, given = rest.partition("/")
        if "%2f" in first.lower():  # BinderHub's form: <quoted project path>/<ref>
            return _gitlab(unquote(first), ref or unquote(given), text)
        return _gitlab(unquote(rest).strip("/"), ref, text)  # gl:group/sub/repo
    if provider == "git":
        if "://" in rest or _GIT_SSH.fullmatch(rest):  # git:https://host/repo.git
            return _git(rest, ref, text)
        first, _, given = rest.partition("/")
        return _git(unquote(first), ref or unquote(given), text)
    _refuse_ref(provider, ref)
    if provider == "hydroshare":
        return _hydroshare(unquote(rest), text)
    if provider == "ckan":
        return _ckan(unquote(rest))
    doi = unquote(rest)
    if not _DOI.fullmatch(doi) or doi.lower().startswith(("doi:", "http")):
        raise SpecError(f"{_DOI_PROVIDERS[provider]} specs are DOIs like 10.5281/zenodo.3242074, not {_shown(rest)!r}.")
    return RepoSpec(provider, quote(doi, safe="/"), f"doi:{doi}")


def _from_url(text: str, ref: str | None) -> RepoSpec | None:
    if _GIT_SSH.fullmatch(text) and "://" not in text:
        host, _, path = text.partition("@")[2].partition(":")
        if host in _CODE_HOSTS:  # git@github.com:org/repo.git -> gh, which needs no ssh key
            return _from_url(f"https://{host}/{path}", ref)
        return _git(text, ref, text)
    parts = urlsplit(text)
    if parts.scheme in ("ssh", "git"):
        return _git(text, ref, text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower().removeprefix("www.")
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if host == "github.com":
        if len(segments) < 2:
            raise _unrecognised(text)
        return _github(segments[0], segments[1], ref or _tree_ref(segments[2:], text), text)
    if host == "gist.github.com":
        if len(segments) not in (2, 3):
            raise _unrecognised(text)
        return _gist(segments[0], segments[1], ref or (segments[2] if len(segments) == 3 else None), text)
    if host == "gitlab.com":
        project, given = _split_gitlab(segments, text)
        return _gitlab("/".join(project), ref or given, text)
    if host == "zenodo.org" and len(segments) == 2 and segments[0] in ("record", "records") and segments[1].isdigit():
        return _doi(f"10.5281/zenodo.{segments[1]}", ref)
    if host == "figshare.com" and segments[:1] == ["articles"]:
        return _doi(_figshare_doi(segments, text), ref)
    if host.endswith("hydroshare.org"):
        _refuse_ref("hydroshare", ref)
        return _hydroshare(parts.path, text)
    persistent = parse_qs(parts.query).get("persistentId", [""])[0]
    if persistent.lower().startswith("doi:"):  # a Dataverse installation: dataset.xhtml?persistentId=doi:...
        _refuse_ref("dataverse", ref)
        return RepoSpec("dataverse", quote(persistent[4:], safe="/"), persistent)
    if "dataset" in segments:
        _refuse_ref("ckan", ref)
        return _ckan(urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, "")))
    if not segments:
        raise _unrecognised(text)
    if "-" in segments:  # a self-hosted GitLab: .../group/repo/-/tree/<ref>
        project, given = _split_gitlab(segments, text)
        base = urlunsplit((parts.scheme, parts.netloc, "/" + "/".join(project), "", ""))
        return _git(base, ref or given, text)
    return _git(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), ref, text)


def _from_short(text: str, ref: str | None) -> RepoSpec | None:
    """``owner/repo`` (and BinderHub's ``owner/repo/ref``) on GitHub."""
    match = _SHORT.fullmatch(text)
    if not match or not _OWNER.fullmatch(match["owner"]) or not _REPO.fullmatch(match["repo"]):
        return None
    return _github(match["owner"], match["repo"], ref or match["ref"], text)


def _github(owner: str, repo: str, ref: str | None, text: str) -> RepoSpec:
    repo = repo.removesuffix(".git")
    if not _OWNER.fullmatch(owner) or not _REPO.fullmatch(repo):
        raise _unrecognised(text)
    ref = ref or DEFAULT_REF
    return RepoSpec("gh", f"{owner}/{repo}/{_quote_ref(ref)}", f"{owner}/{repo}", ref)


def _gist(user: str, gist_id: str, ref: str | None, text: str) -> RepoSpec:
    if not _OWNER.fullmatch(user) or not re.fullmatch(r"[0-9A-Za-z]+", gist_id):
        raise _unrecognised(text)
    ref = ref or DEFAULT_REF
    if "/" in ref:
        raise SpecError(f"A gist ref is one revision id (or HEAD), not {ref!r}.")
    return RepoSpec("gist", f"{user}/{gist_id}/{_quote_ref(ref)}", f"gist {user}/{gist_id}", ref)


def _gitlab(project: str, ref: str | None, text: str) -> RepoSpec:
    project = project.strip("/").removesuffix(".git")
    if project.count("/") < 1 or "//" in project:
        raise _unrecognised(text)
    ref = ref or DEFAULT_REF
    return RepoSpec("gl", f"{quote(project, safe='')}/{_quote_ref(ref)}", f"gitlab.com/{project}", ref)


def _git(url: str, ref: str | None, text: str) -> RepoSpec:
    parts = urlsplit(url)
    if not _GIT_SSH.fullmatch(url) and (parts.scheme not in ("http", "https", "git", "ssh") or not parts.hostname):
        raise _unrecognised(text)
    ref = ref or DEFAULT_REF
    shown = url if _GIT_SSH.fullmatch(url) else _shown(url)  # no user:password@ in labels
    return RepoSpec("git", f"{quote(url, safe='')}/{_quote_ref(ref)}", shown, ref)


def _doi(doi: str, ref: str | None) -> RepoSpec:
    """Pick the provider a DOI belongs to from its registrant and suffix (no network)."""
    prefix, _, suffix = doi.partition("/")
    lowered = suffix.lower()
    if prefix == "10.4211" and _HYDROSHARE_ID.search(lowered):
        provider = "hydroshare"
    elif prefix == "10.5281" or lowered.startswith("zenodo."):
        provider = "zenodo"
    elif "figshare" in lowered:
        provider = "figshare"
    elif prefix == "10.7910" or lowered.startswith("dvn/"):
        provider = "dataverse"
    else:
        raise SpecError(
            f"Cannot tell which archive holds DOI {doi}; prefix it with its provider, "
            f"like zenodo:{doi}, figshare:{doi} or dataverse:{doi}."
        )
    _refuse_ref(provider, ref)
    if provider == "hydroshare":
        return _hydroshare(lowered, doi)
    return RepoSpec(provider, quote(doi, safe="/"), f"doi:{doi}")


def _hydroshare(text: str, original: str) -> RepoSpec:
    match = _HYDROSHARE_ID.search(text.lower())
    if not match:
        raise SpecError(f"A HydroShare spec needs the 32-character resource id, which {_shown(original)!r} does not contain.")
    return RepoSpec("hydroshare", match[0], f"https://www.hydroshare.org/resource/{match[0]}/")


def _ckan(url: str) -> RepoSpec:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "/dataset/" not in parts.path:
        raise SpecError(f"A CKAN spec is a dataset URL like https://demo.ckan.org/dataset/name, not {_shown(url)!r}.")
    return RepoSpec("ckan", quote(url, safe=""), _shown(url))


def _tree_ref(rest: list[str], text: str) -> str | None:
    """The ref of ``.../tree/<ref with slashes>`` or ``.../commit/<sha>`` (GitHub, GitLab)."""
    if not rest:
        return None
    if rest[0] == "tree" and len(rest) > 1:
        return "/".join(rest[1:])
    if rest[0] == "commit" and len(rest) == 2:
        return rest[1]
    raise _unrecognised(text)


def _split_gitlab(segments: list[str], text: str) -> tuple[list[str], str | None]:
    """GitLab URLs put ``/-/`` between the project path and ``tree/<ref>``."""
    if "-" not in segments:
        return segments, None
    index = segments.index("-")
    return segments[:index], _tree_ref(segments[index + 1 :], text)


def _figshare_doi(segments: list[str], text: str) -> str:
    """figshare.com/articles/[<type>/<title>/]<id>[/<version>] -> 10.6084/m9.figshare.<id>[.v<version>]."""
    rest = segments[1:]
    numbers = rest if len(rest) <= 2 else rest[2:]
    if not 1 <= len(numbers) <= 2 or not all(n.isdigit() for n in numbers):
        raise _unrecognised(text)
    return "10.6084/m9.figshare." + ".v".join(numbers)


def _refuse_ref(provider: str, ref: str | None) -> None:
    if ref and provider in _NO_REF:
        raise SpecError(f"{_NO_REF[provider]} records have no git ref; drop --ref {ref!r}.")


def _quote_ref(ref: str) -> str:
    """Quote a ref for the path; its ``/`` stay, as BinderHub splits the spec itself."""
    return quote(ref, safe="/")


def _shown(text: str) -> str:
    """The input without query, fragment or user:password@ (they may hold secrets)."""
    parts = urlsplit(text)
    if not parts.scheme or not parts.netloc:
        return text[:200]
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))[:200]


def _unrecognised(text: str) -> SpecError:
    return SpecError(f"Cannot launch {_shown(text)!r} on a Binder; {_ACCEPTED}.")
