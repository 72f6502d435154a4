"""bizon-rs's stand-in for bizon.source.auth.authenticators.basic (bizon 0.6.4)."""
import base64

from pydantic import BaseModel, Field

from .abstract_token import AbstractHeaderAuthenticator


class BasicHttpAuthParams(BaseModel):
    username: str = Field(..., description="Username for basic auth")
    password: str = Field("", description="Password for basic auth")
    auth_method: str = Field("Basic", description="Auth method for basic auth")
    auth_header: str = Field("Authorization", description="Auth header for basic auth")


class BasicHttpAuthenticator(AbstractHeaderAuthenticator):
    """Basic authentication (RFC 7617): base64 of `username:password`."""

    def __init__(self, params: BasicHttpAuthParams):
        self._auth_header = params.auth_header
        self._auth_method = params.auth_method
        self._token = base64.b64encode(f"{params.username}:{params.password}".encode()).decode("utf8")

    @property
    def auth_header(self) -> str:
        return self._auth_header

    @property
    def token(self) -> str:
        return f"{self._auth_method} {self._token}"
