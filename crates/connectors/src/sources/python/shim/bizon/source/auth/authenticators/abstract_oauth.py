"""bizon-rs's stand-in for bizon.source.auth.authenticators.abstract_oauth (bizon 0.6.4)."""
import logging
import random
import re
import time
from abc import abstractmethod
from collections.abc import Mapping, MutableMapping
from datetime import datetime, timedelta, timezone
from typing import Any, List, Tuple, Union

import requests
from requests.auth import AuthBase

logger = logging.getLogger(__name__)


class BaseBackoffException(requests.exceptions.HTTPError):
    # bizon.common.errors.backoff's, which the shim does not ship as a module.
    def __init__(self, request: requests.PreparedRequest, response: requests.Response, error_message: str = ""):
        error_message = (
            error_message
            or f"Request URL: {request.url}, Response Code: {response.status_code}, Response Text: {response.text}"
        )
        super().__init__(error_message, request=request, response=response)


class DefaultBackoffException(BaseBackoffException):
    pass


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC, as pendulum does."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


_TOKENS = re.compile(r"\[([^\]]*)\]|YYYY|YY|MMMM|MMM|MM|M|DD|D|HH|H|hh|h|mm|m|ss|s|SSSSSS|SSS|S|A|ZZ|Z")
_STRPTIME = {"YYYY": "%Y", "YY": "%y", "MMMM": "%B", "MMM": "%b", "MM": "%m", "M": "%m", "DD": "%d", "D": "%d",
             "HH": "%H", "H": "%H", "hh": "%I", "h": "%I", "mm": "%M", "m": "%M", "ss": "%S", "s": "%S",
             "SSSSSS": "%f", "SSS": "%f", "S": "%f", "A": "%p", "ZZ": "%z", "Z": "%z"}


def from_format(value: Union[str, int, float], fmt: str) -> datetime:
    """pendulum.from_format for the common tokens (X/x: unix seconds/milliseconds); '%' formats go to strptime."""
    if fmt in ("X", "x"):
        return datetime.fromtimestamp(float(value) / (1000 if fmt == "x" else 1), tz=timezone.utc)
    if "%" not in fmt:
        out, pos = [], 0
        for match in _TOKENS.finditer(fmt):
            out.append(fmt[pos:match.start()])
            out.append(match.group(1) if match.group(1) is not None else _STRPTIME[match.group(0)])
            pos = match.end()
        fmt = "".join(out) + fmt[pos:]
    return as_utc(datetime.strptime(str(value), fmt))


def dpath_get(obj: Any, path: str, separator: str = "/") -> Any:
    """dpath.get for a plain path (no globs): raises KeyError when a segment is missing."""
    for segment in [s for s in path.split(separator) if s]:
        if isinstance(obj, (list, tuple)):
            try:
                obj = obj[int(segment)]
            except (ValueError, IndexError):
                raise KeyError(path)
        elif isinstance(obj, Mapping) and segment in obj:
            obj = obj[segment]
        else:
            raise KeyError(path)
    return obj


class AbstractOauth2Authenticator(AuthBase):
    """OAuth token refresh flow; how the fields are got/set is left to the implementing classes."""

    def __call__(self, request: requests.Request) -> requests.Request:
        request.headers.update(self.get_auth_header())
        return request

    def get_auth_header(self) -> Mapping[str, Any]:
        return {"Authorization": f"Bearer {self.get_access_token()}"}

    def get_access_token(self) -> str:
        if self.token_has_expired():
            token, expires_in = self.refresh_access_token()
            self.access_token = token
            self.set_token_expiry_date(expires_in)
        return self.access_token

    def token_has_expired(self) -> bool:
        """True if the token is expired, or will be within the expiry skew"""
        return utc_now() + timedelta(seconds=self.get_expiry_skew_seconds()) > as_utc(self.get_token_expiry_date())

    def get_expiry_skew_seconds(self) -> float:
        """How long before its expiry a token is refreshed."""
        return 0

    def build_refresh_request_body(self) -> Mapping[str, Any]:
        payload: MutableMapping[str, Any] = {
            "grant_type": self.get_grant_type(),
            "client_id": self.get_client_id(),
            "client_secret": self.get_client_secret(),
            "refresh_token": self.get_refresh_token(),
        }
        if self.get_scopes():
            payload["scope"] = ",".join(self.get_scopes())
        if self.get_refresh_request_body():
            for key, val in self.get_refresh_request_body().items():
                if key not in payload:
                    payload[key] = val
        return payload

    def _request_refresh_access_token(self):
        try:
            response = requests.request(
                method="POST", url=self.get_token_refresh_endpoint(), data=self.build_refresh_request_body()
            )
            response.raise_for_status()
            return response.json()
        except requests.exceptions.RequestException as e:
            if e.response is not None and (e.response.status_code == 429 or e.response.status_code >= 500):
                raise DefaultBackoffException(request=e.response.request, response=e.response)
            raise
        except Exception as e:
            raise Exception(f"Error while refreshing access token: {e}") from e

    def _get_refresh_access_token_response(self):
        # backoff.on_exception(backoff.expo, DefaultBackoffException, max_time=300) with full jitter, as bizon.
        start, tries = time.monotonic(), 0
        while True:
            try:
                return self._request_refresh_access_token()
            except DefaultBackoffException:
                tries += 1
                wait = random.uniform(0, 2 ** (tries - 1))
                if time.monotonic() - start + wait >= 300:
                    raise
                logger.info(f"Caught retryable error after {tries} tries. Waiting {wait} seconds then retrying...")
                time.sleep(wait)

    def refresh_access_token(self) -> Tuple[str, int]:
        """Returns (access_token, token_lifespan_in_seconds)"""
        response_json = self._get_refresh_access_token_response()
        if self.get_response_field_path():
            response_json = dpath_get(response_json, self.get_response_field_path())
        return response_json[self.get_access_token_name()], int(response_json[self.get_expires_in_name()])

    @abstractmethod
    def get_token_refresh_endpoint(self) -> str:
        """Returns the endpoint to refresh the access token"""

    @abstractmethod
    def get_client_id(self) -> str:
        """The client id to authenticate"""

    @abstractmethod
    def get_client_secret(self) -> str:
        """The client secret to authenticate"""

    @abstractmethod
    def get_refresh_token(self) -> str:
        """The token used to refresh the access token when it expires"""

    @abstractmethod
    def get_scopes(self) -> List[str]:
        """List of requested scopes"""

    @abstractmethod
    def get_token_expiry_date(self) -> datetime:
        """Expiration date of the access token"""

    @abstractmethod
    def set_token_expiry_date(self, value: Union[str, int]):
        """Setter for access token expiration date"""

    @abstractmethod
    def get_access_token_name(self) -> str:
        """Field to extract access token from in the response"""

    @abstractmethod
    def get_expires_in_name(self) -> str:
        """Returns the expires_in field name"""

    @abstractmethod
    def get_refresh_request_body(self) -> Mapping[str, Any]:
        """Returns the request body to set on the refresh request"""

    @abstractmethod
    def get_grant_type(self) -> str:
        """Returns grant_type specified for requesting access_token"""

    @abstractmethod
    def get_response_field_path(self) -> str:
        """Returns the path to the response field"""

    @property
    @abstractmethod
    def access_token(self) -> str:
        """Returns the access token"""

    @access_token.setter
    @abstractmethod
    def access_token(self, value: str) -> str:
        """Setter for the access token"""
