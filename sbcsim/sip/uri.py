"""SIP, SIPS and TEL URIs (RFC 3261 §19.1, §25.1; RFC 3966), and opaque absolute URIs.

Escaping: every component is kept exactly as written (``raw``) so serialization round-trips, and
the ``%HH``-decoded value is computed once on demand (``user``, ``password`` ...).  A decoded
value is never decoded again: ``value%2541`` decodes to ``value%41``, not ``valueA``
(RFC 4475 §3.1.1.3).  Comparison follows RFC 3261 §19.1.4.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sbcsim.errors import RemoteProtocolError

__all__ = [
    "AbsoluteUri",
    "SipUri",
    "TelUri",
    "Uri",
    "escape",
    "parse_uri",
    "unescape",
]

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*\Z")
# RFC 3261 unreserved / user-unreserved / param-unreserved / hnv-unreserved character classes.
_ALNUM = "A-Za-z0-9"
_MARK = r"\-_.!~*'()"
_USER_RE = re.compile(rf"(?:[{_ALNUM}{_MARK}&=+$,;?/]|%[0-9A-Fa-f]{{2}})+\Z")
_PASSWORD_RE = re.compile(rf"(?:[{_ALNUM}{_MARK}&=+$,]|%[0-9A-Fa-f]{{2}})*\Z")
_PARAM_RE = re.compile(rf"(?:[{_ALNUM}{_MARK}\[\]/:&+$]|%[0-9A-Fa-f]{{2}})+\Z")
_HNAME_RE = re.compile(rf"(?:[{_ALNUM}{_MARK}\[\]/?:+$]|%[0-9A-Fa-f]{{2}})+\Z")
_HVALUE_RE = re.compile(rf"(?:[{_ALNUM}{_MARK}\[\]/?:+$]|%[0-9A-Fa-f]{{2}})*\Z")
_HOSTNAME_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?\Z"
)
_IPV4_RE = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\Z")
_IPV6_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]\Z")
_PORT_RE = re.compile(r"\d{1,5}\Z")
_TEL_GLOBAL_RE = re.compile(r"\+[0-9\-.()]*[0-9][0-9\-.()]*\Z")
_TEL_LOCAL_RE = re.compile(r"[0-9A-Fa-f*#\-.()]*[0-9A-Fa-f*#][0-9A-Fa-f*#\-.()]*\Z")
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_OPAQUE_RE = re.compile(r"[^\s<>\"]+\Z")


def unescape(text: str) -> str:
    """Decode ``%HH`` escapes exactly once; a ``%`` not followed by two hex digits stays."""
    if "%" not in text:
        return text
    raw = text.encode("utf-8", "surrogateescape")
    out = _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), raw.decode("latin-1"))
    return out.encode("latin-1").decode("utf-8", "surrogateescape")


_SAFE_USER = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()&=+$,;?/"
)


def escape(text: str, safe: frozenset[str] = _SAFE_USER) -> str:
    """Escape every character outside ``safe`` as ``%HH`` (UTF-8 octets)."""
    if all(c in safe for c in text):
        return text
    out: list[str] = []
    for c in text:
        if c in safe:
            out.append(c)
        else:
            out.extend(f"%{b:02X}" for b in c.encode("utf-8", "surrogateescape"))
    return "".join(out)


def _split_params(text: str, what: str) -> tuple[tuple[str, str | None], ...]:
    """``;a=b;c`` (leading ``;`` already removed) -> ordered (name, value) pairs, raw spelling."""
    params: list[tuple[str, str | None]] = []
    for part in text.split(";"):
        if not part:
            raise RemoteProtocolError(f"empty parameter in {what}")
        name, eq, value = part.partition("=")
        if not _PARAM_RE.match(name) or (eq and not _PARAM_RE.match(value)):
            raise RemoteProtocolError(f"invalid parameter {part!r} in {what}")
        params.append((name, value if eq else None))
    return tuple(params)


def _parse_host(host: str, what: str) -> str:
    if _HOSTNAME_RE.match(host):
        return host
    m = _IPV4_RE.match(host)
    if m:
        if all(int(g) <= 255 for g in m.groups()):
            return host
        raise RemoteProtocolError(f"invalid IPv4 address {host!r} in {what}")
    if _IPV6_RE.match(host):
        return host
    raise RemoteProtocolError(f"invalid host {host!r} in {what}")


@dataclass(frozen=True, slots=True)
class SipUri:
    """``sip:`` / ``sips:`` URI.  Components are stored as written (escapes kept)."""

    scheme: str = "sip"
    user_raw: str | None = None
    password_raw: str | None = None
    host: str = ""
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    raw: str | None = field(default=None, compare=False, repr=False)

    # -- decoded views ------------------------------------------------------------------------
    @property
    def user(self) -> str | None:
        return None if self.user_raw is None else unescape(self.user_raw)

    @property
    def password(self) -> str | None:
        return None if self.password_raw is None else unescape(self.password_raw)

    @property
    def secure(self) -> bool:
        return self.scheme.lower() == "sips"

    def param(self, name: str, default: str | None = None) -> str | None:
        """Value of URI parameter ``name`` (case-insensitive name); ``""`` for a flag param."""
        lname = name.lower()
        for k, v in self.params:
            if k.lower() == lname or ("%" in k and unescape(k).lower() == lname):
                return unescape(v) if v is not None else ""
        return default

    def has_param(self, name: str) -> bool:
        lname = name.lower()
        return any(
            k.lower() == lname or ("%" in k and unescape(k).lower() == lname)
            for k, _ in self.params
        )

    @property
    def transport(self) -> str | None:
        t = self.param("transport")
        return t.lower() if t else None

    @property
    def host_is_ip(self) -> bool:
        return bool(_IPV4_RE.match(self.host)) or self.host.startswith("[")

    @property
    def host_port(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    # -- building -----------------------------------------------------------------------------
    def with_params(self, **params: str | None) -> SipUri:
        """A copy with the given params set (``None`` value = flag param); others kept in order."""
        names = {k.lower() for k in params}
        kept = tuple((k, v) for k, v in self.params if k.lower() not in names)
        added = tuple((k.replace("_", "-"), v) for k, v in params.items())
        return SipUri(
            self.scheme,
            self.user_raw,
            self.password_raw,
            self.host,
            self.port,
            kept + added,
            self.headers,
        )

    def without_params(self, *names: str) -> SipUri:
        lnames = {n.lower() for n in names}
        kept = tuple((k, v) for k, v in self.params if k.lower() not in lnames)
        return SipUri(
            self.scheme, self.user_raw, self.password_raw, self.host, self.port, kept, self.headers
        )

    def replace(self, **changes: object) -> SipUri:
        values: dict[str, object] = {
            "scheme": self.scheme,
            "user_raw": self.user_raw,
            "password_raw": self.password_raw,
            "host": self.host,
            "port": self.port,
            "params": self.params,
            "headers": self.headers,
        }
        if "user" in changes:
            user = changes.pop("user")
            values["user_raw"] = None if user is None else escape(str(user))
        values.update(changes)
        return SipUri(**values)  # type: ignore[arg-type]

    def __str__(self) -> str:
        if self.raw is not None:
            return self.raw
        parts = [self.scheme, ":"]
        if self.user_raw is not None:
            parts.append(self.user_raw)
            if self.password_raw is not None:
                parts += [":", self.password_raw]
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts += [":", str(self.port)]
        for k, v in self.params:
            parts += [";", k] if v is None else [";", k, "=", v]
        if self.headers:
            parts.append("?")
            parts.append("&".join(f"{k}={v}" for k, v in self.headers))
        return "".join(parts)

    def equivalent(self, other: object) -> bool:
        """RFC 3261 §19.1.4 comparison."""
        if not isinstance(other, SipUri):
            return False
        if self.scheme.lower() != other.scheme.lower():
            return False
        if self.user != other.user or self.password != other.password:
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        mine = {unescape(k).lower(): unescape(v or "").lower() for k, v in self.params}
        theirs = {unescape(k).lower(): unescape(v or "").lower() for k, v in other.params}
        for special in ("user", "ttl", "method", "maddr", "transport"):
            if mine.get(special) != theirs.get(special):
                return False
        for k in mine.keys() & theirs.keys():
            if mine[k] != theirs[k]:
                return False
        mh = {k.lower(): unescape(v) for k, v in self.headers}
        th = {k.lower(): unescape(v) for k, v in other.headers}
        return mh == th


@dataclass(frozen=True, slots=True)
class TelUri:
    """``tel:`` URI (RFC 3966): a global (``+``) or local number and its parameters."""

    number: str
    params: tuple[tuple[str, str | None], ...] = ()
    raw: str | None = field(default=None, compare=False, repr=False)
    scheme: str = "tel"

    @property
    def is_global(self) -> bool:
        return self.number.startswith("+")

    @property
    def digits(self) -> str:
        """The number without visual separators (``-``, ``.``, ``(``, ``)``)."""
        return "".join(c for c in self.number if c not in "-.()")

    def param(self, name: str, default: str | None = None) -> str | None:
        lname = name.lower()
        for k, v in self.params:
            if k.lower() == lname:
                return unescape(v) if v is not None else ""
        return default

    def __str__(self) -> str:
        if self.raw is not None:
            return self.raw
        return (
            "tel:"
            + self.number
            + "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params)
        )


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """Any other scheme (``isbn:``, ``http:``, ``soap.beep:``, ``name:`` ...), kept opaque."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


Uri = SipUri | TelUri | AbsoluteUri


def _parse_sip(scheme: str, rest: str, text: str) -> SipUri:
    headers: tuple[tuple[str, str], ...] = ()
    if "?" in rest:
        # '?' may appear in the user part (user-unreserved), so only the one after '@' counts.
        at = rest.rfind("@")
        q = rest.find("?", at + 1)
        if q >= 0:
            hdr_text = rest[q + 1 :]
            rest = rest[:q]
            hs: list[tuple[str, str]] = []
            for item in hdr_text.split("&"):
                name, eq, value = item.partition("=")
                if not eq or not _HNAME_RE.match(name) or not _HVALUE_RE.match(value):
                    raise RemoteProtocolError(f"invalid URI header {item!r} in {text!r}")
                hs.append((name, value))
            headers = tuple(hs)
    user_raw: str | None = None
    password_raw: str | None = None
    at = rest.rfind("@")
    if at >= 0:
        userinfo, hostpart = rest[:at], rest[at + 1 :]
        user_raw, colon, pw = userinfo.partition(":")
        # a ':' is not user-unreserved, so the first one starts the password
        if colon:
            password_raw = pw
            if not _PASSWORD_RE.match(pw):
                raise RemoteProtocolError(f"invalid password in {text!r}")
        if not user_raw or not _USER_RE.match(user_raw):
            raise RemoteProtocolError(f"invalid user part in {text!r}")
    else:
        hostpart = rest
    hostport, semi, param_text = hostpart.partition(";")
    params = _split_params(param_text, repr(text)) if semi else ()
    port: int | None = None
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise RemoteProtocolError(f"unterminated IPv6 reference in {text!r}")
        host, tail = hostport[: close + 1], hostport[close + 1 :]
        if tail:
            if not tail.startswith(":"):
                raise RemoteProtocolError(f"invalid host/port in {text!r}")
            port_text = tail[1:]
            if not _PORT_RE.match(port_text):
                raise RemoteProtocolError(f"invalid port in {text!r}")
            port = int(port_text)
    else:
        host, colon, port_text = hostport.partition(":")
        if colon:
            if not _PORT_RE.match(port_text):
                raise RemoteProtocolError(f"invalid port in {text!r}")
            port = int(port_text)
    if not host:
        raise RemoteProtocolError(f"missing host in {text!r}")
    _parse_host(host, repr(text))
    if port is not None and port > 65535:
        raise RemoteProtocolError(f"port out of range in {text!r}")
    return SipUri(scheme, user_raw, password_raw, host, port, params, headers, raw=text)


def _parse_tel(rest: str, text: str) -> TelUri:
    number, semi, param_text = rest.partition(";")
    if number.startswith("+"):
        if not _TEL_GLOBAL_RE.match(number):
            raise RemoteProtocolError(f"invalid global number in {text!r}")
    elif not _TEL_LOCAL_RE.match(number):
        raise RemoteProtocolError(f"invalid local number in {text!r}")
    params = _split_params(param_text, repr(text)) if semi else ()
    if not number.startswith("+") and not any(k.lower() == "phone-context" for k, _ in params):
        raise RemoteProtocolError(f"local tel number without phone-context in {text!r}")
    return TelUri(number, params, raw=text)


_cache: dict[str, Uri] = {}


def parse_uri(text: str) -> Uri:
    """Parse a URI; unknown schemes become :class:`AbsoluteUri`.

    Raises :class:`RemoteProtocolError` (status 400) for a malformed SIP/SIPS/TEL URI or for text
    that is not a URI at all.  Results are cached: URIs are immutable and repeat on the wire.
    """
    hit = _cache.get(text)
    if hit is not None:
        return hit
    colon = text.find(":")
    if colon <= 0:
        raise RemoteProtocolError(f"not a URI: {text!r}")
    scheme = text[:colon]
    rest = text[colon + 1 :]
    if not _SCHEME_RE.match(scheme):
        raise RemoteProtocolError(f"invalid URI scheme in {text!r}")
    lscheme = scheme.lower()
    uri: Uri
    if lscheme in ("sip", "sips"):
        uri = _parse_sip(scheme, rest, text)
    elif lscheme == "tel":
        uri = _parse_tel(rest, text)
    else:
        if not rest or not _OPAQUE_RE.match(rest):
            raise RemoteProtocolError(f"invalid URI {text!r}")
        uri = AbsoluteUri(scheme, rest)
    if len(_cache) > 4096:
        _cache.clear()
    _cache[text] = uri
    return uri
