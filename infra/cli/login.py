"""``hopgraph login``, ``logout`` and ``whoami``: the token the other commands send."""

from __future__ import annotations

import argparse
import os

from infra.cli.client import HopgraphClient
from infra.cli.credentials import DEFAULT_SECRET_FILE
from infra.cli.inputs import UsageError
from infra.cli.output import Output, note
from infra.cli.parsing import Subcommands, api_options, subcommand


def add_login(sub: Subcommands[argparse.ArgumentParser]) -> None:
    login = subcommand(
        sub,
        "login",
        "sign in: store a token for the other commands",
        "Sign in: store a token that the other commands send to this API (in your\n"
        "config folder, $HOPGRAPH_CONFIG_DIR or ~/.config/hopgraph, per API URL).\n"
        "--user asks the local stack's issuer for a token of that user; --token stores a\n"
        "token of your identity provider (Cognito or your own), for a deployment.\n"
        "Without a stored token, commands to the local stack act as the user 'dev';\n"
        "$HOPGRAPH_TOKEN, when set, is sent instead of any stored token.",
        "  hopgraph login --user alice\n"
        "  hopgraph login --user ops --admin\n"
        "  hopgraph login --api https://abc123.execute-api.eu-west-1.amazonaws.com "
        "--token eyJ...",
        (api_options(),),
    )
    who = login.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="NAME", help="a user of the local stack, to sign in as")
    who.add_argument("--token", metavar="JWT", help="a token from your identity provider")
    login.add_argument(
        "--admin", action="store_true", help="with --user: an admin, who sees every user's runs"
    )
    login.add_argument(
        "--secret-file",
        metavar="PATH",
        help="with --user, on a stack started with --auth strict: the login secret it keeps "
        f"(default: $HOPGRAPH_LOGIN_SECRET, else {DEFAULT_SECRET_FILE} if it exists)",
    )
    subcommand(
        sub,
        "logout",
        "forget the token stored for this API",
        "Sign out: forget the token stored for this API (--api or $HOPGRAPH_API).",
        "  hopgraph logout",
        (api_options(),),
    )
    subcommand(
        sub,
        "whoami",
        "say who the commands act as on this API",
        "Say who the commands act as on this API, and where the token comes from:\n"
        "$HOPGRAPH_TOKEN, a stored one (hopgraph login), or none (then the local stack's\n"
        "dev mode acts as the user 'dev'; strict mode and a deployment refuse).",
        "  hopgraph whoami\n  hopgraph --json whoami",
        (api_options(),),
    )


def cmd_login(args: argparse.Namespace, out: Output, client: HopgraphClient) -> int:
    from infra.cli import credentials

    if args.token is not None:
        if args.admin:
            raise UsageError("--admin goes with --user; an admin's token says so itself")
        stored = credentials.StoredToken(args.token, "", _expiry(args.token))
    else:
        secret = credentials.login_secret(args.secret_file)
        stored = credentials.local_token(client.api, args.user, args.admin, secret=secret)
    path = credentials.store_token(client.api, stored)
    if out.as_json:
        out.data({"api": client.api, "user": stored.user, "expires_at": stored.expires_at})
    else:
        who = f"as {stored.user}" if stored.user else "with your token"
        out.say(f"signed in to {client.api} {who} (token kept in {path})")
    return 0


def cmd_logout(args: argparse.Namespace, out: Output, client: HopgraphClient) -> int:
    from infra.cli import credentials

    forgot = credentials.forget_token(client.api)
    if out.as_json:
        out.data({"api": client.api, "signed_out": forgot})
    elif forgot:
        out.say(f"signed out of {client.api} (its stored token is forgotten)")
    else:
        out.say(f"no token was stored for {client.api}")
    if os.environ.get("HOPGRAPH_TOKEN"):
        note("$HOPGRAPH_TOKEN is still set, and sent: unset it too")
    return 0


def cmd_whoami(args: argparse.Namespace, out: Output, client: HopgraphClient) -> int:
    from infra.cli import credentials

    who = credentials.whoami(client.api)
    if out.as_json:
        out.data({"api": client.api, **who})
        return 0
    if who["source"] == "none":
        out.say(
            f"not signed in to {client.api}: the local stack's dev mode acts as 'dev'; "
            "sign in with 'hopgraph login --user NAME'"
        )
        return 0
    user = who["user"] or "(the token names no user)"
    expiry = who["expires_at"]
    when = f", expires {_clock(expiry)}" if isinstance(expiry, int) else ""
    state = " (expired: sign in again)" if who["expired"] else ""
    out.say(f"{user} on {client.api}, token from {who['source']}{when}{state}")
    return 0


def _clock(epoch: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")


def _expiry(token: str) -> int | None:
    """A token's ``exp``, read without checking it (the API checks it)."""
    import jwt

    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        raise UsageError("--token is not a JWT (three base64url parts separated by dots)") from None
    return exp if isinstance(exp, int) else None
