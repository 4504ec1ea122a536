"""Which addresses a callback may connect to: public ones, and the networks an operator allowed.

A callback URL is chosen by whoever creates a run, so without this check any ``user`` key could
make the server POST to its own loopback services, the cloud metadata endpoint or the private
network (SSRF). The check runs on the resolved address that is then connected to (see
``network.py``), never on the URL's text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

__all__ = ["AddressPolicy", "IPAddress", "IPNetwork", "is_public", "parse_networks"]

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

_NOT_PUBLIC = tuple(
    ip_network(cidr)
    for cidr in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
        "::/96",  # unspecified, loopback, IPv4-compatible
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "2001:db8::/32",
        "fc00::/7",  # unique-local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ip_network("64:ff9b::/96")
_THIS_HOST = ip_network("0.0.0.0/8")
"""Connecting to 0.0.0.0 reaches this host's own services: refused even in an allowed network."""


def embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 form reaches: IPv4-mapped, 6to4 or well-known NAT64."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """Globally routable unicast, by an explicit list (not the Python version's ``is_global``)."""
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:  # the very IPv4 address, through an IPv6 socket
            return is_public(address.ipv4_mapped)
        inner = embedded_ipv4(address)
        if inner is not None and not is_public(inner):
            return False
    if any(address in network for network in _NOT_PUBLIC):
        return False
    return address.is_global and not (address.is_multicast or address.is_reserved)


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs (a bare address is a /32 or /128); a bad one raises ValueError naming it."""
    networks = []
    for value in values:
        try:
            networks.append(ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not a network in CIDR form: {value!r}") from None
    return tuple(networks)


@dataclass(frozen=True)
class AddressPolicy:
    """Public addresses, plus the networks an operator allowed (``--callback-allow-network``)."""

    allowed: tuple[IPNetwork, ...] = ()

    def permits(self, address: IPAddress) -> bool:
        plain = _unmapped(address)
        if plain in _THIS_HOST or plain.is_unspecified:  # reaches this host, whatever is allowed
            return False
        if any(plain in network or address in network for network in self.allowed):
            return True
        return is_public(address)

    def permits_text(self, address: str) -> bool:
        """For an address as the resolver returns it (an IPv6 one may carry ``%scope``)."""
        try:
            return self.permits(ip_address(address))
        except ValueError:
            return False


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
