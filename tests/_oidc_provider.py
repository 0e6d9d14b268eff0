"""A small OpenID Connect provider for the sign-in tests, served on localhost by the test itself.

It speaks the authorization-code flow that Streamlit's ``st.login`` (Authlib)
uses: a discovery document, an authorize page where the person types the
e-mail address to sign in as, a token endpoint that checks the client's
secret, the code and the redirect URI and returns an ID token signed with
RS256 (``authlib.jose``), and the JWKS that verifies it. Only the standard
library's ``http.server`` and Authlib are used.
"""

from __future__ import annotations

import base64
import html
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

from authlib.jose import JsonWebKey, jwt


class OIDCProvider:
    """``with OIDCProvider(client_id, client_secret, users) as idp:``; ``idp.issuer`` is its URL.

    ``users`` maps an e-mail address to extra claims (``name``, ``groups``);
    an address not in it is refused on the authorize page.
    """

    def __init__(self, client_id: str, client_secret: str, users: dict[str, dict]):
        self.client_id, self.client_secret, self.users = client_id, client_secret, users
        self.key = JsonWebKey.generate_key("RSA", 2048, is_private=True)
        self.kid = "test-key-1"
        self.codes: dict[str, dict] = {}
        self.tokens_issued: list[dict] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                url = urlparse(self.path)
                if url.path == "/.well-known/openid-configuration":
                    return self._json(provider.discovery())
                if url.path == "/jwks":
                    return self._json({"keys": [{**provider.key.as_dict(is_private=False), "kid": provider.kid, "use": "sig", "alg": "RS256"}]})
                if url.path == "/authorize":
                    return self._authorize_page({k: v[0] for k, v in parse_qs(url.query).items()})
                self.send_error(404)

            def do_POST(self):
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if url.path == "/authorize":
                    return self._authorize(form)
                if url.path == "/token":
                    return self._token(form)
                self.send_error(404)

            def _json(self, data, status=200):
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorize_page(self, q):
                if q.get("client_id") != provider.client_id or q.get("response_type") != "code":
                    return self._json({"error": "invalid_request"}, 400)
                hidden = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}">'
                                 for k, v in q.items() if k in ("client_id", "redirect_uri", "state", "nonce", "scope"))
                body = (f"<html><body><h1>Test identity provider</h1><form method='post' action='/authorize'>{hidden}"
                        "<label>E-mail <input name='email' id='email'></label>"
                        "<button type='submit' id='signin'>Sign in</button></form></body></html>").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorize(self, form):
                email = form.get("email", "")
                if email not in provider.users or form.get("client_id") != provider.client_id:
                    return self._json({"error": "access_denied", "email": email}, 403)
                code = secrets.token_urlsafe(16)
                provider.codes[code] = {"email": email, "nonce": form.get("nonce"), "redirect_uri": form["redirect_uri"]}
                target = form["redirect_uri"] + "?" + urlencode({"code": code, "state": form.get("state", "")})
                self.send_response(302)
                self.send_header("Location", target)
                self.end_headers()

            def _token(self, form):
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
                else:
                    cid, secret = form.get("client_id", ""), form.get("client_secret", "")
                if (cid, secret) != (provider.client_id, provider.client_secret):
                    return self._json({"error": "invalid_client"}, 401)
                grant = provider.codes.pop(form.get("code", ""), None)
                if form.get("grant_type") != "authorization_code" or grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
                    return self._json({"error": "invalid_grant"}, 400)
                now = int(time.time())
                claims = {"iss": provider.issuer, "sub": grant["email"], "aud": provider.client_id, "iat": now, "exp": now + 600,
                          "email": grant["email"], "email_verified": True, **provider.users[grant["email"]]}
                if grant["nonce"]:
                    claims["nonce"] = grant["nonce"]
                id_token = jwt.encode({"alg": "RS256", "kid": provider.kid}, claims, provider.key).decode()
                provider.tokens_issued.append(claims)
                self._json({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 600,
                            "id_token": id_token, "scope": "openid email profile"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def discovery(self) -> dict:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        }

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def __enter__(self) -> "OIDCProvider":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
