"""A small OpenID Connect provider on loopback over HTTPS, for the "Sign in with Microsoft" tests.

It plays Entra ID's part of the authorization code flow: a discovery document, /authorize (which signs in
`provider.user` at once and redirects back with a code and the state), /token (which checks the client
secret and the PKCE verifier and returns an ID token signed RS256 carrying the nonce /authorize was given)
and the keys (jwks). A test CA and a server certificate for 127.0.0.1 are made when it starts.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import secrets
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

TENANT = "11111111-2222-3333-4444-555555555555"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate it signed for 127.0.0.1 and localhost: (ca, cert, key) files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Flowdeploy test CA"))
        .issuer_name(_name("Flowdeploy test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server-key.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_file, cert_file, key_file


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class OIDCProvider:
    """Start with start(); `authority` is what FLOWDEPLOY_ENTRA_AUTHORITY names, `ca_file` what it trusts."""

    def __init__(self, folder: Path, client_id: str = "studio-client", client_secret: str = "studio-secret"):
        self.client_id, self.client_secret = client_id, client_secret
        self.ca_file, self._cert_file, self._key_file = make_certificates(folder)
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8)
        # Who /authorize signs in; tests change it between sign-ins.
        self.user: dict[str, Any] = {"oid": "oid-0001", "preferred_username": "ada@contoso.example", "name": "Ada"}
        self.nonce_override: str | None = None  # an ID token for another sign-in (a replay)
        self.forged_key: rsa.RSAPrivateKey | None = None  # sign ID tokens with a key the jwks does not publish
        self.codes: dict[str, dict[str, Any]] = {}
        self.token_requests: list[dict[str, str]] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def authority(self) -> str:
        return f"{self.base}/{TENANT}/v2.0"

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.authority,
            "authorization_endpoint": f"{self.base}/{TENANT}/oauth2/v2.0/authorize",
            "token_endpoint": f"{self.base}/{TENANT}/oauth2/v2.0/token",
            "jwks_uri": f"{self.base}/{TENANT}/discovery/v2.0/keys",
            "response_types_supported": ["code"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
        }

    def jwks(self) -> dict[str, Any]:
        numbers = self.signing_key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "alg": "RS256",
                    "kid": self.kid,
                    "n": _b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                    "e": _b64(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
                }
            ]
        }

    def id_token(self, nonce: str, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": self.authority,
            "aud": self.client_id,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "tid": TENANT,
            "sub": f"sub-{self.user['oid']}",
            "nonce": nonce,
            "ver": "2.0",
            **self.user,
            **overrides,
        }
        key = self.forged_key or self.signing_key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})

    def start(self) -> OIDCProvider:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                """Quiet: what the provider did shows in the tests' own assertions, not on stderr."""

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == f"/{TENANT}/v2.0/.well-known/openid-configuration":
                    return self._json(200, provider.discovery())
                if url.path == f"/{TENANT}/discovery/v2.0/keys":
                    return self._json(200, provider.jwks())
                if url.path == f"/{TENANT}/oauth2/v2.0/authorize":
                    return self._authorize(query)
                return self._json(404, {"error": "not_found"})

            def _authorize(self, query: dict[str, str]) -> None:
                if query.get("client_id") != provider.client_id or query.get("response_type") != "code":
                    return self._json(400, {"error": "invalid_request"})
                code = secrets.token_urlsafe(24)
                provider.codes[code] = {
                    "nonce": query.get("nonce", ""),
                    "redirect_uri": query["redirect_uri"],
                    "code_challenge": query.get("code_challenge", ""),
                    "user": dict(provider.user),
                }
                back = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query.get('state', '')})}"
                self.send_response(302)
                self.send_header("Location", back)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if url.path != f"/{TENANT}/oauth2/v2.0/token":
                    return self._json(404, {"error": "not_found"})
                provider.token_requests.append(form)
                if form.get("client_id") != provider.client_id or form.get("client_secret") != provider.client_secret:
                    return self._json(401, {"error": "invalid_client", "error_description": "Bad client secret."})
                grant = provider.codes.pop(form.get("code", ""), None)
                if grant is None or form.get("grant_type") != "authorization_code":
                    return self._json(400, {"error": "invalid_grant", "error_description": "Unknown or used code."})
                if form.get("redirect_uri") != grant["redirect_uri"]:
                    return self._json(400, {"error": "invalid_grant", "error_description": "redirect_uri differs."})
                verifier = form.get("code_verifier", "")
                if _b64(hashlib.sha256(verifier.encode()).digest()) != grant["code_challenge"]:
                    return self._json(400, {"error": "invalid_grant", "error_description": "PKCE check failed."})
                nonce = provider.nonce_override if provider.nonce_override is not None else grant["nonce"]
                saved_user, provider.user = provider.user, grant["user"]
                try:
                    token = provider.id_token(nonce)
                finally:
                    provider.user = saved_user
                return self._json(
                    200,
                    {
                        "token_type": "Bearer",
                        "scope": "openid profile email",
                        "expires_in": 3600,
                        "access_token": secrets.token_urlsafe(32),
                        "id_token": token,
                    },
                )

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self._cert_file, self._key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name="oidc-provider", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
