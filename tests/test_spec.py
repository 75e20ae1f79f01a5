"""Every form a user may paste -> the exact ``build/<provider>/<spec>`` BinderHub receives.

Quoting follows BinderHub's repo providers (binderhub/repoproviders.py): gh and
gist take the ref raw (slashes included), gl quotes the whole project path with
safe='', git quotes the whole repository URL, ckan the dataset URL, and the DOI
providers take the bare DOI.
"""

from __future__ import annotations

import pytest

from binder_autorun.errors import SpecError
from binder_autorun.launch.spec import RepoSpec, parse_spec

HYDRO_ID = "8f7c2f0341ef4180b0dbe97f59130756"

# (what the user typed, --ref, expected build path, expected label)
CASES = [
    # GitHub
    ("ouseful-demos/ordo", None, "build/gh/ouseful-demos/ordo/HEAD", "ouseful-demos/ordo @ HEAD"),
    ("ouseful-demos/ordo", "main", "build/gh/ouseful-demos/ordo/main", "ouseful-demos/ordo @ main"),
    ("org/repo/feature/x", None, "build/gh/org/repo/feature/x", "org/repo @ feature/x"),
    ("org/repo.git", None, "build/gh/org/repo/HEAD", "org/repo @ HEAD"),
    ("https://github.com/org/repo", None, "build/gh/org/repo/HEAD", "org/repo @ HEAD"),
    ("https://github.com/org/repo.git", None, "build/gh/org/repo/HEAD", "org/repo @ HEAD"),
    ("https://github.com/org/repo/", None, "build/gh/org/repo/HEAD", "org/repo @ HEAD"),
    ("http://www.github.com/org/repo", None, "build/gh/org/repo/HEAD", "org/repo @ HEAD"),
    ("github.com/org/repo", None, "build/gh/org/repo/HEAD", "org/repo @ HEAD"),
    ("https://github.com/org/repo/tree/some/branch", None, "build/gh/org/repo/some/branch", "org/repo @ some/branch"),
    ("https://github.com/org/repo/tree/some/branch", "v2", "build/gh/org/repo/v2", "org/repo @ v2"),
    ("https://github.com/org/repo/commit/" + "a" * 40, None, "build/gh/org/repo/" + "a" * 40, "org/repo @ " + "a" * 40),
    ("https://github.com/org/repo/tree/release%2F1.0", None, "build/gh/org/repo/release/1.0", "org/repo @ release/1.0"),
    ("org/repo", "my branch#1", "build/gh/org/repo/my%20branch%231", "org/repo @ my branch#1"),
    ("git@github.com:org/repo.git", None, "build/gh/org/repo/HEAD", "org/repo @ HEAD"),
    ("gh:org/repo", None, "build/gh/org/repo/HEAD", "org/repo @ HEAD"),
    ("gh:org/repo/feature/x", None, "build/gh/org/repo/feature/x", "org/repo @ feature/x"),
    ("gh:org/repo/feature/x", "main", "build/gh/org/repo/main", "org/repo @ main"),
    # GitLab: the whole project path quoted with safe=''
    ("https://gitlab.com/group/sub/repo", None, "build/gl/group%2Fsub%2Frepo/HEAD", "gitlab.com/group/sub/repo @ HEAD"),
    ("https://gitlab.com/group/sub/repo", "v1.2", "build/gl/group%2Fsub%2Frepo/v1.2", "gitlab.com/group/sub/repo @ v1.2"),
    ("https://gitlab.com/group/repo.git", None, "build/gl/group%2Frepo/HEAD", "gitlab.com/group/repo @ HEAD"),
    ("https://gitlab.com/group/sub/repo/-/tree/feat/x", None, "build/gl/group%2Fsub%2Frepo/feat/x", "gitlab.com/group/sub/repo @ feat/x"),
    ("gitlab.com/group/repo", None, "build/gl/group%2Frepo/HEAD", "gitlab.com/group/repo @ HEAD"),
    ("git@gitlab.com:group/repo.git", None, "build/gl/group%2Frepo/HEAD", "gitlab.com/group/repo @ HEAD"),
    ("gl:group%2Fsub%2Frepo/main", None, "build/gl/group%2Fsub%2Frepo/main", "gitlab.com/group/sub/repo @ main"),
    ("gl:group/sub/repo", "main", "build/gl/group%2Fsub%2Frepo/main", "gitlab.com/group/sub/repo @ main"),
    # gists
    ("https://gist.github.com/user/abc123", None, "build/gist/user/abc123/HEAD", "gist user/abc123 @ HEAD"),
    ("https://gist.github.com/user/abc123/" + "b" * 40, None, "build/gist/user/abc123/" + "b" * 40, "gist user/abc123 @ " + "b" * 40),
    ("gist:user/abc123", None, "build/gist/user/abc123/HEAD", "gist user/abc123 @ HEAD"),
    # any git host: the repository URL quoted with safe=''
    ("https://example.org/any/repo.git", "main", "build/git/https%3A%2F%2Fexample.org%2Fany%2Frepo.git/main", "https://example.org/any/repo.git @ main"),
    ("https://example.org/any/repo.git", None, "build/git/https%3A%2F%2Fexample.org%2Fany%2Frepo.git/HEAD", "https://example.org/any/repo.git @ HEAD"),
    ("https://example.org/any/repo.git", "feature/x", "build/git/https%3A%2F%2Fexample.org%2Fany%2Frepo.git/feature/x", "https://example.org/any/repo.git @ feature/x"),
    ("https://git.example.org/group/repo/-/tree/dev", None, "build/git/https%3A%2F%2Fgit.example.org%2Fgroup%2Frepo/dev", "https://git.example.org/group/repo @ dev"),
    ("git@example.org:org/repo.git", None, "build/git/git%40example.org%3Aorg%2Frepo.git/HEAD", "git@example.org:org/repo.git @ HEAD"),
    ("ssh://git@example.org/org/repo.git", "v1", "build/git/ssh%3A%2F%2Fgit%40example.org%2Forg%2Frepo.git/v1", "ssh://example.org/org/repo.git @ v1"),
    ("git:https://example.org/repo.git", None, "build/git/https%3A%2F%2Fexample.org%2Frepo.git/HEAD", "https://example.org/repo.git @ HEAD"),
    ("git:https%3A%2F%2Fexample.org%2Frepo.git/main", None, "build/git/https%3A%2F%2Fexample.org%2Frepo.git/main", "https://example.org/repo.git @ main"),
    # DOIs and archives: the bare DOI (or id / quoted URL), no ref
    ("doi:10.5281/zenodo.3242074", None, "build/zenodo/10.5281/zenodo.3242074", "doi:10.5281/zenodo.3242074"),
    ("10.5281/zenodo.3242074", None, "build/zenodo/10.5281/zenodo.3242074", "doi:10.5281/zenodo.3242074"),
    ("https://doi.org/10.5281/zenodo.3242074", None, "build/zenodo/10.5281/zenodo.3242074", "doi:10.5281/zenodo.3242074"),
    ("https://zenodo.org/records/3242074", None, "build/zenodo/10.5281/zenodo.3242074", "doi:10.5281/zenodo.3242074"),
    ("https://zenodo.org/record/3242074", None, "build/zenodo/10.5281/zenodo.3242074", "doi:10.5281/zenodo.3242074"),
    ("zenodo:10.5281/zenodo.3242074", None, "build/zenodo/10.5281/zenodo.3242074", "doi:10.5281/zenodo.3242074"),
    ("doi:10.6084/m9.figshare.9782777.v1", None, "build/figshare/10.6084/m9.figshare.9782777.v1", "doi:10.6084/m9.figshare.9782777.v1"),
    ("https://dx.doi.org/10.6084/m9.figshare.9782777", None, "build/figshare/10.6084/m9.figshare.9782777", "doi:10.6084/m9.figshare.9782777"),
    ("https://figshare.com/articles/dataset/some_title/9782777/1", None, "build/figshare/10.6084/m9.figshare.9782777.v1", "doi:10.6084/m9.figshare.9782777.v1"),
    ("https://figshare.com/articles/9782777", None, "build/figshare/10.6084/m9.figshare.9782777", "doi:10.6084/m9.figshare.9782777"),
    ("doi:10.7910/DVN/TJCLKP", None, "build/dataverse/10.7910/DVN/TJCLKP", "doi:10.7910/DVN/TJCLKP"),
    ("https://dataverse.harvard.edu/dataset.xhtml?persistentId=doi:10.7910/DVN/TJCLKP", None, "build/dataverse/10.7910/DVN/TJCLKP", "doi:10.7910/DVN/TJCLKP"),
    ("https://borealisdata.ca/dataset.xhtml?persistentId=doi:10.5683/SP2/KJRMNZ", None, "build/dataverse/10.5683/SP2/KJRMNZ", "doi:10.5683/SP2/KJRMNZ"),
    ("dataverse:10.18710/ABCDEF", None, "build/dataverse/10.18710/ABCDEF", "doi:10.18710/ABCDEF"),
    (f"https://www.hydroshare.org/resource/{HYDRO_ID}/", None, f"build/hydroshare/{HYDRO_ID}", f"https://www.hydroshare.org/resource/{HYDRO_ID}/"),
    (f"doi:10.4211/hs.{HYDRO_ID}", None, f"build/hydroshare/{HYDRO_ID}", f"https://www.hydroshare.org/resource/{HYDRO_ID}/"),
    (f"hydroshare:{HYDRO_ID}", None, f"build/hydroshare/{HYDRO_ID}", f"https://www.hydroshare.org/resource/{HYDRO_ID}/"),
    ("https://demo.ckan.org/dataset/sample-001", None, "build/ckan/https%3A%2F%2Fdemo.ckan.org%2Fdataset%2Fsample-001", "https://demo.ckan.org/dataset/sample-001"),
    ("ckan:https%3A%2F%2Fdemo.ckan.org%2Fdataset%2Fsample-001", None, "build/ckan/https%3A%2F%2Fdemo.ckan.org%2Fdataset%2Fsample-001", "https://demo.ckan.org/dataset/sample-001"),
]


@pytest.mark.parametrize(("text", "ref", "path", "label"), CASES, ids=[f"{c[0]}|{c[1]}" for c in CASES])
def test_spec_forms(text: str, ref: str | None, path: str, label: str) -> None:
    spec = parse_spec(text, ref)
    assert (spec.build_path, spec.label, spec.hub) == (path, label, None)


# Binder launch links: the hub (with its base path) and the spec come from the link
LINKS = [
    ("https://mybinder.org/v2/gh/org/repo/HEAD?labpath=x.ipynb", None, "https://mybinder.org/", "build/gh/org/repo/HEAD"),
    ("https://mybinder.org/v2/gh/org/repo/HEAD?labpath=x.ipynb", "dev", "https://mybinder.org/", "build/gh/org/repo/dev"),
    ("https://mybinder.org/v2/gh/org/repo/some/branch?urlpath=lab", None, "https://mybinder.org/", "build/gh/org/repo/some/branch"),
    ("https://mybinder.org/v2/gh/org/repo", None, "https://mybinder.org/", "build/gh/org/repo/HEAD"),
    ("https://hub.example.org/binder/v2/gl/group%2Fsub%2Frepo/main", None, "https://hub.example.org/binder/", "build/gl/group%2Fsub%2Frepo/main"),
    ("https://mybinder.org/v2/git/https%3A%2F%2Fexample.org%2Frepo.git/main", None, "https://mybinder.org/", "build/git/https%3A%2F%2Fexample.org%2Frepo.git/main"),
    ("https://mybinder.org/v2/zenodo/10.5281/zenodo.3242074/", None, "https://mybinder.org/", "build/zenodo/10.5281/zenodo.3242074"),
    ("https://mybinder.org/v2/gist/user/abc123/HEAD", None, "https://mybinder.org/", "build/gist/user/abc123/HEAD"),
    (f"https://mybinder.org/v2/hydroshare/{HYDRO_ID}/", None, "https://mybinder.org/", f"build/hydroshare/{HYDRO_ID}"),
    ("http://127.0.0.1:8585/v2/custom/some/spec", None, "http://127.0.0.1:8585/", "build/custom/some/spec"),
]


@pytest.mark.parametrize(("link", "ref", "hub", "path"), LINKS, ids=[f"{c[0]}|{c[1]}" for c in LINKS])
def test_launch_links(link: str, ref: str | None, hub: str, path: str) -> None:
    spec = parse_spec(link, ref)
    assert (spec.hub, spec.build_path) == (hub, path)


def test_repo_spec_is_plain_data() -> None:
    spec = parse_spec("org/repo")
    assert spec == RepoSpec("gh", "org/repo/HEAD", "org/repo", "HEAD")
    assert spec.ref == "HEAD"  # never master


ACCEPTED = "give owner/repo (GitHub)"
BAD = [
    ("", ACCEPTED),
    ("   ", ACCEPTED),
    ("just-a-word", ACCEPTED),
    ("what ever", ACCEPTED),
    ("https://github.com/org", ACCEPTED),
    ("https://github.com/org/repo/blob/main/x.ipynb", ACCEPTED),
    ("https://gitlab.com/onlyone", ACCEPTED),
    ("https://example.org/", ACCEPTED),
    ("ftp://example.org/repo.git", ACCEPTED),
    ("https://mybinder.org/v2/gh/", ACCEPTED),
    ("C:\\Users\\me\\repo", ACCEPTED),
    ("doi:10.1234/unknown-archive", "Cannot tell which archive holds DOI 10.1234/unknown-archive"),
    ("doi:10.5281/zenodo.3242074|main", "Zenodo records have no git ref"),
    ("https://demo.ckan.org/dataset/x|v1", "CKAN records have no git ref"),
    ("hydroshare:not-an-id", "32-character resource id"),
    ("zenodo:zenodo.3242074", "Zenodo specs are DOIs"),
    ("https://gist.github.com/user/abc123|a/b", "A gist ref is one revision id"),
    ("https://mybinder.org/v2/custom/x|main", "Cannot apply a ref"),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[c[0] or "empty" for c in BAD])
def test_bad_specs_are_one_sentence(text: str, expected: str) -> None:
    text, _, ref = text.partition("|")
    with pytest.raises(SpecError) as caught:
        parse_spec(text, ref or None)
    message = str(caught.value)
    assert expected in message
    assert message.endswith(".") and message.count(". ") == 0 and "\n" not in message


def test_unrecognised_lists_the_accepted_forms() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec("nope")
    message = str(caught.value)
    for form in ("owner/repo", "GitLab", "gist", "git URL", "DOI", "Zenodo", "Figshare", "Dataverse", "HydroShare", "CKAN", "gh:owner/repo/ref", "/v2/gh/"):
        assert form in message


def test_secrets_in_the_input_are_not_echoed() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec("http://localhost:8888/?token=s3cret")
    assert "s3cret" not in str(caught.value)
    spec = parse_spec("https://user:s3cret@example.org/repo.git")
    assert "s3cret" not in spec.label  # the hub still gets the URL the user gave
    assert spec.build_path == "build/git/https%3A%2F%2Fuser%3As3cret%40example.org%2Frepo.git/HEAD"
