"""bizon-rs's stand-in for bizon.source.auth.authenticators.oauth (bizon 0.6.4)."""
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, List, Optional, Union

from pydantic import BaseModel, Field, field_validator

from .abstract_oauth import AbstractOauth2Authenticator, as_utc, from_format, utc_now


class Oauth2AuthParams(BaseModel):
    token_refresh_endpoint: str = Field(..., description="URL to refresh the token")
    client_id: str = Field(..., description="Client ID")
    client_secret: str = Field(..., description="Client Secret")
    refresh_token: Union[str, None] = Field(None, description="Refresh Token")
    scopes: List[str] = Field(None, description="Scopes")
    token_expiry_date: Optional[datetime] = Field(None, description="Token expiry date")
    token_expiry_date_format: str = Field(None, description="Token expiry date format")
    access_token_name: str = Field("access_token", description="Name of the access token")
    expires_in_name: str = Field("expires_in", description="Name of the expires in")
    refresh_request_body: Mapping[str, Any] = Field(None, description="Request body to refresh the token")
    grant_type: str = Field("refresh_token", description="Grant type")
    response_field_path: Optional[str] = Field(None, description="Path in dpath to the response field")
    expiry_skew_seconds: Optional[float] = Field(
        None, description="Refresh the token this many seconds before it expires. Default: 10% of its lifetime, <= 60s."
    )

    # pendulum's DateTime in bizon: naive values are UTC.
    @field_validator("token_expiry_date", mode="after")
    def assume_utc(value: Optional[datetime]) -> Optional[datetime]:
        return as_utc(value) if value is not None else None


class Oauth2Authenticator(AbstractOauth2Authenticator):
    """OAuth2 access tokens from a refresh token (or client credentials), sent as `Authorization: Bearer`."""

    def __init__(self, params: Oauth2AuthParams):
        self._token_refresh_endpoint = params.token_refresh_endpoint
        self._client_secret = params.client_secret
        self._client_id = params.client_id
        self._refresh_token = params.refresh_token
        self._scopes = params.scopes
        self._access_token_name = params.access_token_name
        self._expires_in_name = params.expires_in_name
        self._refresh_request_body = params.refresh_request_body
        self._grant_type = params.grant_type
        self._response_field_path = params.response_field_path
        self._token_expiry_date = params.token_expiry_date or utc_now() - timedelta(days=1)
        self._token_expiry_date_format = params.token_expiry_date_format
        self._expiry_skew_seconds = params.expiry_skew_seconds
        self._token_lifetime_seconds: Optional[float] = None
        self._access_token = None

    def get_token_refresh_endpoint(self) -> str:
        return self._token_refresh_endpoint

    def get_client_id(self) -> str:
        return self._client_id

    def get_client_secret(self) -> str:
        return self._client_secret

    def get_refresh_token(self) -> str:
        return self._refresh_token

    def get_access_token_name(self) -> str:
        return self._access_token_name

    def get_scopes(self) -> List[str]:
        return self._scopes

    def get_expires_in_name(self) -> str:
        return self._expires_in_name

    def get_refresh_request_body(self) -> Mapping[str, Any]:
        return self._refresh_request_body

    def get_grant_type(self) -> str:
        return self._grant_type

    def get_response_field_path(self) -> str:
        return self._response_field_path

    def get_token_expiry_date(self) -> datetime:
        return self._token_expiry_date

    def set_token_expiry_date(self, value: Union[str, int]):
        now = utc_now()
        if self._token_expiry_date_format:
            self._token_expiry_date = from_format(value, self._token_expiry_date_format)
        else:
            self._token_expiry_date = now + timedelta(seconds=value)
        self._token_lifetime_seconds = (self._token_expiry_date - now).total_seconds()

    def get_expiry_skew_seconds(self) -> float:
        if self._expiry_skew_seconds is not None:
            return self._expiry_skew_seconds
        if self._token_lifetime_seconds is not None:
            return max(0.0, min(60.0, 0.1 * self._token_lifetime_seconds))
        return 60.0

    @property
    def access_token(self) -> str:
        return self._access_token

    @access_token.setter
    def access_token(self, value: str):
        self._access_token = value
