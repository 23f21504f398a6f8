"""Smoke test of the Python client generated from /openapi.json by openapi-python-client, against
devstack: create, list, mark read, counts, each through the generated functions and models.

Usage: python python_client_smoke.py BASE_URL TOKEN USER (the generated `herald_client` package
on PYTHONPATH; TOKEN holds `notifications:write` and names USER). Prints each step, then
`python-client: N passed, M failed`.
"""

import sys

from herald_client import AuthenticatedClient
from herald_client.api.inbox import get_counts, list_notifications, patch_notification
from herald_client.api.notifications import create_notification
from herald_client.models import (
    Counts,
    CreateNotificationRequest,
    FlagsPatchType0,
    ListResponse,
    Notification,
)


def main(base_url: str, token: str, user: str) -> int:
    client = AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True)
    results = []

    def step(name, check):
        try:
            check()
            results.append(True)
            print(f"ok      {name}")
        except Exception as e:  # noqa: BLE001 - every failure is a failed step
            results.append(False)
            print(f"FAILED  {name}: {e!r}")

    state = {}

    def create():
        before = get_counts.sync(client=client)
        assert isinstance(before, Counts), before
        state["before"] = before
        body = CreateNotificationRequest(user_id=user, type_="client.smoke", title="From Python", body="generated client")
        created = create_notification.sync(client=client, body=body)
        assert isinstance(created, Notification), created
        assert created.user_id == user and not created.read, created
        state["created"] = created

    def listed():
        page = list_notifications.sync(client=client, status="unread", type_="client.smoke", limit=10)
        assert isinstance(page, ListResponse), page
        assert state["created"].id in [n.id for n in page.items], page

    def mark_read():
        updated = patch_notification.sync(state["created"].id, client=client, body=FlagsPatchType0(read=True))
        assert isinstance(updated, Notification) and updated.read and updated.seen, updated

    def counts():
        after = get_counts.sync(client=client)
        assert isinstance(after, Counts), after
        assert after.total == state["before"].total + 1, (state["before"], after)
        assert after.unread == state["before"].unread, (state["before"], after)
        assert after.version > state["before"].version, (state["before"], after)

    for name, check in [("create", create), ("list", listed), ("mark read", mark_read), ("counts", counts)]:
        if results and not results[-1]:
            results.append(False)
            print(f"FAILED  {name}: an earlier step failed")
            continue
        step(name, check)
    passed = sum(results)
    print(f"python-client: {passed} passed, {len(results) - passed} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
