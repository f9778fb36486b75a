"""Teams presence for the contact-center side of the lab (direct-routing-sip.md Part 11).

:mod:`~sbcsim.presence.model` keeps each user's presence sources and aggregates them (pure,
clock-injected); :mod:`~sbcsim.presence.oauth` issues and verifies the Graph access tokens a
contact-center platform presents; :mod:`~sbcsim.presence.api` serves both over HTTP in
Microsoft Graph's shape, with change notifications to subscribers.
"""

from __future__ import annotations

from sbcsim.presence.api import (
    PRESENCE_API_KEY,
    AiohttpWebhookSender,
    ApiSettings,
    Delivery,
    GraphHttpError,
    GraphPresenceApi,
    RateLimiter,
    Subscription,
    WebhookResponse,
    WebhookSender,
    create_app,
    parse_presence_resource,
)
from sbcsim.presence.model import (
    OFFLINE,
    Activity,
    Availability,
    InvalidPresenceRequest,
    PresenceError,
    PresenceService,
    PresenceSessionInfo,
    PresenceSettings,
    PresenceState,
    PresenceUser,
    UnknownUserError,
    format_graph_datetime,
    parse_graph_datetime,
    parse_iso_duration,
)
from sbcsim.presence.oauth import (
    AccessClaims,
    AppRegistration,
    AuthoritySettings,
    OAuthError,
    TokenAuthority,
    TokenError,
    TokenResponse,
    UserAccount,
)

__all__ = [
    "OFFLINE",
    "PRESENCE_API_KEY",
    "AccessClaims",
    "Activity",
    "AiohttpWebhookSender",
    "ApiSettings",
    "AppRegistration",
    "AuthoritySettings",
    "Availability",
    "Delivery",
    "GraphHttpError",
    "GraphPresenceApi",
    "InvalidPresenceRequest",
    "OAuthError",
    "PresenceError",
    "PresenceService",
    "PresenceSessionInfo",
    "PresenceSettings",
    "PresenceState",
    "PresenceUser",
    "RateLimiter",
    "Subscription",
    "TokenAuthority",
    "TokenError",
    "TokenResponse",
    "UnknownUserError",
    "UserAccount",
    "WebhookResponse",
    "WebhookSender",
    "create_app",
    "format_graph_datetime",
    "parse_graph_datetime",
    "parse_iso_duration",
    "parse_presence_resource",
]
