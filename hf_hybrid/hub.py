"""Everything that talks to the Hugging Face Hub: checking the login, pushing a model folder, and telling why a
model could not be loaded from it.

Loading itself is `from_pretrained(repo_id, trust_remote_code=True)`; `model_loading` around it refuses a folder
that is not there before the Hub is asked, and names the cause of a failed download (offline, no connection, no
such repo, revision or file). Every failure becomes a `HubError` whose message fits on one line and says what to do.
"""

import fnmatch
import logging
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, constants, is_offline_mode
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    LocalTokenNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from .errors import HubError, UserError
from .model import CODE_FILES
from .plot_files import PLOT_FILES

logger = logging.getLogger(__name__)

# What a model repo receives: the files hf-hybrid writes into a model folder (training, `save_pretrained`,
# `hf-hybrid export`), by name, and nothing else: not checkpoints, pickles, dotfiles or a user's own files.
PUSHED_FILES = [
    "config.json",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    *CODE_FILES,
    "README.md",
    "eval_results.json",
    "classification_report.txt",
    "training_args.json",
    "train_results.json",
    "test_results.json",
    "all_results.json",
    "trainer_state.json",
    *PLOT_FILES,
    "model.onnx",
    "model_int8.onnx",
]


def check_hub_access(repo_id: str | None, token: str | None = None, endpoint: str | None = None) -> str:
    """Fails fast, before any training, when a push could not succeed: returns the user name.

    Raises `HubError` when the repo id is malformed, no token is found, the token is refused, or the
    Hub cannot be reached or is unavailable. `endpoint` defaults to `HF_ENDPOINT` (the public Hub).
    """
    if repo_id is not None:
        _validate(repo_id)
    api = HfApi(token=token, endpoint=endpoint)
    try:
        return api.whoami()["name"]
    except LocalTokenNotFoundError as error:
        raise HubError("not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN") from error
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status == 401:
            raise HubError("the Hub refused the token: run `hf auth login` again or set a valid HF_TOKEN") from error
        if status is not None and status >= 500:
            raise HubError(
                f"the Hub at {api.endpoint} is unavailable right now (HTTP {status}): try again later"
            ) from error
        raise HubError(f"the Hub at {api.endpoint} answered with an error: {_first_line(error)}") from error
    except Exception as error:  # the HTTP client's connection errors: refused, timed out, DNS, TLS
        raise HubError(f"cannot reach the Hub at {api.endpoint}: {_first_line(error)}") from error


def push_model_folder(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> str:
    """Uploads a trained model folder to `repo_id` (created if needed), on branch `revision` if given.

    Only the files hf-hybrid writes go up (`PUSHED_FILES`); the log lists what else the folder holds. The card
    goes up as it is when it was written for `repo_id`; for any other repo, the push sends a card written whole
    for that repo from the folder's facts (`ModelCardFacts`). Returns the URL of the commit. The folder is never
    modified, so a failed push can simply be run again.

    Example (`hf-hybrid push`):

    ```python
    >>> from hf_hybrid import push_model_folder
    >>> push_model_folder("out", "your-name/arxiv-hybrid", private=True)  # doctest: +SKIP
    'https://huggingface.co/your-name/arxiv-hybrid/commit/...'
    ```
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise HubError(f"{folder} is not a saved model folder (config.json and model.safetensors are missing)")
    _validate(repo_id)
    command = ["hf-hybrid", "push", "--model", str(folder), "--repo_id", repo_id]
    command += ["--revision", revision] if revision else []
    command += ["--private"] if private else []
    rerun = f"the folder is intact: run `{shlex.join(command)}` again"
    try:
        check_hub_access(None, token, endpoint)
    except HubError as error:
        raise HubError(f"{error}; {rerun}") from error
    api = HfApi(token=token, endpoint=endpoint)
    try:
        # A bare name goes to the user's namespace: the commit must name the full id.
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.create_commit(
            repo_id,
            _operations(folder, repo_id),
            commit_message=commit_message or "Upload hf-hybrid model",
            revision=revision,
        )
    except Exception as error:  # HTTP refusals and connection failures alike: the advice is the same
        raise HubError(f"pushing {folder} to {repo_id} failed ({_first_line(error)}); {rerun}") from error
    return commit.commit_url


def pinned_commit(repo_id: str, revision: str | None = None, token: str | None = None) -> str:
    """The commit sha that `revision` (a branch, tag or commit; default: main) of the model `repo_id` is at."""
    _validate(repo_id)
    try:
        return HfApi(token=token).model_info(repo_id, revision=revision).sha
    except Exception as error:  # not found, refused or unreachable: the message says which
        at = f" at {revision}" if revision else ""
        failure = hub_failure(repo_id, revision, error)
        raise failure or HubError(f"cannot find {repo_id}{at} on the Hub: {_first_line(error)}") from error


def is_local_model(model: str) -> bool:
    """Whether `model` is a local folder (False: a Hub repo id); refuses a model that can only name a folder when
    there is none, before anything asks the Hub.

    A model on the Hub is named `owner/name`, so a bare name or a path (`./x`, `/x`, `~/x`, `a/b/c`) that is not a
    folder here is a typo or a folder somewhere else: the error says where it looked.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return True
    if path.exists():
        raise UserError(f"{model} is a file, not a model folder or a Hub repo id")
    if "/" not in model or not _is_repo_id(model):
        raise UserError(f"no model folder {model}: {path.resolve()} does not exist (a Hub model is named owner/name)")
    return False


@contextmanager
def model_loading(model: str, revision: str | None = None) -> Iterator[None]:
    """Around loading `model` (a folder or a Hub repo id): refuses a folder that is not there before the Hub is
    asked (`is_local_model`), and turns a failed download into a `HubError` that names its cause."""
    if is_local_model(model):
        yield  # a folder's own errors (a missing or damaged file) already name it
        return
    try:
        yield
    except Exception as error:
        failure = hub_failure(model, revision, error, cached=True)
        if failure is None:
            raise
        raise failure from error


def hub_failure(repo_id: str, revision: str | None, error: BaseException, cached: bool = False) -> HubError | None:
    """The cause of a failed request for `repo_id` as one line: offline mode, no connection, a Hub that is down or
    refuses, no such repo, revision or file; None if `error` did not come from the Hub. `cached`: the request was a
    download, which the local cache could have answered."""
    causes = _causes(error)

    def cause(kind):
        return next((item for item in causes if isinstance(item, kind)), None)

    at = f" at revision {revision!r}" if revision else ""
    endpoint = constants.ENDPOINT
    no_folder = f"; there is no folder {Path(repo_id).resolve()} here either" if cached else ""
    if cause(OfflineModeIsEnabled) or (is_offline_mode() and cause(LocalEntryNotFoundError)):
        if cached:
            return HubError(
                f"offline (HF_HUB_OFFLINE is set) and {repo_id}{at} is not in the local Hub cache{no_folder}"
            )
        return HubError(f"offline (HF_HUB_OFFLINE is set): the Hub cannot be asked about {repo_id}{at}; unset it")
    if cause(GatedRepoError):
        return HubError(f"{repo_id} is a gated repo: ask for access on its Hub page, then log in (`hf auth login`)")
    if cause(RepositoryNotFoundError):
        return HubError(
            f"no model repo {repo_id} on the Hub at {endpoint} (a private one needs `hf auth login` or HF_TOKEN)"
            f"{no_folder}"
        )
    if cause(RevisionNotFoundError):
        return HubError(f"the Hub repo {repo_id} has no revision {revision!r}")
    response = getattr(cause(HfHubHTTPError), "response", None)
    if response is not None and response.status_code >= 500:
        status = response.status_code
        return HubError(f"the Hub at {endpoint} is unavailable right now (HTTP {status}): try again later")
    missing_file = cause(EntryNotFoundError)
    if missing_file is not None and not isinstance(missing_file, LocalEntryNotFoundError):
        return HubError(f"the Hub repo {repo_id}{at} is not a saved model: {_first_line(missing_file)}")
    if cause(LocalEntryNotFoundError) or cause(ConnectionError) or _is_transport_error(causes[-1]):
        return HubError(f"cannot reach the Hub at {endpoint} for {repo_id} ({_first_line(causes[-1])}){no_folder}")
    return None


def _causes(error: BaseException) -> list[BaseException]:
    """`error` and the exceptions it was raised from, outermost first."""
    chain = [error]
    while (error := error.__cause__ or error.__context__) is not None and error not in chain:
        chain.append(error)
    return chain


def _is_transport_error(error: BaseException) -> bool:
    """An error of the HTTP client under `huggingface_hub` (refused, timed out, DNS, TLS), whatever its version."""
    return type(error).__module__.split(".")[0].rstrip("0123456789") in ("httpx", "httpcore", "requests", "urllib3")


def repo_files(repo_id: str, revision: str, token: str | None = None) -> list[str]:
    """The files of the model repo `repo_id` at `revision`."""
    _validate(repo_id)
    try:
        return HfApi(token=token).list_repo_files(repo_id, revision=revision)
    except Exception as error:  # not found, refused or unreachable: the message says which
        raise HubError(f"cannot list the files of {repo_id} at {revision}: {_first_line(error)}") from error


def pushed_files(folder: str | Path) -> list[str]:
    """The names of the files of `folder` that `push_model_folder` uploads: those named in `PUSHED_FILES`
    that are files of the folder itself (a link is followed only to a file of the same folder)."""
    folder = Path(folder).resolve()
    return sorted(
        path.name
        for path in folder.iterdir()
        if any(fnmatch.fnmatchcase(path.name, pattern) for pattern in PUSHED_FILES)
        and path.resolve().is_file()
        and path.resolve().parent == folder
    )


def unpushed_entries(folder: str | Path) -> list[str]:
    """What else `folder` holds (folders end in `/`): what a push leaves out."""
    pushed = set(pushed_files(folder))
    return sorted(path.name + "/" * path.is_dir() for path in Path(folder).iterdir() if path.name not in pushed)


def _operations(folder: Path, repo_id: str) -> list[CommitOperationAdd]:
    from .model_card import CARD_FILE, EVAL_RESULTS_FILE, TRAINING_ARGS_FILE, ModelCardFacts, build_model_card

    left_out = unpushed_entries(folder)
    if left_out:
        logger.info("not pushed (not written by hf-hybrid, or a link out of the folder): %s", ", ".join(left_out))
    operations = []
    pushed = pushed_files(folder)
    for path in pushed:
        content = folder / path
        if path == CARD_FILE and {EVAL_RESULTS_FILE, TRAINING_ARGS_FILE} <= set(pushed):
            facts = ModelCardFacts.from_folder(folder)
            if facts.repo_id != repo_id:
                content = str(build_model_card(facts, repo_id)).encode("utf-8")
        operations.append(CommitOperationAdd(path_in_repo=path, path_or_fileobj=content))
    return operations


def _is_repo_id(name: str) -> bool:
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _validate(repo_id: str) -> None:
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise HubError(f"invalid repo id {repo_id!r}: {_first_line(error)}") from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
