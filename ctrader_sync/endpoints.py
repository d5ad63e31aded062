"""Public addresses of the cTrader Open API (``EndPoints``)."""

from __future__ import annotations

from typing import Final

__all__ = ["EndPoints"]


class EndPoints:
    """Host names, port and OAuth addresses of the cTrader Open API.

    The names are those of the old SDK, so ``EndPoints.PROTOBUF_DEMO_HOST`` ports unchanged.
    """

    PROTOBUF_DEMO_HOST: Final = "demo.ctraderapi.com"
    """Protobuf-over-TLS server for demo accounts."""
    PROTOBUF_LIVE_HOST: Final = "live.ctraderapi.com"
    """Protobuf-over-TLS server for live accounts."""
    PROTOBUF_PORT: Final = 5035
    """TLS port of the protobuf API (5036 is the JSON variant, not used here)."""
    AUTH_URI: Final = "https://openapi.ctrader.com/apps/auth"
    """OAuth 2 authorization page (the old SDK's address; it redirects to id.ctrader.com)."""
    AUTH_PAGE_URI: Final = "https://id.ctrader.com/my/settings/openapi/grantingaccess/"
    """The current OAuth 2 authorization page."""
    TOKEN_URI: Final = "https://openapi.ctrader.com/apps/token"
    """OAuth 2 token endpoint (authorization code and refresh token grants)."""
