"""bizon-rs's stand-in for bizon.source.auth.authenticators.token (bizon 0.6.4)."""
from pydantic import BaseModel, Field

from .abstract_token import AbstractHeaderAuthenticator


class TokenAuthParams(BaseModel):
    token: str = Field(..., description="Token to be attached to the request")
    auth_method: str = Field("Bearer", description="Prefix of the header value. Empty sends the bare token.")
    auth_header: str = Field("Authorization", description="Auth header for token auth")


class TokenAuthenticator(AbstractHeaderAuthenticator):
    """Attaches `auth_method token` to each request in the `auth_header` header."""

    def __init__(self, params: TokenAuthParams):
        self._auth_header = params.auth_header
        self._auth_method = params.auth_method
        self._token = params.token

    @property
    def auth_header(self) -> str:
        return self._auth_header

    @property
    def token(self) -> str:
        if not self._auth_method:
            return self._token
        return f"{self._auth_method} {self._token}"
