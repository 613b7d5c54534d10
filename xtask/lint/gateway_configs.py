"""The gateway configurations that cannot run here (Traefik, Envoy: no packages): each
file parses as YAML and holds the fields their documentation requires for Keyward's
forward auth. Run by `cargo xtask ci` (xtask/src/image.rs) with PyYAML."""

import sys

import yaml


def dig(doc, *path):
    for step in path:
        if isinstance(step, int):
            if not isinstance(doc, list) or len(doc) <= step:
                raise KeyError(step)
            doc = doc[step]
        else:
            if not isinstance(doc, dict) or step not in doc:
                raise KeyError(step)
            doc = doc[step]
    return doc


def traefik(path):
    doc = yaml.safe_load(open(path))
    auth = dig(doc, "http", "middlewares", "keyward", "forwardAuth")
    assert "/v1/forward-auth/" in auth["address"], "address must be Keyward's forward-auth route"
    assert auth.get("trustForwardHeader") is False, "trustForwardHeader: false"
    wanted = {"X-Keyward-Key-Id", "X-Keyward-Owner-Id", "X-Keyward-Keyspace-Id", "X-Keyward-Scopes", "X-Keyward-Meta"}
    assert wanted <= set(auth["authResponseHeaders"]), "authResponseHeaders lists the identity headers"
    router = dig(doc, "http", "routers", "api")
    assert "keyward" in router["middlewares"] and router["service"] in dig(doc, "http", "services")
    dig(doc, "http", "services", router["service"], "loadBalancer", "servers", 0, "url")


def envoy(path):
    doc = yaml.safe_load(open(path))
    listener = dig(doc, "static_resources", "listeners", 0)
    manager = dig(listener, "filter_chains", 0, "filters", 0, "typed_config")
    assert manager["@type"].endswith("http_connection_manager.v3.HttpConnectionManager")
    filters = manager["http_filters"]
    assert filters[-1]["name"] == "envoy.filters.http.router", "the router filter comes last"
    authz = next(f for f in filters if f["name"] == "envoy.filters.http.ext_authz")["typed_config"]
    assert authz["@type"] == "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
    assert authz["transport_api_version"] == "V3"
    service = authz["http_service"]
    assert service["path_prefix"].startswith("/v1/forward-auth/"), "path_prefix is Keyward's forward-auth route"
    clusters = {c["name"] for c in dig(doc, "static_resources", "clusters")}
    assert service["server_uri"]["cluster"] in clusters, "server_uri names a cluster"
    assert "timeout" in service["server_uri"] and "uri" in service["server_uri"]
    route = dig(manager, "route_config", "virtual_hosts", 0, "routes", 0, "route", "cluster")
    assert route in clusters, "the route names a cluster"
    upstream = dig(service, "authorization_response", "allowed_upstream_headers", "patterns")
    assert {"prefix": "x-keyward-"} in upstream, "the identity headers reach the upstream"
    client = dig(service, "authorization_response", "allowed_client_headers", "patterns")
    assert {"exact": "retry-after"} in client, "a 429's Retry-After reaches the client"


if __name__ == "__main__":
    root = sys.argv[1]
    for check, path in [(traefik, "traefik/dynamic.yaml"), (envoy, "envoy/envoy.yaml")]:
        try:
            check(f"{root}/{path}")
        except (AssertionError, KeyError, StopIteration, TypeError) as error:
            sys.exit(f"examples/gateways/{path}: {type(error).__name__}: {error}")
    print("examples/gateways: Traefik's and Envoy's files parse and hold the required fields")
