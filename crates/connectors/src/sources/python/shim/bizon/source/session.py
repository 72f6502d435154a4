"""bizon-rs's stand-in for bizon.source.session (bizon 0.6.4)."""
import logging
from typing import Optional, Tuple, Union

import requests
from requests.adapters import HTTPAdapter, Retry
from requests.exceptions import HTTPError
from requests.models import Response

logger = logging.getLogger(__name__)


# A named function rather than a lambda, so the session can be pickled.
def raise_for_status_hook(response: Response, *args, **kwargs):
    response.raise_for_status()


class CappedRetry(Retry):
    """A Retry that bounds how long a Retry-After header can make it sleep."""

    def __init__(self, *args, max_retry_after: Optional[float] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_retry_after = max_retry_after

    def new(self, **kwargs) -> "CappedRetry":
        retry = super().new(**kwargs)
        retry.max_retry_after = self.max_retry_after
        return retry

    def get_retry_after(self, response) -> Optional[float]:
        seconds = super().get_retry_after(response)
        if seconds is not None and self.max_retry_after is not None:
            return min(seconds, self.max_retry_after)
        return seconds


def legacy_retry_policy() -> Retry:
    # Without a status_forcelist urllib3 only retries 413/429/503, and only when they carry a Retry-After.
    return Retry(total=20, backoff_factor=1, raise_on_status=True, status=30, allowed_methods=["GET", "POST"])


class Session(requests.Session):
    __attrs__ = requests.Session.__attrs__ + ["timeout"]

    def __init__(
        self,
        retries: Optional[Retry] = None,
        timeout: Optional[Union[float, Tuple[float, float]]] = None,
        raise_for_status: bool = True,
    ):
        super().__init__()
        self.timeout = timeout
        if raise_for_status:
            self.hooks["response"] = [raise_for_status_hook]
        # As in bizon, the retry policy is mounted for https:// only.
        self.mount("https://", HTTPAdapter(max_retries=retries or legacy_retry_policy(), pool_maxsize=64))
        self._method_mapping = {"POST": self.post, "GET": self.get}

    def request(self, method, url, *args, **kwargs) -> requests.Response:
        if self.timeout is not None:
            kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)

    def call(self, method: str, url: str, content_type: str = "application/json", *args, **kwargs) -> requests.Response:
        self.headers.update({"content-type": content_type})
        try:
            return self._method_mapping[method](url=url, *args, **kwargs)
        except HTTPError as e:
            logger.error(f"Error {e}")
            try:
                detail = e.response.json()
            except Exception:
                detail = getattr(e.response, "text", None)
            logger.error(f"detailed error response: {detail}")
            logger.error(f"for request body: {e.request.body if e.request is not None else None}")
            raise e
        except Exception as e:
            logger.error(f"Error {e}")
            logger.error(f"for request '{method}' on url='{url}' with args={args} and kwargs={kwargs}")
            raise e
