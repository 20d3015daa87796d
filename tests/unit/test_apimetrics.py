"""Reading the API server's request counters."""

from tenantdb.devenv import apimetrics
from tenantdb.devenv.apimetrics import Request

PAGE = """# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="tenantdb.io",resource="tenants",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 3
apiserver_request_total{code="409",component="apiserver",dry_run="",group="tenantdb.io",resource="tenants",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 1
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="POST",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="GET",version="v1"} 7
apiserver_request_duration_seconds_count{verb="PATCH"} 9
"""


def test_counts_are_summed_over_codes() -> None:
    counts = apimetrics.parse(PAGE)
    assert counts[Request("PATCH", "tenants", "status")] == 4
    assert counts[Request("GET", "secrets", "")] == 7
    assert len(counts) == 3


def test_writes_since_an_earlier_read() -> None:
    before = apimetrics.parse(PAGE)
    after = before.copy()
    after[Request("PATCH", "tenants", "status")] += 1
    after[Request("GET", "secrets", "")] += 5
    assert apimetrics.writes(apimetrics.since(before, after)) == {
        Request("PATCH", "tenants", "status"): 1
    }
    assert str(Request("PATCH", "tenants", "status")) == "PATCH tenants/status"
