"""The runtime's own clients of MLflow and the API server: how they read their credentials.

No network here: the calls themselves run against a real MLflow and kube-apiserver in
tests/integration (test_runtime_report, test_runtime_membership, test_runtime_footprint,
test_trust_runtime_status, test_runtime_swap and the other runtime tests).
"""

from __future__ import annotations

import pathlib
import types

import pytest
import yaml

from edgemodel_runtime import kubeapi, mlflowapi


def _kubeconfig(path: pathlib.Path, user: dict, cluster: dict | None = None) -> pathlib.Path:
    path.write_text(
        yaml.safe_dump(
            {
                "clusters": [
                    {"name": "c", "cluster": {"server": "https://127.0.0.1:6443", **(cluster or {})}}
                ],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def test_a_kubeconfig_token_is_sent_as_a_bearer_token(tmp_path):
    client = kubeapi.from_kubeconfig(_kubeconfig(tmp_path / "k", {"token": "abc"}))
    assert client.server == "https://127.0.0.1:6443"
    assert client._authorization() == "Bearer abc"


def test_a_token_file_is_read_and_reread(tmp_path, monkeypatch):
    token = tmp_path / "token"
    token.write_text("one\n")
    client = kubeapi.from_kubeconfig(_kubeconfig(tmp_path / "k", {"tokenFile": str(token)}))
    assert client._authorization() == "Bearer one"
    token.write_text("two\n")
    assert client._authorization() == "Bearer one"  # within the refresh period
    monkeypatch.setattr(kubeapi, "TOKEN_REFRESH", 0.0)
    assert client._authorization() == "Bearer two"


def test_in_cluster_credentials_are_the_service_account(tmp_path):
    (tmp_path / "token").write_text("sa-token")
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    client = kubeapi.in_cluster(env, root=tmp_path)
    assert client is not None
    assert client.server == "https://10.0.0.1:443"
    assert client._authorization() == "Bearer sa-token"
    assert kubeapi.in_cluster({}, root=tmp_path) is None


def test_exec_credentials_are_refused_by_name(tmp_path):
    with pytest.raises(kubeapi.ConfigError, match="exec"):
        kubeapi.from_kubeconfig(_kubeconfig(tmp_path / "k", {"exec": {"command": "aws"}}))


def test_a_kubernetes_api_client_is_adopted_with_its_token():
    conf = types.SimpleNamespace(
        host="https://127.0.0.1:6443",
        api_key={"authorization": "Bearer xyz"},
        api_key_prefix={},
        cert_file=None,
        key_file=None,
        ssl_ca_cert=None,
        verify_ssl=True,
        username=None,
        password=None,
    )
    client = kubeapi.client_for(types.SimpleNamespace(configuration=conf))
    assert client._authorization() == "Bearer xyz"
    assert kubeapi.client_for(client) is client


def test_custom_object_paths_are_quoted():
    path = kubeapi.custom_object_path("edgeml.dev", "v1alpha1", "ns", "edgemodels", "a b")
    assert path == "/apis/edgeml.dev/v1alpha1/namespaces/ns/edgemodels/a%20b"


def test_mlflow_credentials_come_from_mlflows_own_variables():
    assert mlflowapi._auth_header({"MLFLOW_TRACKING_TOKEN": "t"}) == "Bearer t"
    assert mlflowapi._auth_header({"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p"}) == (
        "Basic dTpw"
    )
    assert mlflowapi._auth_header({}) is None


def test_mlflow_is_reached_over_http_only():
    with pytest.raises(ValueError, match="http"):
        mlflowapi.Client("file:///tmp/mlruns")
    assert mlflowapi.Client("http://mlflow:5000/").tracking_uri == "http://mlflow:5000"
