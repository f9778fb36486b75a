"""Certificate-name matching, shared by the live TLS layer, the memory network and the emulated
Microsoft proxies (certificate name vs. Contact FQDN)."""

from __future__ import annotations

__all__ = ["name_matches"]


def name_matches(pattern: str, fqdn: str) -> bool:
    """Whether the certificate name ``pattern`` covers the host name ``fqdn``.

    Case-insensitive, ignoring one trailing dot.  ``*.example.com`` covers ``a.example.com`` but
    neither ``example.com`` nor ``a.b.example.com``; partial wildcards (``a*.example.com``),
    wildcards in other labels and ``*.com`` cover nothing.
    """
    pattern = pattern.lower().removesuffix(".")
    fqdn = fqdn.lower().removesuffix(".")
    if not pattern or not fqdn or "*" in fqdn:
        return False
    if "*" not in pattern:
        return pattern == fqdn
    p_labels = pattern.split(".")
    f_labels = fqdn.split(".")
    if p_labels[0] != "*" or len(p_labels) < 3 or any("*" in lab for lab in p_labels[1:]):
        return False
    return len(f_labels) == len(p_labels) and bool(f_labels[0]) and f_labels[1:] == p_labels[1:]
