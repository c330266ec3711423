"""`cdp api serve` (the profile API on uvicorn) and `cdp api keys create|list|revoke`.

The key commands connect as an administrator (`--url`, else `CDP_POSTGRES_ADMIN_URL`, else the
embedded superuser), as `cdp tenants` does: they create the API's roles as well as its keys.
"""

import logging
import os
import sys

from cdp_api.keys import DEFAULT_RATE, KEY_CACHE_SECONDS, SCOPES, ApiKeyError


def _admin_url(args) -> str:
    from cdp_resources.postgres_server import EmbeddedPostgres

    return args.url or os.environ.get("CDP_POSTGRES_ADMIN_URL") or EmbeddedPostgres.default().start().url("cdp")


def _serve(args) -> int:
    import uvicorn

    from cdp_api.app import create_app
    from cdp_api.keys import api_database_url

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("cdp_api.requests").setLevel(logging.INFO)
    app = create_app(api_database_url())
    print(f"cdp api serve: http://{args.host}:{args.port}/docs (OpenAPI), /ui (customer 360)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _keys(args) -> int:
    import psycopg

    from cdp_api import keys

    with psycopg.connect(_admin_url(args), autocommit=True) as admin:
        if args.action == "list":
            for key_id, tenant, scopes, rate, created, revoked in keys.list_keys(admin):
                state = f"revoked {revoked:%Y-%m-%d %H:%M}" if revoked else "active"
                print(f"{key_id}\t{tenant}\t{','.join(scopes)}\t{rate}/s\t{created:%Y-%m-%d %H:%M}\t{state}")
            return 0
        if args.action == "revoke":
            keys.revoke_key(admin, args.target)
            print(f"key {args.target} revoked (the API stops taking it within {KEY_CACHE_SECONDS:g}s)")
            return 0
        scopes = tuple(s for s in args.scopes.split(",") if s)
        keys.check_key_request(args.target, scopes, args.rate)
        password = keys.ensure_login_role(admin, os.environ.get("CDP_API_DB_PASSWORD"))
        if password and not os.environ.get("CDP_API_DB_PASSWORD"):
            keys.password_file().parent.mkdir(parents=True, exist_ok=True)
            keys.password_file().touch(mode=0o600)
            keys.password_file().write_text(password)
        key_id, key = keys.create_key(admin, args.target, scopes, args.rate, args.label)
        print(f"key {key_id} for tenant {args.target} ({','.join(sorted(set(scopes)))}, {args.rate}/s)")
        print(f"key (shown once): {key}")
    return 0


def add_commands(commands) -> None:
    """Add `api serve` and `api keys create|list|revoke` to an argparse subparsers object."""
    api = commands.add_parser("api", help="the profile API: serve it, manage its keys")
    actions = api.add_subparsers(dest="action", required=True)
    serve = actions.add_parser("serve", help="the profile API and the /ui page over HTTP (uvicorn)")
    serve.add_argument("--host", default=os.environ.get("CDP_API_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("CDP_API_PORT", "8000")))
    serve.set_defaults(handler=_serve)
    key_commands = actions.add_parser("keys", help="API keys: create <tenant>, list, revoke <key id>")
    key_commands.add_argument("key_action", choices=["create", "list", "revoke"])
    key_commands.add_argument("target", nargs="?", help="tenant (create) or key id (revoke)")
    key_commands.add_argument("--scopes", default="profiles", help=f"comma-separated, of {', '.join(SCOPES)}")
    key_commands.add_argument("--rate", type=int, default=DEFAULT_RATE, help="requests per second (default 100)")
    key_commands.add_argument("--label", help="a note on what the key is for")
    key_commands.add_argument(
        "--url", help="a role that may create roles (default: CDP_POSTGRES_ADMIN_URL or embedded)"
    )
    key_commands.set_defaults(handler=_checked_keys)


def _checked_keys(args) -> int:
    args.action = args.key_action
    if args.action != "list" and not args.target:
        print(
            f"cdp api keys {args.action}: give the {'tenant' if args.action == 'create' else 'key id'}", file=sys.stderr
        )
        return 2
    try:
        return _keys(args)
    except ApiKeyError as error:
        print(f"cdp: {error}", file=sys.stderr)
        return 1
