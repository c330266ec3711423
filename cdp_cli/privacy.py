"""`cdp privacy forget | receipts | process`: queue a request to forget a person, list the
requests' receipts, or work through the queue now (as the `privacy/forget_requests` asset does)."""

import json
import sys

from cdp_resources.names import InvalidName


def _forget(args) -> int:
    from cdp_privacy.requests import InvalidRequest, enqueue
    from cdp_resources.warehouse import WarehouseResource

    if args.external_id:
        id_type, _, value = args.external_id.partition(":")
    else:
        id_type, value = next(
            (t, v)
            for t, v in (("email", args.email), ("phone", args.phone), ("cdp_customer_id", args.customer_id))
            if v
        )
    try:
        with WarehouseResource().connect(autocommit=True) as conn:
            request = enqueue(conn, args.tenant, id_type, value)
    except (InvalidRequest, InvalidName) as error:
        print(f"cdp privacy: {error}", file=sys.stderr)
        return 2
    print(
        f"forget request {request} queued for tenant {args.tenant}: the next lake_daily run "
        "(or `cdp privacy process`) erases the person; `cdp privacy receipts` shows its receipt"
    )
    return 0


def _receipts(args) -> int:
    from cdp_privacy.requests import receipts
    from cdp_resources.warehouse import WarehouseResource

    with WarehouseResource().connect(autocommit=True) as conn:
        for row in receipts(conn, args.tenant):
            print(json.dumps(row, default=str))
    return 0


def _process(args) -> int:
    from cdp_assets.privacy import process_requests
    from cdp_cli.main import _lake_from
    from cdp_resources.spark import SparkDeltaResource
    from cdp_resources.warehouse import WarehouseResource

    lake = _lake_from(args.lake)
    for receipt in process_requests(SparkDeltaResource().session_for(lake), lake, WarehouseResource()):
        print(json.dumps({k: v for k, v in receipt.items() if k != "files_rewritten"}, default=str))
    return 0


def add_commands(commands, tenant_type) -> None:
    privacy = commands.add_parser("privacy", help="forget a person (queue a request), list receipts, process the queue")
    actions = privacy.add_subparsers(dest="action", required=True)
    forget = actions.add_parser("forget", help="queue a request to erase a person everywhere and suppress them")
    forget.add_argument("--tenant", type=tenant_type, required=True)
    who = forget.add_mutually_exclusive_group(required=True)
    who.add_argument("--email")
    who.add_argument("--phone", help="international format, e.g. +16505551212")
    who.add_argument("--customer-id", help="the platform's cdp_customer_id")
    who.add_argument("--external-id", metavar="TYPE:VALUE", help="e.g. shopify_customer_id:1234, app_user_id:u_1")
    forget.set_defaults(handler=_forget)
    listing = actions.add_parser("receipts", help="every request's status and receipt (no personal data)")
    listing.add_argument("--tenant", type=tenant_type)
    listing.set_defaults(handler=_receipts)
    process = actions.add_parser("process", help="forget every queued person now (Spark; as each lake_daily run does)")
    process.add_argument("--lake", help="lake URI (default: CDP_LAKE_URI or .cdp/lake)")
    process.set_defaults(handler=_process)
