"""Everything that talks to the Hugging Face Hub: checking the login, pushing a model folder.

Loading from the Hub needs nothing here: `from_pretrained(repo_id, trust_remote_code=True)` does it.
Every failure becomes a `HubError` whose message fits on one line and says what to do.
"""

from pathlib import Path

from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalTokenNotFoundError
from huggingface_hub.utils import validate_repo_id

# What a model repo receives: weights, configs and reports (JSON), code, card, plots, report text, ONNX.
PUSHED_PATTERNS = ["*.json", "*.safetensors", "*.py", "README.md", "*.png", "*.txt", "*.onnx"]
# Never pushed: Trainer checkpoints and anything pickled.
NEVER_PUSHED = ["checkpoint-*/**", "runs/**", "*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle"]


class HubError(RuntimeError):
    """The Hub refused or could not be reached; the message says what to do in one line."""


def check_hub_access(repo_id: str | None, token: str | None = None) -> str:
    """Fails fast, before any training, when a push could not succeed: returns the user name.

    Raises `HubError` when no token is found, the token is refused, the repo id is malformed or the
    Hub cannot be reached.
    """
    if repo_id is not None:
        try:
            validate_repo_id(repo_id)
        except HFValidationError as error:
            raise HubError(f"invalid repo id {repo_id!r}: {error}") from error
    try:
        return HfApi(token=token).whoami()["name"]
    except LocalTokenNotFoundError as error:
        raise HubError("not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN") from error
    except HfHubHTTPError as error:
        if error.response is not None and error.response.status_code == 401:
            raise HubError("the Hub refused the token: run `hf auth login` again or set a valid HF_TOKEN") from error
        raise HubError(f"the Hub at {constants.ENDPOINT} answered with an error: {_first_line(error)}") from error
    except Exception as error:  # the HTTP client's connection errors: refused, timed out, DNS, TLS
        raise HubError(f"cannot reach the Hub at {constants.ENDPOINT}: {_first_line(error)}") from error


def push_model_folder(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> str:
    """Uploads a trained model folder to `repo_id` (created if needed), on branch `revision` if given.

    Only weights, JSON, code, card, plots and reports go up: checkpoints and pickles stay local.
    Returns the URL of the commit. The folder is never modified, so a failed push can simply be run again.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise HubError(f"{folder} is not a saved model folder (config.json and model.safetensors are missing)")
    check_hub_access(repo_id, token)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            revision=revision,
            commit_message=commit_message or "Upload hf-hybrid model",
            allow_patterns=PUSHED_PATTERNS,
            ignore_patterns=NEVER_PUSHED,
        )
    except Exception as error:  # HTTP refusals and connection failures alike: the advice is the same
        raise HubError(
            f"pushing {folder} to {repo_id} failed ({_first_line(error)}); the folder is intact: "
            f"run `hf-hybrid push --model {folder} --repo_id {repo_id}` again"
        ) from error
    return commit.commit_url


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
