"""The S3 client both the agent (models in) and the gateway's bucket sink (predictions out) use:
TLS as configured, and credentials from the first source that is set (see :func:`credentials`)."""

from __future__ import annotations

import logging
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import urllib3
from minio import Minio
from minio.credentials.credentials import Credentials
from minio.credentials.providers import IamAwsProvider, Provider, StaticProvider

from modelsync.config import Config, MinioConfig
from modelsync.errors import ConfigError, StorageError

log = logging.getLogger(__name__)
_warned_insecure: set[str] = set()
CA_HINT = "set minio.ca_file to the CA bundle that signed it"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class CredentialSource(StrEnum):
    """Where the S3 credentials come from, in the order they are looked for."""

    STATIC = "static keys"  # minio.access_key/secret_key, MINIO_ACCESS_KEY[_FILE], ...
    AWS_ENV = "AWS environment"  # AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
    WEB_IDENTITY = "web identity"  # AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE (IRSA)
    CONTAINER = "container credentials"  # AWS_CONTAINER_CREDENTIALS_{RELATIVE,FULL}_URI (ECS, EKS)
    INSTANCE_ROLE = "instance role"  # minio.instance_role: true (EC2 instance metadata)


@dataclass(frozen=True)
class CredentialChoice:
    source: CredentialSource
    detail: str  # what an operator needs to recognise it, never a secret
    provider: Provider


class _Named(Provider):
    """A provider whose failures say which source failed, as a StorageError the agent backs
    off on (minio would raise a bare ValueError from inside a request)."""

    def __init__(self, inner: Provider, source: CredentialSource, endpoint: str) -> None:
        self._inner = inner
        self._source = source
        self._endpoint = endpoint

    def retrieve(self) -> Credentials:
        try:
            return self._inner.retrieve()
        except (ValueError, OSError, urllib3.exceptions.HTTPError, KeyError) as exc:
            raise StorageError(
                f"cannot get S3 credentials from {self._source} for {self._endpoint}: "
                f"{_redacted(describe(exc))}"
            ) from None


def _redacted(message: str) -> str:
    # minio's errors quote the STS URL, whose query carries the web identity token.
    return re.sub(r"\?\S*", "?...", message)


def http_pool(
    config: MinioConfig, *, timeout: urllib3.Timeout, retries: urllib3.Retry, maxsize: int
) -> urllib3.PoolManager:
    """A connection pool that trusts ``minio.ca_file`` (or nothing, with ``tls_skip_verify``)."""
    tls: dict[str, object] = {}
    if config.secure and config.tls_skip_verify:
        if config.endpoint not in _warned_insecure:
            _warned_insecure.add(config.endpoint)
            log.warning(
                "minio.tls_skip_verify is true: the certificate of %s is not checked, so anyone "
                "on the path can read and change what is downloaded",
                config.url,
            )
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        tls = {"cert_reqs": ssl.CERT_NONE, "assert_hostname": False}
    elif config.secure and config.ca_file is not None:
        tls = {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": str(config.ca_file)}
    return urllib3.PoolManager(timeout=timeout, retries=retries, maxsize=maxsize, **tls)  # type: ignore[arg-type]


def credentials(config: MinioConfig, env: Mapping[str, str] = os.environ) -> CredentialChoice | None:
    """The first credential source that is set, or None: static keys, the AWS environment,
    web identity, container credentials, then (only when asked for) the instance role."""
    if config.access_key and config.secret_key:
        token = config.session_token.reveal() or None
        static = StaticProvider(config.access_key.reveal(), config.secret_key.reveal(), token)
        detail = "minio.access_key" + (" with a session token" if token else "")
        return CredentialChoice(CredentialSource.STATIC, detail, static)
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        token = env.get("AWS_SESSION_TOKEN") or None
        static = StaticProvider(env["AWS_ACCESS_KEY_ID"].strip(), env["AWS_SECRET_ACCESS_KEY"].strip(), token)
        detail = "AWS_ACCESS_KEY_ID" + (" with AWS_SESSION_TOKEN" if token else "")
        return CredentialChoice(CredentialSource.AWS_ENV, detail, static)
    sts = config.sts_endpoint
    if env.get("AWS_WEB_IDENTITY_TOKEN_FILE") and env.get("AWS_ROLE_ARN"):
        detail = f"role {env['AWS_ROLE_ARN']}, token file {env['AWS_WEB_IDENTITY_TOKEN_FILE']}"
        return _iam(config, CredentialSource.WEB_IDENTITY, detail + (f", STS {sts}" if sts else ""))
    if env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        return _iam(config, CredentialSource.CONTAINER, "AWS_CONTAINER_CREDENTIALS_*_URI")
    if config.instance_role:
        detail = f"instance metadata at {config.metadata_endpoint or 'http://169.254.169.254'}"
        return _iam(config, CredentialSource.INSTANCE_ROLE, detail)
    return None


def require_credentials(config: Config, env: Mapping[str, str] = os.environ) -> CredentialChoice:
    """The agent cannot list a bucket anonymously: name every way to give it credentials."""
    minio = config.minio
    if bool(minio.access_key) != bool(minio.secret_key):  # half a pair is a mistake, not a choice
        missing = "secret_key" if minio.access_key else "access_key"
        other = "access_key" if minio.access_key else "secret_key"
        raise ConfigError(
            config.source,
            f"minio.{missing}",
            f"is required with minio.{other} (or set MINIO_{missing.upper()} / MINIO_{missing.upper()}_FILE)",
        )
    choice = credentials(minio, env)
    if choice is None:
        raise ConfigError(
            config.source,
            "minio.access_key",
            "is required (or set MINIO_ACCESS_KEY / MINIO_ACCESS_KEY_FILE; or AWS_ACCESS_KEY_ID; "
            "or AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE; or minio.instance_role: true)",
        )
    return choice


def _iam(config: MinioConfig, source: CredentialSource, detail: str) -> CredentialChoice:
    # minio's own provider: it reads the token file again for every STS call, so a token the
    # kubelet rotated is picked up when the temporary credentials expire.
    # No retries of its own: the agent backs off, and a retry warning would quote the token URL.
    pool = http_pool(
        config, timeout=urllib3.Timeout(connect=5.0, read=10.0), retries=urllib3.Retry(total=0), maxsize=1
    )
    endpoint = config.metadata_endpoint if source is CredentialSource.INSTANCE_ROLE else config.sts_endpoint
    inner = IamAwsProvider(custom_endpoint=endpoint, http_client=pool)
    return CredentialChoice(source, detail, _Named(inner, source, config.url))


def minio_client(config: MinioConfig, http_client: urllib3.PoolManager | None = None) -> Minio:
    choice = credentials(config)
    return Minio(
        config.endpoint,
        credentials=choice.provider if choice is not None else None,
        secure=config.secure,
        region=config.region,
        http_client=http_client,
    )


def describe(exc: BaseException) -> str:
    """A failure to reach the endpoint, in words an operator can act on (TLS problems named)."""
    tls = _ssl_cause(exc)
    if isinstance(tls, ssl.SSLCertVerificationError):
        return f"TLS certificate verify failed: {tls.verify_message} ({CA_HINT})"
    if tls is not None:
        return f"TLS handshake failed: {tls.reason or tls}"
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        return f"{type(exc.reason).__name__}: endpoint unreachable"
    return f"{type(exc).__name__}: {_printable(str(exc))}" if str(exc) else type(exc).__name__


def _printable(text: str, limit: int = 300) -> str:
    """What an endpoint said, safe for one log line: a proxy or a hostile server chooses it, so
    control characters are escaped (no forged lines) and it is cut short (no megabyte lines)."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def _ssl_cause(exc: BaseException | None) -> ssl.SSLError | None:
    """The ssl error behind urllib3's wrappers (MaxRetryError -> SSLError -> ssl.SSLError)."""
    for _ in range(5):
        if exc is None or isinstance(exc, ssl.SSLError):
            return exc
        if isinstance(exc, urllib3.exceptions.MaxRetryError):
            exc = exc.reason
        elif exc.args and isinstance(exc.args[0], BaseException):
            exc = exc.args[0]
        else:
            exc = exc.__cause__ or exc.__context__
    return None
