"""Which IP addresses the media fetcher may connect to: global unicast only.

A client-supplied URL must not reach the gateway's own machine, its network or a cloud metadata service
(SSRF). The rule is an allow-list by construction: an IPv4 address must be unicast and outside every block of
the IANA IPv4 Special-Purpose Address Registry; an IPv6 address must be inside 2000::/3 (global unicast) and
outside every block of the IANA IPv6 Special-Purpose Address Registry. IPv6 forms that carry an IPv4 address
the connection may end up at (IPv4-mapped, NAT64 64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32) are judged
by the IPv4 addresses inside them, so `2002:7f00:1::` (6to4 of 127.0.0.1) is refused like 127.0.0.1.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

# IANA IPv4 Special-Purpose Address Registry (plus multicast and the limited broadcast), refused whole even
# where an entry is marked globally reachable: a media URL has no business at an anycast relay.
_V4_SPECIAL = tuple(
    IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network" (0.0.0.0 reaches the local host on Linux)
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # shared address space (carrier-grade NAT; Alibaba metadata 100.100.100.200)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local (cloud metadata 169.254.169.254)
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments (DS-Lite, NAT64 discovery, Oracle metadata 192.0.0.192)
        "192.0.2.0/24",  # documentation TEST-NET-1
        "192.31.196.0/24",  # AS112-v4
        "192.52.193.0/24",  # AMT
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",  # private
        "192.175.48.0/24",  # AS112 direct delegation
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation TEST-NET-2
        "203.0.113.0/24",  # documentation TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, including 255.255.255.255 broadcast
    )
)

_V6_GLOBAL_UNICAST = IPv6Network("2000::/3")

# IANA IPv6 Special-Purpose Address Registry entries inside 2000::/3 (the rest of the registry, ::/128, ::1,
# ::/96 IPv4-compatible, 64:ff9b:1::/48 local-use NAT64, 100::/64 discard-only, 100:0:0:1::/64, 5f00::/16
# SRv6, fc00::/7 ULA, fec0::/10 site-local, fe80::/10 link-local and ff00::/8 multicast, lies outside it).
_V6_SPECIAL = tuple(
    IPv6Network(n)
    for n in (
        "2001::/23",  # IETF protocol assignments (benchmarking 2001:2::/48, ORCHID, AMT, AS112…); Teredo apart
        "2001:db8::/32",  # documentation
        "2620:4f:8000::/48",  # AS112 direct delegation
        "3fff::/20",  # documentation
    )
)
_TEREDO = IPv6Network("2001::/32")
_SIX_TO_FOUR = IPv6Network("2002::/16")
_NAT64 = IPv6Network("64:ff9b::/96")  # the well-known prefix: the embedded IPv4 is where it goes


def _v4_allowed(ip: IPv4Address) -> bool:
    return not any(ip in net for net in _V4_SPECIAL)


def _v6_allowed(ip: IPv6Address) -> bool:
    if ip.ipv4_mapped is not None:
        return _v4_allowed(ip.ipv4_mapped)
    if ip in _NAT64:
        return _v4_allowed(IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip not in _V6_GLOBAL_UNICAST:
        return False
    if (
        ip in _TEREDO and ip.teredo is not None
    ):  # server IPv4 in bits 32-63, client's (inverted) in the low 32
        server, client = ip.teredo
        return _v4_allowed(server) and _v4_allowed(client)
    if ip in _SIX_TO_FOUR:
        return ip.sixtofour is not None and _v4_allowed(ip.sixtofour)
    return not any(ip in net for net in _V6_SPECIAL)


def allowed(address: str | IPv4Address | IPv6Address) -> bool:
    """True if the fetcher may connect to `address` (an IP literal, possibly with an IPv6 `%zone`)."""
    if isinstance(address, str):
        if "%" in address:  # a scoped address names an interface: link-local by nature
            return False
        try:
            address = ip_address(address)
        except ValueError:
            return False
    if isinstance(address, IPv4Address):
        return _v4_allowed(address)
    return _v6_allowed(address)
