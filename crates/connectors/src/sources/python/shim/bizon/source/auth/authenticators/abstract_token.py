"""bizon-rs's stand-in for bizon.source.auth.authenticators.abstract_token (bizon 0.6.4)."""
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

from requests.auth import AuthBase


class AbstractHeaderAuthenticator(AuthBase):
    """Abstract class for header-based authenticators that add a header to outgoing HTTP requests."""

    def __call__(self, request):
        request.headers.update(self.get_auth_header())
        return request

    def get_auth_header(self) -> Mapping[str, Any]:
        if self.auth_header:
            return {self.auth_header: self.token}
        return {}

    @property
    @abstractmethod
    def auth_header(self) -> str:
        """HTTP header to set on the requests"""

    @property
    @abstractmethod
    def token(self) -> str:
        """The header value to set on outgoing HTTP requests"""
