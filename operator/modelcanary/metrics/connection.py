"""From a ModelDeployment's ``analysis.prometheus`` block to a ready provider.

Header values (bearer tokens, tenant ids) and the CA bundle live in Secrets in
the ModelDeployment's namespace. They are read with the async kr8s API, one
plain GET per Secret, which needs only the ``get`` verb. ``Secret.get`` would
list with a field selector and retry a missing Secret for seconds, and a
missing Secret is a mistake in the spec that retrying will not fix.

Providers are cached by what makes a connection different: the address, the
header values, the TLS settings and the timeout. A thousand ModelDeployments
that point at one Prometheus therefore share one HTTP session and its
connection pool, and all of them share the process-wide worker pool. The
cache key holds the resolved values, not the Secret names, so a rotated token
gets a new session on the next evaluation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Final

import kr8s
import kr8s.asyncio
from kr8s.asyncio.objects import Secret

from modelcanary.api.analysis import (
    PrometheusConnection,
    SecretKeySelector,
)
from modelcanary.api.base import parse_duration
from modelcanary.metrics.prometheus import PrometheusProvider

CACHE_SIZE: Final = 256


class ConnectionConfigError(Exception):
    """The Prometheus connection in a spec cannot be built: a Secret or key is missing
    or unusable. The message names the Secret and the key."""


ProviderKey = tuple[str, tuple[tuple[str, str], ...], bool | str, float]
"""(address, headers, TLS verification, timeout): TLS is a bool or the CA bundle's digest."""


class ProviderCache:
    """Providers by connection settings, least recently used dropped beyond ``size``.

    A dropped provider is not closed: a query may still be running on it, and
    its session is released when the last reference goes.
    """

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._providers: OrderedDict[ProviderKey, PrometheusProvider] = OrderedDict()
        self._ca_dir: Path | None = None

    def __len__(self) -> int:
        return len(self._providers)

    def get(
        self,
        address: str,
        *,
        timeout: float,
        headers: dict[str, str],
        ca_bundle: bytes | None,
        insecure_skip_verify: bool,
    ) -> PrometheusProvider:
        tls: bool | str
        if insecure_skip_verify:
            tls = False
        elif ca_bundle is not None:
            tls = hashlib.sha256(ca_bundle).hexdigest()
        else:
            tls = True
        key: ProviderKey = (address.rstrip("/"), tuple(sorted(headers.items())), tls, timeout)
        provider = self._providers.get(key)
        if provider is not None:
            self._providers.move_to_end(key)
            return provider
        verify: bool | str = tls if isinstance(tls, bool) else self._ca_file(tls, ca_bundle)
        provider = PrometheusProvider(address, timeout=timeout, headers=headers, verify=verify)
        self._providers[key] = provider
        while len(self._providers) > self.size:
            self._providers.popitem(last=False)
        return provider

    def _ca_file(self, digest: str, ca_bundle: bytes | None) -> str:
        # requests takes a CA bundle only as a path. The file is named by its
        # content, so equal bundles share one file and a rotated one gets a new file.
        if self._ca_dir is None:
            self._ca_dir = Path(tempfile.mkdtemp(prefix="modelcanary-ca-"))
        path = self._ca_dir / f"{digest}.pem"
        if not path.exists() and ca_bundle is not None:
            scratch = path.with_suffix(f".{os.getpid()}.tmp")
            scratch.write_bytes(ca_bundle)
            scratch.replace(path)
        return str(path)


default_cache: Final = ProviderCache()


async def provider_for(
    api: kr8s.asyncio.Api,
    connection: PrometheusConnection,
    namespace: str,
    *,
    cache: ProviderCache | None = None,
) -> PrometheusProvider:
    """The provider for ``connection``, its Secrets read from ``namespace``.

    Raises ConnectionConfigError when a Secret or key is missing or unusable.
    """
    secrets: dict[str, Secret] = {}

    async def read(selector: SecretKeySelector) -> bytes:
        if selector.name not in secrets:
            secrets[selector.name] = await _get_secret(selector.name, namespace, api)
        return _secret_value(secrets[selector.name], selector, namespace)

    headers: dict[str, str] = {}
    for header in connection.headers or []:
        raw = await read(header.secret_key_ref)
        headers[header.name] = _header_value(raw, header.name, header.secret_key_ref, namespace)
    ca_bundle = None
    if connection.ca_secret_ref is not None and not connection.insecure_skip_verify:
        ca_bundle = await read(connection.ca_secret_ref)
        if b"-----BEGIN CERTIFICATE-----" not in ca_bundle:
            raise ConnectionConfigError(
                f"key {connection.ca_secret_ref.key!r} of Secret "
                f"{namespace}/{connection.ca_secret_ref.name} is not a PEM CA bundle"
            )
    return (cache if cache is not None else default_cache).get(
        connection.address,
        timeout=parse_duration(connection.timeout).total_seconds(),
        headers=headers,
        ca_bundle=ca_bundle,
        insecure_skip_verify=connection.insecure_skip_verify,
    )


async def _get_secret(name: str, namespace: str, api: kr8s.asyncio.Api) -> Secret:
    secret = Secret(name, namespace=namespace, api=api)
    try:
        await secret.refresh()
    except kr8s.NotFoundError:
        raise ConnectionConfigError(f"Secret {namespace}/{name} does not exist") from None
    except kr8s.ServerError as error:
        status = error.response.status_code if error.response is not None else None
        if status == 403:
            raise ConnectionConfigError(
                f"the operator may not read Secret {namespace}/{name} (forbidden)"
            ) from error
        raise
    return secret


def _secret_value(secret: Secret, selector: SecretKeySelector, namespace: str) -> bytes:
    raw: dict[str, Any] = secret.raw
    data: dict[str, Any] = raw.get("data") or {}
    if selector.key not in data:
        keys = ", ".join(sorted(data)) or "none"
        raise ConnectionConfigError(
            f"Secret {namespace}/{selector.name} has no key {selector.key!r} (it has: {keys})"
        )
    try:
        return base64.b64decode(str(data[selector.key]), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ConnectionConfigError(
            f"key {selector.key!r} of Secret {namespace}/{selector.name} is not base64: {error}"
        ) from None


def _header_value(raw: bytes, header: str, selector: SecretKeySelector, namespace: str) -> str:
    where = f"key {selector.key!r} of Secret {namespace}/{selector.name}"
    try:
        # Surrounding whitespace is nearly always the newline of `echo token > file`;
        # HTTP forbids it at the edges of a header value anyway.
        value = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConnectionConfigError(f"{where} (header {header}) is not UTF-8 text") from None
    if not all(char == "\t" or " " <= char <= "~" for char in value):
        raise ConnectionConfigError(
            f"{where} (header {header}) holds characters other than printable ASCII"
        )
    if not value:
        raise ConnectionConfigError(f"{where} (header {header}) is empty")
    return value
